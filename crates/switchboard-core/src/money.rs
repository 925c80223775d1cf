//! Integer money: [`Cost`] in nano-dollars, [`Price`] per million tokens, [`PriceTable`].
//!
//! Ledgers never see a float. A `Cost` is a whole number of nano-dollars (10⁻⁹ USD), fine
//! enough that every published per-token price is exact when kept per million tokens, and
//! wide enough (`u64`) for 18 billion dollars. Arithmetic is checked or saturating by name;
//! there is no `+` that could wrap or panic.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Usage;

const NANOS_PER_USD: u64 = 1_000_000_000;
const NANOS_PER_MICRO: u64 = 1_000;

/// An amount of US dollars in whole nano-dollars (10⁻⁹ USD).
///
/// In config files a cost is written in dollars, as a string (`"0.02"`, `"$1.50"`) or a
/// number (`0.02`); it is read exactly to the nano-dollar (numbers are rounded to the
/// nearest one).
///
/// ```
/// use switchboard_core::Cost;
/// let cap: Cost = "$0.02".parse().unwrap();
/// assert_eq!(cap.as_nanos(), 20_000_000);
/// assert_eq!(cap.as_micros(), 20_000);
/// assert_eq!(cap.to_string(), "$0.02");
/// assert_eq!(Cost::MAX.checked_add(Cost::from_nanos(1)), None);
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cost(u64);

impl Cost {
    /// Nothing.
    pub const ZERO: Cost = Cost(0);
    /// The largest representable amount (about 18.4 billion dollars).
    pub const MAX: Cost = Cost(u64::MAX);

    /// From nano-dollars.
    pub const fn from_nanos(nanos: u64) -> Self {
        Cost(nanos)
    }

    /// From micro-dollars; `None` on overflow.
    pub const fn from_micros(micros: u64) -> Option<Self> {
        match micros.checked_mul(NANOS_PER_MICRO) {
            Some(n) => Some(Cost(n)),
            None => None,
        }
    }

    /// From whole dollars; `None` on overflow.
    pub const fn from_usd(usd: u64) -> Option<Self> {
        match usd.checked_mul(NANOS_PER_USD) {
            Some(n) => Some(Cost(n)),
            None => None,
        }
    }

    /// In nano-dollars.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// In micro-dollars, rounded down.
    pub const fn as_micros(self) -> u64 {
        self.0 / NANOS_PER_MICRO
    }

    /// In dollars, for display and metrics only; never feed it back into a ledger.
    pub fn as_usd_f64(self) -> f64 {
        self.0 as f64 / NANOS_PER_USD as f64
    }

    /// `self + rhs`, or `None` on overflow.
    pub const fn checked_add(self, rhs: Cost) -> Option<Cost> {
        match self.0.checked_add(rhs.0) {
            Some(n) => Some(Cost(n)),
            None => None,
        }
    }

    /// `self - rhs`, or `None` if `rhs` is larger.
    pub const fn checked_sub(self, rhs: Cost) -> Option<Cost> {
        match self.0.checked_sub(rhs.0) {
            Some(n) => Some(Cost(n)),
            None => None,
        }
    }

    /// `self * n`, or `None` on overflow.
    pub const fn checked_mul(self, n: u64) -> Option<Cost> {
        match self.0.checked_mul(n) {
            Some(n) => Some(Cost(n)),
            None => None,
        }
    }

    /// `self + rhs`, clamped at [`Cost::MAX`].
    pub const fn saturating_add(self, rhs: Cost) -> Cost {
        Cost(self.0.saturating_add(rhs.0))
    }

    /// `self - rhs`, clamped at zero.
    pub const fn saturating_sub(self, rhs: Cost) -> Cost {
        Cost(self.0.saturating_sub(rhs.0))
    }

    /// Whether this is zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// `self × numerator / denominator`, rounded up, or `None` on overflow or a zero
    /// denominator. For fractions of a cap (`cap × 80 / 100`) and per-token prices.
    pub const fn mul_div_ceil(self, numerator: u64, denominator: u64) -> Option<Cost> {
        if denominator == 0 {
            return None;
        }
        // The common case fits 64 bits, and a 64-bit division by a constant is a
        // multiplication; a 128-bit one is a library call.
        if let Some(product) = self.0.checked_mul(numerator) {
            return Some(Cost(product.div_ceil(denominator)));
        }
        let product = self.0 as u128 * numerator as u128;
        let quotient = product.div_ceil(denominator as u128);
        if quotient > u64::MAX as u128 {
            None
        } else {
            Some(Cost(quotient as u64))
        }
    }
}

impl fmt::Display for Cost {
    /// Dollars with as many decimals as needed (at least two): `$0.02`, `$0.000000150`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / NANOS_PER_USD;
        let frac = self.0 % NANOS_PER_USD;
        let mut digits = format!("{frac:09}");
        while digits.len() > 2 && digits.ends_with('0') {
            digits.pop();
        }
        write!(f, "${whole}.{digits}")
    }
}

impl fmt::Debug for Cost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cost({self})")
    }
}

/// A string that is not a dollar amount Switchboard can hold exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidCost {
    input: String,
    problem: &'static str,
}

impl fmt::Display for InvalidCost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid dollar amount {:?}: {}",
            self.input, self.problem
        )
    }
}

impl std::error::Error for InvalidCost {}

impl FromStr for Cost {
    type Err = InvalidCost;

    /// Parses `"0.02"`, `"$0.02"`, `"12"`: a non-negative decimal in dollars with at most
    /// nine decimals.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |problem| InvalidCost {
            input: s.to_owned(),
            problem,
        };
        let t = s.trim();
        let t = t.strip_prefix('$').unwrap_or(t);
        let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
        if whole.is_empty() && frac.is_empty() {
            return Err(err("expected a number of dollars such as \"0.02\""));
        }
        if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("expected a non-negative decimal such as \"0.02\""));
        }
        if frac.len() > 9 {
            return Err(err("more than nine decimals (finer than a nano-dollar)"));
        }
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| err("too large"))?
        };
        let mut frac_nanos: u64 = 0;
        for (i, b) in frac.bytes().enumerate() {
            frac_nanos += u64::from(b - b'0') * 10u64.pow(8 - i as u32);
        }
        whole
            .checked_mul(NANOS_PER_USD)
            .and_then(|n| n.checked_add(frac_nanos))
            .map(Cost)
            .ok_or_else(|| err("too large"))
    }
}

impl Serialize for Cost {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = self.to_string();
        serializer.serialize_str(&text[1..])
    }
}

impl<'de> Deserialize<'de> for Cost {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Cost;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a dollar amount such as \"0.02\" or 0.02")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Cost, E> {
                v.parse().map_err(E::custom)
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Cost, E> {
                Cost::from_usd(v).ok_or_else(|| E::custom("dollar amount too large"))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Cost, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom("dollar amount must not be negative"))
                    .and_then(|v| self.visit_u64(v))
            }

            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Cost, E> {
                if !v.is_finite() || v < 0.0 {
                    return Err(E::custom(
                        "dollar amount must be a finite non-negative number",
                    ));
                }
                let nanos = (v * NANOS_PER_USD as f64).round();
                if nanos >= u64::MAX as f64 {
                    return Err(E::custom("dollar amount too large"));
                }
                Ok(Cost(nanos as u64))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// What one model charges, in dollars per million tokens.
///
/// ```
/// use switchboard_core::{Cost, Price, Usage};
/// // gpt-4o-mini: $0.15 in, $0.60 out, $0.075 cached, per million tokens.
/// let price = Price::per_million("0.15", "0.60").unwrap().with_cached_input("0.075").unwrap();
/// let usage = Usage { input_tokens: 1_000, output_tokens: 500, cached_input_tokens: 200 };
/// // 800 × 150 + 200 × 75 + 500 × 600 nano-dollars
/// assert_eq!(price.cost_of(&usage), Some(Cost::from_nanos(435_000)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Per million uncached input tokens.
    pub input: Cost,
    /// Per million output tokens.
    pub output: Cost,
    /// Per million cached input tokens; the input price when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<Cost>,
}

impl Price {
    /// A price from dollar strings per million input and output tokens.
    pub fn per_million(input: &str, output: &str) -> Result<Self, InvalidCost> {
        Ok(Self {
            input: input.parse()?,
            output: output.parse()?,
            cached_input: None,
        })
    }

    /// Sets the cached-input price per million tokens.
    pub fn with_cached_input(mut self, cached_input: &str) -> Result<Self, InvalidCost> {
        self.cached_input = Some(cached_input.parse()?);
        Ok(self)
    }

    /// The cost of `tokens` at `per_million`, rounded up to the nano-dollar.
    pub const fn tokens(tokens: u64, per_million: Cost) -> Option<Cost> {
        per_million.mul_div_ceil(tokens, 1_000_000)
    }

    /// The cost of a call's usage, each component rounded up; `None` on overflow.
    pub fn cost_of(&self, usage: &Usage) -> Option<Cost> {
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        let cached_rate = self.cached_input.unwrap_or(self.input);
        Self::tokens(usage.uncached_input_tokens(), self.input)?
            .checked_add(Self::tokens(cached, cached_rate)?)?
            .checked_add(Self::tokens(usage.output_tokens, self.output)?)
    }
}

/// Prices by concrete model name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PriceTable(BTreeMap<String, Price>);

impl PriceTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a model's price.
    pub fn insert(&mut self, model: impl Into<String>, price: Price) -> Option<Price> {
        self.0.insert(model.into(), price)
    }

    /// The price of a model.
    pub fn get(&self, model: &str) -> Option<&Price> {
        self.0.get(model)
    }

    /// Entries of `overrides` replace this table's.
    pub fn merge(&mut self, overrides: PriceTable) {
        self.0.extend(overrides.0);
    }

    /// Models and prices in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Price)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl FromIterator<(String, Price)> for PriceTable {
    fn from_iter<I: IntoIterator<Item = (String, Price)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_dollars_exactly() {
        assert_eq!("0.02".parse::<Cost>().unwrap().as_nanos(), 20_000_000);
        assert_eq!("$1.5".parse::<Cost>().unwrap().as_nanos(), 1_500_000_000);
        assert_eq!(".000000001".parse::<Cost>().unwrap().as_nanos(), 1);
        assert_eq!("7".parse::<Cost>().unwrap(), Cost::from_usd(7).unwrap());
    }

    #[test]
    fn rejects_negative_too_fine_and_garbage() {
        for (bad, problem) in [
            ("-1", "non-negative"),
            ("0.0000000001", "nine decimals"),
            ("abc", "non-negative decimal"),
            ("", "expected a number"),
            ("99999999999999999999", "too large"),
        ] {
            let err = bad.parse::<Cost>().unwrap_err();
            assert!(err.to_string().contains(problem), "{bad}: {err}");
        }
    }

    #[test]
    fn display_keeps_needed_decimals() {
        assert_eq!(Cost::from_nanos(150).to_string(), "$0.00000015");
        assert_eq!(Cost::from_usd(3).unwrap().to_string(), "$3.00");
        assert_eq!(Cost::ZERO.to_string(), "$0.00");
    }

    #[test]
    fn serde_accepts_strings_and_numbers_and_writes_strings() {
        let c: Cost = serde_json::from_str("\"0.02\"").unwrap();
        assert_eq!(c.as_micros(), 20_000);
        let f: Cost = serde_json::from_str("0.02").unwrap();
        assert_eq!(f, c);
        let i: Cost = serde_json::from_str("2").unwrap();
        assert_eq!(i, Cost::from_usd(2).unwrap());
        assert!(serde_json::from_str::<Cost>("-0.5").is_err());
        assert!(serde_json::from_str::<Cost>("-3").is_err());
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"0.02\"");
    }

    #[test]
    fn arithmetic_never_overflows_silently() {
        assert_eq!(Cost::MAX.checked_add(Cost::from_nanos(1)), None);
        assert_eq!(Cost::ZERO.checked_sub(Cost::from_nanos(1)), None);
        assert_eq!(Cost::MAX.checked_mul(2), None);
        assert_eq!(Cost::MAX.saturating_add(Cost::from_nanos(5)), Cost::MAX);
        assert_eq!(Cost::ZERO.saturating_sub(Cost::from_nanos(5)), Cost::ZERO);
        assert_eq!(Cost::from_micros(u64::MAX), None);
        assert_eq!(Cost::MAX.mul_div_ceil(2, 1), None);
        assert_eq!(Cost::from_nanos(10).mul_div_ceil(1, 0), None);
    }

    #[test]
    fn token_costs_round_up_to_the_nano_dollar() {
        // $0.0375 per million tokens is 37.5 nano-dollars per token.
        let rate: Cost = "0.0375".parse().unwrap();
        assert_eq!(Price::tokens(1, rate), Some(Cost::from_nanos(38)));
        assert_eq!(Price::tokens(2, rate), Some(Cost::from_nanos(75)));
        assert_eq!(Price::tokens(1_000_000, rate), Some(rate));
        assert_eq!(Price::tokens(0, rate), Some(Cost::ZERO));
    }

    #[test]
    fn cached_tokens_default_to_the_input_rate() {
        let price = Price::per_million("1", "5").unwrap();
        let usage = Usage {
            input_tokens: 100,
            output_tokens: 10,
            cached_input_tokens: 40,
        };
        assert_eq!(
            price.cost_of(&usage),
            Some(Cost::from_nanos(100_000 + 50_000))
        );
    }

    #[test]
    fn price_table_round_trips_from_toml_like_json() {
        let table: PriceTable = serde_json::from_value(serde_json::json!({
            "gpt-4o-mini": {"input": "0.15", "output": "0.60", "cached_input": "0.075"}
        }))
        .unwrap();
        let price = table.get("gpt-4o-mini").unwrap();
        assert_eq!(price.output.as_nanos(), 600_000_000);
        let back = serde_json::to_value(&table).unwrap();
        assert_eq!(back["gpt-4o-mini"]["output"], "0.60");
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(nanos in any::<u64>()) {
            let cost = Cost::from_nanos(nanos);
            prop_assert_eq!(cost.to_string().parse::<Cost>().unwrap(), cost);
        }

        #[test]
        fn checked_add_agrees_with_u128(a in any::<u64>(), b in any::<u64>()) {
            let wide = a as u128 + b as u128;
            let sum = Cost::from_nanos(a).checked_add(Cost::from_nanos(b));
            prop_assert_eq!(sum.map(Cost::as_nanos).map(u128::from), (wide <= u64::MAX as u128).then_some(wide));
        }

        #[test]
        fn mul_div_ceil_agrees_with_u128(a in any::<u64>(), n in prop_oneof![any::<u64>(), 0u64..1_000_000], d in any::<u64>()) {
            let wide = (d != 0).then(|| (a as u128 * n as u128).div_ceil(d as u128));
            let wide = wide.filter(|q| *q <= u64::MAX as u128);
            let got = Cost::from_nanos(a).mul_div_ceil(n, d).map(|c| u128::from(c.as_nanos()));
            prop_assert_eq!(got, wide);
        }

        #[test]
        fn cost_of_never_undercounts(input in 0u64..10_000_000, output in 0u64..10_000_000, cached_frac in 0u64..=100) {
            let price = Price::per_million("2.5", "10").unwrap().with_cached_input("1.25").unwrap();
            let cached = input * cached_frac / 100;
            let usage = Usage { input_tokens: input, output_tokens: output, cached_input_tokens: cached };
            let exact_pico = (input - cached) as u128 * 2_500_000 + cached as u128 * 1_250_000 + output as u128 * 10_000_000;
            let got = price.cost_of(&usage).unwrap().as_nanos() as u128 * 1_000;
            prop_assert!(got >= exact_pico);
            prop_assert!(got < exact_pico + 3 * 1_000, "each of three components rounds up by less than a nano-dollar");
        }
    }
}
