//! What the budget layer does at each level: thresholds, degrade steps, block actions,
//! the per-request cap.

use std::collections::HashMap;

use switchboard_core::{ChatBody, Cost, Degraded, Role, Tier};

use crate::tokenize::{TokenCounting, count_chat};

/// Thresholds as fractions of a cap, in basis points (1/100 of a percent). A request is
/// judged on the scope's spend *plus its expected cost*.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Record and emit, nothing else. Default: 80 %.
    pub warn: u32,
    /// Make the request cheaper. Default: 90 %.
    pub degrade: u32,
    /// Do not send the request. Default: 100 % (only the hard cap blocks).
    pub block: u32,
}

impl Thresholds {
    /// Thresholds from whole percentages of the cap.
    pub const fn percent(warn: u32, degrade: u32, block: u32) -> Self {
        Self {
            warn: warn * 100,
            degrade: degrade * 100,
            block: block * 100,
        }
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Self::percent(80, 90, 100)
    }
}

/// What to do with a request that is blocked (past the block threshold, or refused by
/// the hard cap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BlockAction {
    /// 429 `BudgetExceeded` with Retry-After from the window. The default.
    #[default]
    Reject,
    /// Answer from the exact-match response cache when it holds this request (recorded
    /// as `budget_cached_answer`); reject otherwise.
    Cache,
    /// Put the request on the job queue to run when budget allows: the response has an
    /// empty stream, a [`JobTicket`](switchboard_core::JobTicket) and a `budget_enqueued`
    /// degradation. Reject if the queue is unreachable or none is configured.
    Enqueue,
}

/// What to do with a request whose cost upper bound is over the per-request cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CapAction {
    /// 400-class refusal: `BudgetExceeded` with scope `per_request`, no Retry-After.
    #[default]
    Reject,
    /// Switch to the cheaper model (the degrade steps' model map) and cap `max_tokens` so
    /// the bound fits; reject if it still cannot.
    RouteCheaper,
    /// Apply every degrade step, then cap `max_tokens` so the bound fits; reject if it
    /// still cannot.
    Degrade,
}

/// A cap on one request's cost upper bound (e.g. $0.02).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestCap {
    /// The most one request may cost at worst.
    pub limit: Cost,
    /// What happens over it.
    pub action: CapAction,
}

/// The ways degrade makes a request cheaper; each change is recorded in [`Degraded`]
/// with its reason code:
///
/// | step | reason code |
/// |---|---|
/// | [`cheaper_model`](Degrade::cheaper_model) | `budget_cheaper_model` |
/// | [`max_tokens`](Degrade::max_tokens) | `budget_max_tokens_capped` |
/// | [`temperature`](Degrade::temperature) | `budget_temperature_lowered` |
/// | [`context_tokens`](Degrade::context_tokens) | `budget_context_trimmed` |
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Degrade {
    pub(crate) cheaper: HashMap<String, String>,
    pub(crate) max_tokens: Option<u32>,
    pub(crate) temperature: Option<f32>,
    pub(crate) context_tokens: Option<u64>,
}

/// Reason code: the model was replaced by a cheaper one.
pub const CHEAPER_MODEL: &str = "budget_cheaper_model";
/// Reason code: `max_tokens` was lowered.
pub const MAX_TOKENS_CAPPED: &str = "budget_max_tokens_capped";
/// Reason code: the temperature was lowered.
pub const TEMPERATURE_LOWERED: &str = "budget_temperature_lowered";
/// Reason code: the oldest turns were dropped to fit a token budget.
pub const CONTEXT_TRIMMED: &str = "budget_context_trimmed";
/// Reason code: the answer came from the response cache instead of a provider.
pub const CACHED_ANSWER: &str = "budget_cached_answer";
/// Reason code: the request was queued as a job instead of answered now.
pub const ENQUEUED: &str = "budget_enqueued";

impl Degrade {
    /// No steps.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replace `model` (logical or concrete) by `cheaper`.
    pub fn cheaper_model(mut self, model: impl Into<String>, cheaper: impl Into<String>) -> Self {
        self.cheaper.insert(model.into(), cheaper.into());
        self
    }

    /// Cap `max_tokens` (set it when absent).
    pub fn max_tokens(mut self, cap: u32) -> Self {
        self.max_tokens = Some(cap);
        self
    }

    /// Cap the temperature (set it when absent: providers default to 1.0).
    pub fn temperature(mut self, cap: f32) -> Self {
        self.temperature = Some(cap);
        self
    }

    /// Trim the context to this many input tokens, dropping the oldest non-system turns
    /// first (the last message is always kept).
    pub fn context_tokens(mut self, budget: u64) -> Self {
        self.context_tokens = Some(budget);
        self
    }

    /// Switches to the cheaper model, if one is configured. Returns whether it did.
    pub(crate) fn apply_model(
        &self,
        body: &mut ChatBody,
        degraded: &mut Degraded,
        why: &str,
    ) -> bool {
        let Some(cheaper) = self.cheaper.get(&body.model) else {
            return false;
        };
        degraded.push(
            CHEAPER_MODEL,
            format!("model {} → {cheaper}: {why}", body.model),
        );
        body.model = cheaper.clone();
        true
    }

    /// Applies every step to `body`, recording each change.
    pub(crate) fn apply(&self, body: &mut ChatBody, degraded: &mut Degraded, why: &str) {
        self.apply_model(body, degraded, why);
        if let Some(cap) = self.max_tokens {
            cap_max_tokens(body, cap, degraded, why);
        }
        if let Some(cap) = self.temperature {
            if body.temperature.is_none_or(|t| t > cap) {
                let old = body
                    .temperature
                    .map_or_else(|| "default".to_owned(), |t| t.to_string());
                degraded.push(
                    TEMPERATURE_LOWERED,
                    format!("temperature {old} → {cap}: {why}"),
                );
                body.temperature = Some(cap);
            }
        }
        if let Some(budget) = self.context_tokens {
            trim_context(body, budget, degraded, why);
        }
    }
}

/// Lowers (or sets) `max_tokens` to `cap`, recording it.
pub(crate) fn cap_max_tokens(body: &mut ChatBody, cap: u32, degraded: &mut Degraded, why: &str) {
    if body.max_tokens.is_none_or(|m| m > cap) {
        let old = body
            .max_tokens
            .map_or_else(|| "unset".to_owned(), |m| m.to_string());
        degraded.push(
            MAX_TOKENS_CAPPED,
            format!("max_tokens {old} → {cap}: {why}"),
        );
        body.max_tokens = Some(cap);
    }
}

/// Drops the oldest non-system turns until the input fits `budget` tokens, keeping the
/// last message; a tool result left without its call is dropped with it.
pub(crate) fn trim_context(body: &mut ChatBody, budget: u64, degraded: &mut Degraded, why: &str) {
    let counting = TokenCounting::for_model(&body.model);
    let (before, _) = count_chat(counting, body);
    let mut now = before;
    let mut dropped = 0;
    while now > budget {
        let Some(i) = body.messages[..body.messages.len().saturating_sub(1)]
            .iter()
            .position(|m| m.role != Role::System)
        else {
            break;
        };
        body.messages.remove(i);
        dropped += 1;
        // A tool result whose assistant call is gone is invalid on both APIs.
        while body.messages.len() > 1 && body.messages.get(i).is_some_and(|m| m.role == Role::Tool)
        {
            body.messages.remove(i);
            dropped += 1;
        }
        now = count_chat(counting, body).0;
    }
    if dropped > 0 {
        degraded.push(
            CONTEXT_TRIMMED,
            format!("dropped {dropped} oldest turns, input {before} → {now} tokens: {why}"),
        );
    }
}

/// The policy of one tier.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct TierPolicy {
    pub(crate) thresholds: Thresholds,
    pub(crate) degrade_exempt: bool,
    pub(crate) on_block: BlockAction,
}

impl TierPolicy {
    pub(crate) fn default_for(tier: Tier) -> Self {
        Self {
            thresholds: Thresholds::default(),
            degrade_exempt: tier == Tier::L0,
            on_block: BlockAction::Reject,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::{Message, ToolCall};

    fn body() -> ChatBody {
        let filler = "lorem ipsum ".repeat(40);
        let mut call = Message::assistant("");
        call.tool_calls.push(ToolCall {
            id: "c1".into(),
            name: "lookup".into(),
            arguments: "{}".into(),
        });
        let mut result = Message::new(Role::Tool, filler.clone());
        result.tool_call_id = Some("c1".into());
        ChatBody::new(
            "gpt-4o",
            vec![
                Message::system("rules"),
                Message::user(filler.clone()),
                call,
                result,
                Message::user(filler),
                Message::user("last"),
            ],
        )
    }

    #[test]
    fn trimming_drops_oldest_turns_keeps_system_and_last_and_never_orphans_a_tool_result() {
        let mut b = body();
        let mut degraded = Degraded::default();
        trim_context(&mut b, 30, &mut degraded, "test");
        let roles: Vec<Role> = b.messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, [Role::System, Role::User]);
        assert_eq!(b.messages[1].content.text(), "last");
        assert_eq!(degraded.first_reason(), Some(CONTEXT_TRIMMED));
        let detail = &degraded.iter().next().unwrap().detail;
        assert!(detail.starts_with("dropped 4 oldest turns"), "{detail}");
    }

    #[test]
    fn a_tool_result_goes_with_its_call() {
        let counting = TokenCounting::for_model("gpt-4o");
        let mut without_first_user = body();
        without_first_user.messages.remove(1);
        let (after_user, _) = count_chat(counting, &without_first_user);
        // One token less than dropping the first user turn gives: the call must go, and
        // its result with it, though the result alone would have been enough.
        let mut b = body();
        let mut degraded = Degraded::default();
        trim_context(&mut b, after_user - 1, &mut degraded, "test");
        let roles: Vec<Role> = b.messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, [Role::System, Role::User, Role::User]);
        let detail = &degraded.iter().next().unwrap().detail;
        assert!(detail.starts_with("dropped 3 oldest turns"), "{detail}");
    }

    #[test]
    fn steps_that_change_nothing_record_nothing() {
        let mut b = ChatBody::new("gpt-4o-mini", vec![Message::user("hi")])
            .max_tokens(10)
            .temperature(0.1);
        let mut degraded = Degraded::default();
        Degrade::new()
            .cheaper_model("gpt-4o", "gpt-4o-mini")
            .max_tokens(100)
            .temperature(0.5)
            .context_tokens(1_000)
            .apply(&mut b, &mut degraded, "test");
        assert!(degraded.is_empty(), "{degraded:?}");
    }
}
