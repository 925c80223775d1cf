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
    format!("00-{trace}-{span:016x}-01")
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
    fn outgoing_continues_the_trace() {
        let id = TraceId::random();
        let header = outgoing(id);
        assert!(header.starts_with(&format!("00-{id}-")));
        assert!(header.ends_with("-01"));
        assert_eq!(header.len(), 55);
    }
}
