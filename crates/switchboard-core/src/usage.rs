//! Token usage.

use serde::{Deserialize, Serialize};

/// Tokens a call consumed, as the provider reported them.
///
/// `input_tokens` counts *all* input tokens, cached or not; `cached_input_tokens` is the
/// part of them served from the provider's prompt cache (billed at the cached rate).
/// Adapters normalise: OpenAI's `prompt_tokens` already includes its cached tokens;
/// Anthropic reports cache reads beside `input_tokens`, so its adapter adds them in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    /// All input (prompt) tokens, cached ones included.
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
    /// The part of `input_tokens` read from the prompt cache.
    #[serde(default)]
    pub cached_input_tokens: u64,
}

impl Usage {
    /// Usage with no cached tokens.
    pub const fn new(input_tokens: u64, output_tokens: u64) -> Self {
        Self {
            input_tokens,
            output_tokens,
            cached_input_tokens: 0,
        }
    }

    /// Input tokens billed at the full rate.
    pub const fn uncached_input_tokens(&self) -> u64 {
        self.input_tokens.saturating_sub(self.cached_input_tokens)
    }

    /// Field-wise maximum. Streams may report usage more than once (Anthropic sends input
    /// tokens in `message_start` and cumulative output tokens in `message_delta`); the
    /// largest figure seen for each field is the final one.
    pub fn merge_max(&mut self, other: Usage) {
        self.input_tokens = self.input_tokens.max(other.input_tokens);
        self.output_tokens = self.output_tokens.max(other.output_tokens);
        self.cached_input_tokens = self.cached_input_tokens.max(other.cached_input_tokens);
    }
}
