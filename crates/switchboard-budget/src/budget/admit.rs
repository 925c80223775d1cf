//! The decisions: per-request cap before the reservation, levels and actions after it.

use std::sync::Arc;
use std::time::Duration;

use switchboard_core::{
    BudgetStatus, ChatRequest, ChatResponse, Cost, CostEstimate, Degraded, Error, Scene,
    SpendLevel, TenantId, Tier, Usage,
};

use crate::budget::settle::Settlement;
use crate::cache::CacheFuture;
use crate::jobs::{FromQueue, Job, JobFuture, JobQueue, QueueError};
use crate::policy::{TierPolicy, cap_max_tokens};
use crate::{
    Account, AnswerCache, BlockAction, CapAction, Degrade, Estimator, Hold, Ledger, Refusal,
    RequestCap,
};

/// Everything the layer was configured with.
#[derive(Debug)]
pub(crate) struct Policy {
    pub(crate) estimator: Arc<Estimator>,
    pub(crate) tiers: [TierPolicy; 3],
    pub(crate) degrade: Degrade,
    pub(crate) request_cap: Option<RequestCap>,
    pub(crate) cache: Option<Arc<dyn AnswerCache>>,
    pub(crate) jobs: Option<Arc<dyn JobQueue>>,
}

/// A request ready to reserve for.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) account: Account,
    pub(crate) scene: Option<Scene>,
    pub(crate) estimate: CostEstimate,
    pub(crate) degraded: Degraded,
}

/// What happens after the reservation.
#[allow(
    clippy::large_enum_variant,
    reason = "made once per request and moved straight into the future's state"
)]
pub(crate) enum Verdict<L: Ledger> {
    /// Send it, settling through the guard.
    Send(ChatRequest, Settlement<L>, Option<BudgetStatus>, Degraded),
    /// Answer without sending (blocked: an error).
    Answer(Result<ChatResponse, Error>),
    /// Blocked and looked up in the response cache: the lookup, the degradations so
    /// far, the error to answer on a miss.
    Lookup(CacheFuture, Degraded, Error),
    /// Blocked and being queued as a job: the submission, the model, the error to
    /// answer if the queue fails.
    Enqueue(
        JobFuture<Result<String, QueueError>>,
        String,
        Degraded,
        Error,
    ),
}

fn per_request_error() -> Error {
    Error::BudgetExceeded {
        scope: "per_request".into(),
        retry_after: None,
    }
}

impl Policy {
    fn estimate(&self, request: &ChatRequest, scene: Option<&Scene>) -> CostEstimate {
        self.estimator.estimate(request.body(), scene)
    }

    /// Estimates (unless an estimate is there) and applies the per-request cap.
    pub(crate) fn prepare(&self, request: &mut ChatRequest) -> Result<Prepared, Error> {
        let ext = request.extensions();
        let account = Account {
            tier: ext.get::<Tier>().copied().unwrap_or(Tier::L1),
            tenant: ext.get::<TenantId>().cloned(),
        };
        let scene = ext.get::<Scene>().cloned();
        let mut degraded = ext.get::<Degraded>().cloned().unwrap_or_default();
        let mut estimate = match ext.get::<CostEstimate>() {
            Some(e) => e.clone(),
            None => self.estimate(request, scene.as_ref()),
        };
        if let Some(cap) = self.request_cap {
            if estimate.upper_bound > cap.limit {
                let why = format!(
                    "cost bound {} over the per-request cap {}",
                    estimate.upper_bound, cap.limit
                );
                match cap.action {
                    CapAction::Reject => return Err(per_request_error()),
                    CapAction::RouteCheaper => {
                        self.degrade
                            .apply_model(request.body_mut(), &mut degraded, &why);
                    }
                    CapAction::Degrade => {
                        self.degrade.apply(request.body_mut(), &mut degraded, &why);
                    }
                }
                estimate = self.estimate(request, scene.as_ref());
                if estimate.upper_bound > cap.limit {
                    let fit =
                        max_output_within(&estimate, cap.limit).ok_or_else(per_request_error)?;
                    cap_max_tokens(request.body_mut(), fit, &mut degraded, &why);
                    estimate = self.estimate(request, scene.as_ref());
                    if estimate.upper_bound > cap.limit {
                        return Err(per_request_error());
                    }
                }
            }
        }
        Ok(Prepared {
            account,
            scene,
            estimate,
            degraded,
        })
    }

    /// Decides on a reservation's outcome.
    pub(crate) fn admit<L: Ledger>(
        &self,
        ledger: &L,
        reserved: Result<Hold, Refusal>,
        mut request: ChatRequest,
        prepared: Prepared,
    ) -> Verdict<L> {
        let Prepared {
            account,
            scene,
            mut estimate,
            mut degraded,
        } = prepared;
        let tier = self.tiers[account.tier.index()];
        let mut hold = match reserved {
            Ok(hold) => hold,
            Err(refusal) => {
                tracing::warn!(scope = %refusal.scope, spent = %refusal.spent, cap = %refusal.cap, "budget hard cap: request blocked");
                return self.block(tier.on_block, &request, refusal.into_error());
            }
        };
        let (level, status) = judge(&hold, &estimate, &tier);
        match level {
            SpendLevel::Block => {
                let retry_after: Option<Duration> = Some(hold.resets_in());
                let scope = status
                    .as_ref()
                    .map_or_else(String::new, |s| s.scope.to_string());
                ledger.settle(hold, Cost::ZERO);
                tracing::warn!(%scope, "budget block threshold: request blocked");
                return self.block(
                    tier.on_block,
                    &request,
                    Error::BudgetExceeded { scope, retry_after },
                );
            }
            SpendLevel::Degrade if !tier.degrade_exempt => {
                let why = status.as_ref().map_or_else(String::new, |s| {
                    format!("{} at {} of {}", s.scope, s.spent, s.cap)
                });
                let original = request.shared_body().clone();
                let mut steps = degraded.clone();
                self.degrade.apply(request.body_mut(), &mut steps, &why);
                let cheaper = self.estimate(&request, scene.as_ref());
                if cheaper.upper_bound <= hold.amount() {
                    ledger.shrink(&mut hold, cheaper.upper_bound);
                    estimate = cheaper;
                    degraded = steps;
                } else {
                    // A "cheaper" model that costs more at worst would need a bigger
                    // hold: keep the request as it was.
                    let (_, ext) = request.into_parts();
                    request = ChatRequest::from_parts(original, ext);
                }
            }
            SpendLevel::Degrade | SpendLevel::Warn => {
                if let Some(s) = &status {
                    tracing::warn!(scope = %s.scope, spent = %s.spent, cap = %s.cap, level = level.as_str(), "budget threshold crossed");
                }
            }
            SpendLevel::Normal => {}
        }
        let status = status.map(|mut s| {
            s.reserved = hold.amount();
            s
        });
        let ext = request.extensions_mut();
        ext.insert(estimate.clone());
        if !degraded.is_empty() {
            ext.insert(degraded.clone());
        }
        if let Some(s) = &status {
            ext.insert(s.clone());
        }
        let record = self
            .cache
            .as_ref()
            .map(|cache| (cache.clone(), request.shared_body().clone()));
        let settlement = Settlement::new(ledger.clone(), hold, estimate, record);
        Verdict::Send(request, settlement, status, degraded)
    }

    fn block<L: Ledger>(
        &self,
        action: BlockAction,
        request: &ChatRequest,
        error: Error,
    ) -> Verdict<L> {
        let from_queue = request.extensions().get::<FromQueue>().is_some();
        // Without a Retry-After the request is larger than a whole window's cap: no later
        // window can run it, so queueing it would only defer the failure.
        let may_fit_later = matches!(
            &error,
            Error::BudgetExceeded {
                retry_after: Some(_),
                ..
            }
        );
        if action == BlockAction::Enqueue && !from_queue && may_fit_later {
            if let Some(jobs) = &self.jobs {
                let degraded = request
                    .extensions()
                    .get::<Degraded>()
                    .cloned()
                    .unwrap_or_default();
                let submit = jobs.submit(Job::from_request(request));
                return Verdict::Enqueue(submit, request.body().model.clone(), degraded, error);
            }
        }
        if action == BlockAction::Cache {
            if let Some(cache) = &self.cache {
                let degraded = request
                    .extensions()
                    .get::<Degraded>()
                    .cloned()
                    .unwrap_or_default();
                return Verdict::Lookup(cache.lookup(request.body()), degraded, error);
            }
        }
        Verdict::Answer(Err(error))
    }
}

/// The most output tokens that keep `estimate`'s bound within `limit`, if any.
fn max_output_within(estimate: &CostEstimate, limit: Cost) -> Option<u32> {
    let input = estimate.cost_of(&Usage::new(estimate.input_tokens_bound, 0));
    let room = limit.checked_sub(input)?;
    let per_million = estimate.price.output.as_nanos();
    let tokens = if per_million == 0 {
        u64::from(u32::MAX)
    } else {
        (u128::from(room.as_nanos()) * 1_000_000 / u128::from(per_million))
            .min(u128::from(u32::MAX)) as u64
    };
    (tokens > 0).then_some(tokens as u32)
}

/// The level of the most loaded scope, judged on its spend before this request plus the
/// request's *expected* cost.
fn judge(
    hold: &Hold,
    estimate: &CostEstimate,
    tier: &TierPolicy,
) -> (SpendLevel, Option<BudgetStatus>) {
    let mut worst: Option<(SpendLevel, u128, BudgetStatus)> = None;
    for s in hold.scopes() {
        let spent = s
            .spent
            .saturating_sub(hold.amount())
            .saturating_add(estimate.expected);
        let bp = match (spent.as_nanos().checked_mul(10_000), s.cap.as_nanos()) {
            (_, 0) => u128::MAX,
            // 64-bit while it fits (spend under $1.8M): no 128-bit division.
            (Some(scaled), cap) => u128::from(scaled / cap),
            (None, cap) => u128::from(spent.as_nanos()) * 10_000 / u128::from(cap),
        };
        let t = &tier.thresholds;
        // A block threshold of 100 % or more leaves blocking to the ledger's hard cap.
        let level = if t.block < 10_000 && bp >= u128::from(t.block) {
            SpendLevel::Block
        } else if bp >= u128::from(t.degrade) {
            SpendLevel::Degrade
        } else if bp >= u128::from(t.warn) {
            SpendLevel::Warn
        } else {
            SpendLevel::Normal
        };
        if worst
            .as_ref()
            .is_none_or(|(l, b, _)| (level, bp) > (*l, *b))
        {
            worst = Some((
                level,
                bp,
                BudgetStatus {
                    level,
                    scope: s.scope.name(),
                    spent,
                    cap: s.cap,
                    reserved: hold.amount(),
                },
            ));
        }
    }
    match worst {
        Some((level, _, status)) => (level, Some(status)),
        None => (SpendLevel::Normal, None),
    }
}
