//! Business tiers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The business value of a request. `L0` is the most valuable (revenue-critical, never
/// degraded where policy exempts it), `L2` the least (batch, internal, best effort).
///
/// The order follows the label: `L0 < L1 < L2`, so "at least as valuable as L1" is
/// `tier <= Tier::L1`.
///
/// ```
/// use switchboard_core::Tier;
/// assert!(Tier::L0 < Tier::L2);
/// assert_eq!("l1".parse::<Tier>().unwrap(), Tier::L1);
/// assert_eq!(Tier::L2.to_string(), "L2");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Tier {
    /// Highest business value.
    #[serde(alias = "l0")]
    L0,
    /// Normal traffic.
    #[serde(alias = "l1")]
    L1,
    /// Best effort.
    #[serde(alias = "l2")]
    L2,
}

impl Tier {
    /// Every tier, most valuable first.
    pub const ALL: [Tier; 3] = [Tier::L0, Tier::L1, Tier::L2];

    /// `"L0"`, `"L1"` or `"L2"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Tier::L0 => "L0",
            Tier::L1 => "L1",
            Tier::L2 => "L2",
        }
    }

    /// Index into a per-tier array (`L0` → 0).
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not `L0`, `L1` or `L2` (case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidTier(pub String);

impl fmt::Display for InvalidTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid tier {:?}: expected L0, L1 or L2", self.0)
    }
}

impl std::error::Error for InvalidTier {}

impl FromStr for Tier {
    type Err = InvalidTier;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "L0" | "l0" => Ok(Tier::L0),
            "L1" | "l1" => Ok(Tier::L1),
            "L2" | "l2" => Ok(Tier::L2),
            other => Err(InvalidTier(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_accepts_both_cases_and_writes_upper() {
        assert_eq!(serde_json::to_string(&Tier::L0).unwrap(), "\"L0\"");
        assert_eq!(serde_json::from_str::<Tier>("\"l2\"").unwrap(), Tier::L2);
        assert!(serde_json::from_str::<Tier>("\"L3\"").is_err());
    }

    #[test]
    fn parse_rejects_unknown_tiers_with_a_clear_message() {
        let err = "gold".parse::<Tier>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid tier \"gold\": expected L0, L1 or L2"
        );
    }

    #[test]
    fn index_matches_all_order() {
        for (i, t) in Tier::ALL.iter().enumerate() {
            assert_eq!(t.index(), i);
        }
    }
}
