//! W3C trace ids.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A W3C Trace Context trace id: 16 bytes, written as 32 lowercase hex digits, never all
/// zeros. Every answer carries one, so a degraded or failed answer can be found in the logs
/// and traces.
///
/// ```
/// use switchboard_core::TraceId;
/// let id: TraceId = "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap();
/// assert_eq!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert!("00000000000000000000000000000000".parse::<TraceId>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId([u8; 16]);

impl TraceId {
    /// A fresh random trace id.
    pub fn random() -> Self {
        loop {
            let bytes: [u8; 16] = rand::random();
            if bytes != [0; 16] {
                return TraceId(bytes);
            }
        }
    }

    /// The id from its bytes; `None` for the invalid all-zero id.
    pub fn from_bytes(bytes: [u8; 16]) -> Option<Self> {
        (bytes != [0; 16]).then_some(TraceId(bytes))
    }

    /// The id's bytes.
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0
    }
}

impl TraceId {
    /// The 32 lowercase hex digits, without formatting machinery (this is on every
    /// request's path: headers, logs, the `switchboard` block).
    pub fn to_hex(&self) -> [u8; 32] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 32];
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = DIGITS[usize::from(b >> 4)];
            out[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
        }
        out
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.to_hex();
        // Hex digits are ASCII.
        f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

/// A string that is not a valid W3C trace id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidTraceId;

impl fmt::Display for InvalidTraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid trace id: expected 32 lowercase hex digits, not all zero")
    }
}

impl std::error::Error for InvalidTraceId {}

impl FromStr for TraceId {
    type Err = InvalidTraceId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.as_bytes();
        if s.len() != 32 {
            return Err(InvalidTraceId);
        }
        let mut bytes = [0u8; 16];
        for (i, pair) in s.chunks_exact(2).enumerate() {
            let hi = hex_value(pair[0]).ok_or(InvalidTraceId)?;
            let lo = hex_value(pair[1]).ok_or(InvalidTraceId)?;
            bytes[i] = hi << 4 | lo;
        }
        TraceId::from_bytes(bytes).ok_or(InvalidTraceId)
    }
}

/// W3C trace context allows lowercase hex only.
fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl Serialize for TraceId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TraceId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_round_trip_through_text_and_serde() {
        let id = TraceId::random();
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(text.parse::<TraceId>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<TraceId>(&json).unwrap(), id);
    }

    #[test]
    fn hex_is_the_w3c_lowercase_form() {
        let text = "4bf92f3577b34da6a3ce929d0e0e4736";
        let id: TraceId = text.parse().unwrap();
        assert_eq!(&id.to_hex(), text.as_bytes());
        assert_eq!(id.to_string(), text);
        assert_eq!(format!("{id:?}"), format!("TraceId({text})"));
    }

    #[test]
    fn rejects_uppercase_short_and_non_hex() {
        for bad in [
            "4BF92F3577B34DA6A3CE929D0E0E4736",
            "4bf92f3577b34da6a3ce929d0e0e473",
            "4bf92f3577b34da6a3ce929d0e0e473g",
            "",
        ] {
            assert_eq!(bad.parse::<TraceId>(), Err(InvalidTraceId), "{bad}");
        }
    }
}
