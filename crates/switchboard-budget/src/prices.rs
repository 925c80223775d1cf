//! The shipped price table and output limits.
//!
//! Prices are list prices in US dollars per million tokens for standard (non-batch)
//! requests, checked against the providers' pricing pages in November 2026. Anthropic's
//! cached input is the cache-read price; cache writes and long-context (> 200K input)
//! surcharges are not modelled. Override any entry with
//! [`EstimatorBuilder::prices`](crate::EstimatorBuilder::prices).

use switchboard_core::{Price, PriceTable};

/// `(model, input, output, cached input, max output tokens)`.
const SHIPPED: &[(&str, &str, &str, &str, u64)] = &[
    // OpenAI
    ("gpt-4o-mini", "0.15", "0.60", "0.075", 16_384),
    ("gpt-4o", "2.50", "10.00", "1.25", 16_384),
    ("gpt-4.1", "2.00", "8.00", "0.50", 32_768),
    ("gpt-4.1-mini", "0.40", "1.60", "0.10", 32_768),
    ("gpt-4.1-nano", "0.10", "0.40", "0.025", 32_768),
    ("gpt-5", "1.25", "10.00", "0.125", 128_000),
    ("gpt-5-mini", "0.25", "2.00", "0.025", 128_000),
    ("gpt-5-nano", "0.05", "0.40", "0.005", 128_000),
    ("o3", "2.00", "8.00", "0.50", 100_000),
    ("o4-mini", "1.10", "4.40", "0.275", 100_000),
    // Anthropic
    ("claude-haiku-4-5", "1.00", "5.00", "0.10", 64_000),
    ("claude-sonnet-4-5", "3.00", "15.00", "0.30", 64_000),
    ("claude-sonnet-4-6", "3.00", "15.00", "0.30", 64_000),
    ("claude-opus-4-5", "5.00", "25.00", "0.50", 64_000),
    ("claude-opus-4-1", "15.00", "75.00", "1.50", 32_000),
];

/// The shipped price table: current OpenAI and Anthropic models.
///
/// ```
/// let table = switchboard_budget::shipped_prices();
/// let mini = table.get("gpt-4o-mini").unwrap();
/// assert_eq!(mini.input.as_nanos(), 150_000_000); // $0.15 per million tokens
/// assert_eq!(mini.output.as_nanos(), 600_000_000);
/// ```
pub fn shipped_prices() -> PriceTable {
    SHIPPED
        .iter()
        .map(|&(model, input, output, cached, _)| {
            let price = Price::per_million(input, output)
                .and_then(|p| p.with_cached_input(cached))
                .expect("shipped prices are valid dollar amounts");
            (model.to_owned(), price)
        })
        .collect()
}

/// The most output tokens a shipped model can produce, when known.
pub(crate) fn shipped_max_output(model: &str) -> Option<u64> {
    SHIPPED
        .iter()
        .find(|entry| entry.0 == model)
        .map(|entry| entry.4)
}

/// Whether `model` is `base` or a dated or suffixed snapshot of it
/// (`gpt-4o-mini-2024-07-18`, `claude-sonnet-4-5-20250929`).
pub(crate) fn is_snapshot_of(model: &str, base: &str) -> bool {
    model == base
        || model
            .strip_prefix(base)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
}
