//! The pre-call cost estimate a request carries: [`CostEstimate`].

use serde::{Deserialize, Serialize};

use crate::{Cost, ModelName, Price, Usage};

/// Extension: what a request is expected to cost, and the most it can cost, before it is
/// sent. Set by the estimate layer; read by budget (which reserves `upper_bound` and judges
/// thresholds on `expected`), routing (which compares `expected` with a per-request cap)
/// and metrics.
///
/// `upper_bound` is the worst case the hard cap is held against: a safe bound on the
/// input tokens plus `max_output_tokens` of output, at the model's price. `expected` uses
/// the best input estimate and the expected output.
///
/// ```
/// use switchboard_core::{Cost, CostEstimate, Price, Usage};
/// let price = Price::per_million("0.15", "0.60").unwrap();
/// let estimate = CostEstimate::new("gpt-4o-mini", price, 1_000, 1_000, 200, 1_000);
/// assert_eq!(estimate.expected, Cost::from_nanos(150_000 + 120_000));
/// assert_eq!(estimate.upper_bound, Cost::from_nanos(150_000 + 600_000));
/// assert_eq!(estimate.cost_of(&Usage::new(1_000, 10)), Cost::from_nanos(150_000 + 6_000));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostEstimate {
    /// The concrete model the estimate priced.
    pub model: ModelName,
    /// The model's price, so a settlement can price the real usage with the same rates.
    pub price: Price,
    /// Best estimate of the input tokens (exact for models with a public tokenizer).
    pub input_tokens: u64,
    /// A bound the input tokens will not exceed (equal to `input_tokens` when exact).
    pub input_tokens_bound: u64,
    /// Expected output tokens (from a learned per-scene percentile, or `max_tokens`).
    pub expected_output_tokens: u64,
    /// The most output tokens the call may produce (`max_tokens`, or the model's limit).
    pub max_output_tokens: u64,
    /// Expected cost: `input_tokens` and `expected_output_tokens` at `price`.
    pub expected: Cost,
    /// Worst-case cost: `input_tokens_bound` and `max_output_tokens` at `price`.
    pub upper_bound: Cost,
}

impl CostEstimate {
    /// An estimate from token counts and a price; costs saturate at [`Cost::MAX`] rather
    /// than wrap.
    pub fn new(
        model: impl Into<ModelName>,
        price: Price,
        input_tokens: u64,
        input_tokens_bound: u64,
        expected_output_tokens: u64,
        max_output_tokens: u64,
    ) -> Self {
        let input_tokens_bound = input_tokens_bound.max(input_tokens);
        let max_output_tokens = max_output_tokens.max(expected_output_tokens);
        let cost = |input, output| {
            price
                .cost_of(&Usage::new(input, output))
                .unwrap_or(Cost::MAX)
        };
        Self {
            model: model.into(),
            price,
            input_tokens,
            input_tokens_bound,
            expected_output_tokens,
            max_output_tokens,
            expected: cost(input_tokens, expected_output_tokens),
            upper_bound: cost(input_tokens_bound, max_output_tokens),
        }
    }

    /// The cost of real usage at this estimate's price (saturating).
    pub fn cost_of(&self, usage: &Usage) -> Cost {
        self.price.cost_of(usage).unwrap_or(Cost::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_never_below_the_estimates() {
        let price = Price::per_million("1", "5").unwrap();
        let e = CostEstimate::new("m", price, 100, 50, 40, 10);
        assert_eq!(e.input_tokens_bound, 100);
        assert_eq!(e.max_output_tokens, 40);
        assert_eq!(e.expected, e.upper_bound);
        assert_eq!(e.expected, Cost::from_nanos(100_000 + 200_000));
    }

    #[test]
    fn overflow_saturates_instead_of_wrapping() {
        let price = Price::per_million("1000000", "1000000").unwrap();
        let e = CostEstimate::new("m", price, u64::MAX, u64::MAX, 1, 1);
        assert_eq!(e.upper_bound, Cost::MAX);
    }
}
