//! What happened to a request: [`Degraded`] reasons and the [`Disposition`] every answer
//! reports.

use serde::{Deserialize, Serialize};

use crate::{ProviderId, TraceId};

/// One way an answer was made worse than asked for, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Degradation {
    /// Stable snake_case reason code (`budget_cheaper_model`, `budget_max_tokens_capped`,
    /// `fallback_after_openai_first_token_timeout`).
    pub reason: String,
    /// A sentence for humans (`max_tokens 4096 → 512: tenant acme at 91 % of its cap`).
    pub detail: String,
}

/// Extension listing every degradation applied to a request, in order. Layers push onto it;
/// the edge reports it.
///
/// ```
/// use switchboard_core::Degraded;
/// let mut degraded = Degraded::default();
/// degraded.push("budget_max_tokens_capped", "max_tokens 4096 → 512");
/// assert_eq!(degraded.first_reason(), Some("budget_max_tokens_capped"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Degraded(Vec<Degradation>);

impl Degraded {
    /// Records a degradation.
    pub fn push(&mut self, reason: impl Into<String>, detail: impl Into<String>) {
        self.0.push(Degradation {
            reason: reason.into(),
            detail: detail.into(),
        });
    }

    /// Whether nothing was degraded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first reason: the one headers report.
    pub fn first_reason(&self) -> Option<&str> {
        self.0.first().map(|d| d.reason.as_str())
    }

    /// All degradations, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Degradation> {
        self.0.iter()
    }
}

/// Whether an answer is what was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// As asked.
    Ok,
    /// An answer, but a lesser one (cheaper model, fewer tokens, a fallback provider, a
    /// cached answer).
    Degraded,
    /// No answer.
    Error,
}

impl Status {
    /// `ok`, `degraded` or `error`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Degraded => "degraded",
            Status::Error => "error",
        }
    }
}

/// The report every answer carries: the `switchboard` block of a JSON body and the
/// `x-switchboard-*` headers.
///
/// ```
/// use switchboard_core::{Degraded, Disposition, ProviderId, Status, TraceId};
/// let mut degraded = Degraded::default();
/// degraded.push("fallback_after_openai_first_token_timeout", "hedged to anthropic");
/// let d = Disposition::answered(Some(ProviderId::ANTHROPIC), &degraded, TraceId::random());
/// assert_eq!(d.status, Status::Degraded);
/// assert_eq!(d.reason.as_deref(), Some("fallback_after_openai_first_token_timeout"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disposition {
    /// Ok, degraded or error.
    pub status: Status,
    /// The provider that answered (or failed last).
    pub provider: Option<ProviderId>,
    /// The reason code: the first degradation, or the error's reason.
    pub reason: Option<String>,
    /// The trace id to look the request up by.
    pub trace_id: TraceId,
}

impl Disposition {
    /// The disposition of an answer, degraded if anything was.
    pub fn answered(provider: Option<ProviderId>, degraded: &Degraded, trace_id: TraceId) -> Self {
        Self {
            status: if degraded.is_empty() {
                Status::Ok
            } else {
                Status::Degraded
            },
            provider,
            reason: degraded.first_reason().map(str::to_owned),
            trace_id,
        }
    }

    /// The disposition of a failure.
    pub fn failed(error: &crate::Error, trace_id: TraceId) -> Self {
        Self {
            status: Status::Error,
            provider: error.provider().cloned(),
            reason: Some(error.reason()),
            trace_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn failed_disposition_carries_the_errors_reason() {
        let trace = TraceId::random();
        let error = Error::from_status(ProviderId::OPENAI, 503, "busy", None);
        let d = Disposition::failed(&error, trace);
        assert_eq!(d.status, Status::Error);
        assert_eq!(d.provider, Some(ProviderId::OPENAI));
        assert_eq!(d.reason.as_deref(), Some("openai_upstream_server_error"));
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["status"], "error");
        assert_eq!(json["trace_id"], trace.to_string());
        assert_eq!(serde_json::from_value::<Disposition>(json).unwrap(), d);
    }

    #[test]
    fn ok_when_nothing_degraded() {
        let d = Disposition::answered(
            Some(ProviderId::OPENAI),
            &Degraded::default(),
            TraceId::random(),
        );
        assert_eq!(d.status, Status::Ok);
        assert_eq!(d.reason, None);
    }
}
