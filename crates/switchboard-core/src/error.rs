//! The one error type every layer and provider speaks.

use std::fmt;
use std::time::Duration;

use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::ProviderId;

/// Which deadline expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutPhase {
    /// Opening the TCP/TLS connection (the adapter's connector).
    Connect,
    /// Waiting for the first content event of one attempt.
    FirstToken,
    /// The gap between two stream events after the first.
    Idle,
    /// The whole call, all attempts included.
    Total,
}

impl TimeoutPhase {
    /// `connect`, `first_token`, `idle` or `total`.
    pub const fn as_str(self) -> &'static str {
        match self {
            TimeoutPhase::Connect => "connect",
            TimeoutPhase::FirstToken => "first_token",
            TimeoutPhase::Idle => "idle",
            TimeoutPhase::Total => "total",
        }
    }
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong between a caller and a provider.
///
/// Each variant has a stable snake_case [`code`](Error::code); [`reason`](Error::reason)
/// prefixes it with the provider when one is known (`openai_first_token_timeout`). Two
/// questions drive resilience: [`is_retryable`](Error::is_retryable) (may another attempt,
/// on this or another provider, succeed?) and
/// [`counts_against_provider`](Error::counts_against_provider) (is this the provider's
/// fault, so that a circuit breaker should count it? A caller's bad request is not).
///
/// The type is `Clone` so hedging can keep the last failure while other attempts run.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// A deadline expired.
    Timeout {
        /// Which deadline.
        phase: TimeoutPhase,
        /// The provider being waited on, if the deadline was per attempt.
        provider: Option<ProviderId>,
        /// The configured deadline.
        after: Duration,
    },
    /// The provider's circuit breaker is open.
    CircuitOpen {
        /// The provider.
        provider: ProviderId,
        /// When the breaker will next admit a probe, if known.
        retry_after: Option<Duration>,
    },
    /// A spend cap would be crossed.
    BudgetExceeded {
        /// Which budget (`global`, `tenant:acme`, `tier:L2`, `per_request`).
        scope: String,
        /// When the window frees enough budget, if known.
        retry_after: Option<Duration>,
    },
    /// The provider answered 429.
    RateLimited {
        /// The provider.
        provider: ProviderId,
        /// From the `retry-after` header.
        retry_after: Option<Duration>,
        /// The provider's message.
        message: String,
    },
    /// The provider said it is overloaded (Anthropic 529 `overloaded_error`, or the same
    /// error type mid-stream).
    Overloaded {
        /// The provider.
        provider: ProviderId,
        /// From the `retry-after` header.
        retry_after: Option<Duration>,
        /// The provider's message.
        message: String,
    },
    /// The provider answered another non-success status.
    Upstream {
        /// The provider.
        provider: ProviderId,
        /// The HTTP status.
        status: u16,
        /// From the `retry-after` header.
        retry_after: Option<Duration>,
        /// The provider's message.
        message: String,
    },
    /// Connecting, writing or reading failed (reset, refused, TLS).
    Transport {
        /// The provider.
        provider: ProviderId,
        /// What failed.
        message: String,
    },
    /// The response stream broke: a malformed event, an `error` event, or an end before
    /// the terminal event. Never a silent short answer.
    Stream {
        /// The provider.
        provider: ProviderId,
        /// What was wrong.
        message: String,
    },
    /// The request cannot be served as written (the caller's mistake, or something the
    /// chosen provider cannot express). Never counts against a provider.
    InvalidRequest {
        /// The provider that refused it, if it came from upstream.
        provider: Option<ProviderId>,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// No configured model or provider has this model name.
    ModelNotFound {
        /// The name asked for.
        model: String,
    },
    /// No provider can take the request (all breakers open, none configured for the
    /// tier, every attempt spent).
    NoProvider {
        /// Why.
        message: String,
    },
}

impl Error {
    /// Maps an upstream HTTP status and error message onto the right variant.
    ///
    /// 429 → [`RateLimited`](Error::RateLimited); 529 → [`Overloaded`](Error::Overloaded);
    /// 400, 413 and 422 → [`InvalidRequest`](Error::InvalidRequest); everything else →
    /// [`Upstream`](Error::Upstream).
    pub fn from_status(
        provider: ProviderId,
        status: u16,
        message: impl Into<String>,
        retry_after: Option<Duration>,
    ) -> Self {
        let message = message.into();
        match status {
            429 => Error::RateLimited {
                provider,
                retry_after,
                message,
            },
            529 => Error::Overloaded {
                provider,
                retry_after,
                message,
            },
            400 | 413 | 422 => Error::InvalidRequest {
                provider: Some(provider),
                message,
            },
            _ => Error::Upstream {
                provider,
                status,
                retry_after,
                message,
            },
        }
    }

    /// The stable snake_case code of the failure, without the provider.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Timeout { phase, .. } => match phase {
                TimeoutPhase::Connect => "connect_timeout",
                TimeoutPhase::FirstToken => "first_token_timeout",
                TimeoutPhase::Idle => "idle_timeout",
                TimeoutPhase::Total => "total_timeout",
            },
            Error::CircuitOpen { .. } => "circuit_open",
            Error::BudgetExceeded { .. } => "budget_exceeded",
            Error::RateLimited { .. } => "rate_limited",
            Error::Overloaded { .. } => "overloaded",
            Error::Upstream { status, .. } => match status {
                401 | 403 => "upstream_auth_error",
                404 => "upstream_not_found",
                500..=599 => "upstream_server_error",
                _ => "upstream_client_error",
            },
            Error::Transport { .. } => "transport_error",
            Error::Stream { .. } => "stream_error",
            Error::InvalidRequest { .. } => "invalid_request",
            Error::ModelNotFound { .. } => "model_not_found",
            Error::NoProvider { .. } => "no_provider_available",
        }
    }

    /// The provider this error is about, if any.
    pub fn provider(&self) -> Option<&ProviderId> {
        match self {
            Error::Timeout { provider, .. } | Error::InvalidRequest { provider, .. } => {
                provider.as_ref()
            }
            Error::CircuitOpen { provider, .. }
            | Error::RateLimited { provider, .. }
            | Error::Overloaded { provider, .. }
            | Error::Upstream { provider, .. }
            | Error::Transport { provider, .. }
            | Error::Stream { provider, .. } => Some(provider),
            Error::BudgetExceeded { .. }
            | Error::ModelNotFound { .. }
            | Error::NoProvider { .. } => None,
        }
    }

    /// The reason code shown to callers and used in metrics: the [`code`](Error::code),
    /// prefixed by the provider when known (`openai_first_token_timeout`,
    /// `anthropic_overloaded`, `budget_exceeded`).
    pub fn reason(&self) -> String {
        match self.provider() {
            Some(provider) => format!("{provider}_{}", self.code()),
            None => self.code().to_owned(),
        }
    }

    /// Whether another attempt, on this provider later or on another provider now, may
    /// succeed. False for the caller's own mistakes, spent budgets and deadlines, and for
    /// failures after the first token (the caller already has part of an answer).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Timeout { phase, .. } => {
                matches!(phase, TimeoutPhase::Connect | TimeoutPhase::FirstToken)
            }
            Error::CircuitOpen { .. }
            | Error::RateLimited { .. }
            | Error::Overloaded { .. }
            | Error::Transport { .. } => true,
            Error::Upstream { status, .. } => {
                matches!(status, 401 | 403 | 408 | 409 | 500..=599)
            }
            Error::Stream { .. }
            | Error::BudgetExceeded { .. }
            | Error::InvalidRequest { .. }
            | Error::ModelNotFound { .. }
            | Error::NoProvider { .. } => false,
        }
    }

    /// Whether a circuit breaker should count this against the provider. A 400 from our own
    /// bad request, a spent budget, a caller's total deadline or an already open circuit are
    /// not the provider's fault.
    pub fn counts_against_provider(&self) -> bool {
        match self {
            Error::Timeout { phase, .. } => *phase != TimeoutPhase::Total,
            Error::RateLimited { .. }
            | Error::Overloaded { .. }
            | Error::Transport { .. }
            | Error::Stream { .. } => true,
            Error::Upstream { status, .. } => matches!(status, 401 | 403 | 408 | 500..=599),
            Error::CircuitOpen { .. }
            | Error::BudgetExceeded { .. }
            | Error::InvalidRequest { .. }
            | Error::ModelNotFound { .. }
            | Error::NoProvider { .. } => false,
        }
    }

    /// How long the caller should wait before trying again, if anyone said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::CircuitOpen { retry_after, .. }
            | Error::BudgetExceeded { retry_after, .. }
            | Error::RateLimited { retry_after, .. }
            | Error::Overloaded { retry_after, .. }
            | Error::Upstream { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status a gateway answers with: 400 invalid request, 404 unknown model,
    /// 429 budget or rate limit, 502 upstream failure, 503 no healthy provider or
    /// overload, 504 timeout. An upstream 4xx other than auth is passed on; an upstream
    /// auth failure is ours to fix, so it is a 502.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Error::CircuitOpen { .. } | Error::Overloaded { .. } | Error::NoProvider { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::BudgetExceeded { .. } | Error::RateLimited { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Error::Upstream { status, .. } => match status {
                400..=499 if !matches!(status, 401 | 403 | 407 | 408) => {
                    StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
                }
                _ => StatusCode::BAD_GATEWAY,
            },
            Error::Transport { .. } | Error::Stream { .. } => StatusCode::BAD_GATEWAY,
            Error::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            Error::ModelNotFound { .. } => StatusCode::NOT_FOUND,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Timeout {
                phase,
                provider,
                after,
            } => {
                write!(f, "{phase} timeout after {after:?}")?;
                if let Some(p) = provider {
                    write!(f, " waiting on {p}")?;
                }
                Ok(())
            }
            Error::CircuitOpen { provider, .. } => {
                write!(f, "circuit breaker for {provider} is open")
            }
            Error::BudgetExceeded { scope, .. } => write!(f, "budget exceeded for {scope}"),
            Error::RateLimited {
                provider, message, ..
            } => write!(f, "{provider} rate limited the request: {message}"),
            Error::Overloaded {
                provider, message, ..
            } => write!(f, "{provider} is overloaded: {message}"),
            Error::Upstream {
                provider,
                status,
                message,
                ..
            } => write!(f, "{provider} answered {status}: {message}"),
            Error::Transport { provider, message } => {
                write!(f, "transport error talking to {provider}: {message}")
            }
            Error::Stream { provider, message } => {
                write!(f, "broken response stream from {provider}: {message}")
            }
            Error::InvalidRequest { provider, message } => match provider {
                Some(p) => write!(f, "invalid request (rejected by {p}): {message}"),
                None => write!(f, "invalid request: {message}"),
            },
            Error::ModelNotFound { model } => write!(f, "model {model:?} not found"),
            Error::NoProvider { message } => write!(f, "no provider available: {message}"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    fn openai() -> ProviderId {
        ProviderId::OPENAI
    }

    #[test]
    fn reasons_are_provider_prefixed_snake_case() {
        let cases = [
            (
                Error::Timeout {
                    phase: TimeoutPhase::FirstToken,
                    provider: Some(openai()),
                    after: Duration::from_secs(2),
                },
                "openai_first_token_timeout",
            ),
            (
                Error::Timeout {
                    phase: TimeoutPhase::Total,
                    provider: None,
                    after: Duration::from_secs(30),
                },
                "total_timeout",
            ),
            (
                Error::from_status(ProviderId::ANTHROPIC, 529, "Overloaded", None),
                "anthropic_overloaded",
            ),
            (
                Error::from_status(openai(), 429, "slow down", None),
                "openai_rate_limited",
            ),
            (
                Error::from_status(openai(), 503, "busy", None),
                "openai_upstream_server_error",
            ),
            (
                Error::from_status(openai(), 401, "bad key", None),
                "openai_upstream_auth_error",
            ),
            (
                Error::from_status(openai(), 404, "no model", None),
                "openai_upstream_not_found",
            ),
            (
                Error::from_status(openai(), 400, "bad", None),
                "openai_invalid_request",
            ),
            (
                Error::BudgetExceeded {
                    scope: "global".into(),
                    retry_after: None,
                },
                "budget_exceeded",
            ),
            (
                Error::ModelNotFound {
                    model: "gpt-9".into(),
                },
                "model_not_found",
            ),
            (
                Error::NoProvider {
                    message: "all open".into(),
                },
                "no_provider_available",
            ),
        ];
        for (error, reason) in cases {
            assert_eq!(error.reason(), reason, "{error}");
            assert!(
                reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "reason codes are snake_case"
            );
        }
    }

    #[test]
    fn a_callers_bad_request_never_counts_against_the_provider() {
        let bad = Error::from_status(openai(), 400, "messages: required", None);
        assert!(matches!(bad, Error::InvalidRequest { .. }));
        assert!(!bad.counts_against_provider());
        assert!(!bad.is_retryable());
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn server_errors_overload_and_first_token_timeouts_are_retryable_and_count() {
        for e in [
            Error::from_status(openai(), 500, "", None),
            Error::from_status(openai(), 503, "", None),
            Error::from_status(ProviderId::ANTHROPIC, 529, "", None),
            Error::from_status(openai(), 429, "", Some(Duration::from_secs(3))),
            Error::Timeout {
                phase: TimeoutPhase::FirstToken,
                provider: Some(openai()),
                after: Duration::from_secs(1),
            },
            Error::Transport {
                provider: openai(),
                message: "reset".into(),
            },
        ] {
            assert!(e.is_retryable(), "{e} is retryable");
            assert!(
                e.counts_against_provider(),
                "{e} counts against the provider"
            );
        }
    }

    #[test]
    fn failures_after_the_first_token_are_not_retryable() {
        let idle = Error::Timeout {
            phase: TimeoutPhase::Idle,
            provider: Some(openai()),
            after: Duration::from_secs(5),
        };
        let broken = Error::Stream {
            provider: openai(),
            message: "EOF before [DONE]".into(),
        };
        for e in [idle, broken] {
            assert!(!e.is_retryable(), "{e}");
            assert!(e.counts_against_provider(), "{e}");
        }
    }

    #[test]
    fn budget_total_deadline_and_open_circuit_do_not_count() {
        for e in [
            Error::BudgetExceeded {
                scope: "tenant:acme".into(),
                retry_after: Some(Duration::from_secs(12)),
            },
            Error::Timeout {
                phase: TimeoutPhase::Total,
                provider: None,
                after: Duration::from_secs(30),
            },
            Error::CircuitOpen {
                provider: openai(),
                retry_after: None,
            },
        ] {
            assert!(!e.counts_against_provider(), "{e}");
        }
    }

    #[test]
    fn statuses_for_the_gateway() {
        let s = |e: Error| e.status().as_u16();
        assert_eq!(
            s(Error::Timeout {
                phase: TimeoutPhase::Idle,
                provider: None,
                after: Duration::ZERO
            }),
            504
        );
        assert_eq!(s(Error::from_status(openai(), 429, "", None)), 429);
        assert_eq!(s(Error::from_status(openai(), 401, "", None)), 502);
        assert_eq!(s(Error::from_status(openai(), 404, "", None)), 404);
        assert_eq!(s(Error::from_status(openai(), 500, "", None)), 502);
        assert_eq!(
            s(Error::from_status(ProviderId::ANTHROPIC, 529, "", None)),
            503
        );
        assert_eq!(s(Error::ModelNotFound { model: "x".into() }), 404);
        assert_eq!(s(Error::NoProvider { message: "".into() }), 503);
    }

    #[test]
    fn retry_after_is_kept() {
        let e = Error::from_status(openai(), 429, "", Some(Duration::from_secs(7)));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(e.to_string(), "openai rate limited the request: ");
    }
}
