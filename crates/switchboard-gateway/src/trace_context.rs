//! W3C Trace Context: read `traceparent`, write one back.

use http::HeaderMap;
use switchboard_core::TraceId;

/// The trace id of an incoming `traceparent` (`00-<trace id>-<parent id>-<flags>`), when
/// it is valid; otherwise a fresh one, so every answer has a trace id.
pub(crate) fn incoming(headers: &HeaderMap) -> TraceId {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(parse)
        .unwrap_or_else(TraceId::random)
}

fn parse(value: &str) -> Option<TraceId> {
    let mut parts = value.trim().split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let parent = parts.next()?;
    let flags = parts.next()?;
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    if version == "ff"
        || !hex(version, 2)
        || !hex(parent, 16)
        || parent == "0000000000000000"
        || !hex(flags, 2)
    {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    trace.parse().ok()
}

/// The `traceparent` of the gateway's own span: the same trace, a new span id, sampled.
pub(crate) fn outgoing(trace: TraceId) -> String {
    let span: u64 = loop {
        let s = rand::random::<u64>();
        if s != 0 {
            break s;
        }
    };
    // `00-{trace}-{span:016x}-01`, without `fmt`.
    let mut out = String::with_capacity(55);
    out.push_str("00-");
    out.push_str(TraceHex::new(trace).as_str());
    out.push('-');
    push_hex(&mut out, span, 16);
    out.push_str("-01");
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A trace id as its 32 lowercase hex digits (what its `Display` writes), without `fmt`.
pub(crate) struct TraceHex([u8; 32]);

impl TraceHex {
    pub(crate) fn new(trace: TraceId) -> Self {
        Self(trace.to_hex())
    }

    pub(crate) fn as_str(&self) -> &str {
        // Hex digits only: always UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// Appends `value` in lowercase hex, zero-padded to at least `width` digits (`{:0width$x}`).
pub(crate) fn push_hex(out: &mut String, value: u64, width: usize) {
    let digits = (64 - value.leading_zeros() as usize)
        .div_ceil(4)
        .max(width.min(16))
        .max(1);
    for _ in 16..width {
        out.push('0');
    }
    for i in (0..digits).rev() {
        out.push(char::from(HEX[((value >> (4 * i)) & 0xf) as usize]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("traceparent", value.parse().unwrap());
        h
    }

    #[test]
    fn a_valid_traceparent_keeps_its_trace_id() {
        let id = incoming(&with(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ));
        assert_eq!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn invalid_traceparents_start_a_new_trace() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert_ne!(
                incoming(&with(bad)).to_string(),
                "4bf92f3577b34da6a3ce929d0e0e4736",
                "{bad}"
            );
        }
    }

    #[test]
    fn hex_is_what_fmt_writes() {
        for _ in 0..100 {
            let id = TraceId::random();
            assert_eq!(TraceHex::new(id).as_str(), id.to_string());
        }
        for value in [
            0,
            1,
            0xf,
            0x10,
            0xdead_beef,
            0x1_0000_0000,
            u64::MAX,
            42 << 60,
        ] {
            for width in [0, 1, 8, 16, 20] {
                let mut out = String::new();
                push_hex(&mut out, value, width);
                assert_eq!(out, format!("{value:0width$x}"), "{value} {width}");
            }
        }
    }

    #[test]
    fn outgoing_continues_the_trace() {
        let id = TraceId::random();
        let header = outgoing(id);
        assert!(header.starts_with(&format!("00-{id}-")));
        assert!(header.ends_with("-01"));
        assert_eq!(header.len(), 55);
    }
}
