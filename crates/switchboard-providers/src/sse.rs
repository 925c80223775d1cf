//! An incremental Server-Sent Events decoder, correct for any split of the bytes.

use std::fmt;

/// One dispatched server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; empty when the stream sent none (the spec's default type is
    /// `message`).
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// A line longer than the decoder's limit: the upstream is not sending SSE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineTooLong {
    limit: usize,
}

impl fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SSE line longer than {} bytes", self.limit)
    }
}

impl std::error::Error for LineTooLong {}

/// Decodes an SSE byte stream as the WHATWG event-stream rules say: lines end in `\n`,
/// `\r\n` or `\r` (a `\r` at the end of one chunk may pair with a `\n` at the start of the
/// next); `:` lines are comments; a field's value loses one leading space; `data` lines
/// accumulate; a blank line dispatches; a leading byte-order mark is dropped. Bytes are
/// buffered per line, so chunk boundaries inside a line or inside a UTF-8 sequence do not
/// matter.
///
/// ```
/// use switchboard_providers::SseDecoder;
/// let mut decoder = SseDecoder::new();
/// let mut events = Vec::new();
/// for chunk in [&b"event: ping\r\nda"[..], b"ta: {\"type\"", b": \"ping\"}\r", b"\n\r\n"] {
///     decoder.feed(chunk, &mut events).unwrap();
/// }
/// assert_eq!(events.len(), 1);
/// assert_eq!(events[0].event, "ping");
/// assert_eq!(events[0].data, "{\"type\": \"ping\"}");
/// ```
#[derive(Debug)]
pub struct SseDecoder {
    line: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
    /// The previous chunk ended in `\r`: a `\n` first in the next chunk belongs to it.
    after_cr: bool,
    /// Nothing decoded yet: a BOM may come first.
    at_start: bool,
    max_line: usize,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl SseDecoder {
    /// Lines longer than this are rejected (16 MiB): a bound on memory for a broken
    /// upstream.
    pub const DEFAULT_MAX_LINE: usize = 16 * 1024 * 1024;

    /// A decoder with the default line limit.
    pub fn new() -> Self {
        Self::with_max_line(Self::DEFAULT_MAX_LINE)
    }

    /// A decoder that rejects lines longer than `max_line` bytes.
    pub fn with_max_line(max_line: usize) -> Self {
        Self {
            line: Vec::new(),
            event: String::new(),
            data: String::new(),
            has_data: false,
            after_cr: false,
            at_start: true,
            max_line,
        }
    }

    /// Decodes `chunk`, pushing every event it completes onto `out`.
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), LineTooLong> {
        if chunk.is_empty() {
            // An empty chunk must not forget that the last one ended in `\r`.
            return Ok(());
        }
        if self.after_cr {
            self.after_cr = false;
            if let [b'\n', rest @ ..] = chunk {
                chunk = rest;
            }
        }
        while !chunk.is_empty() {
            match memchr::memchr2(b'\n', b'\r', chunk) {
                Some(end) => {
                    let line = &chunk[..end];
                    let was_cr = chunk[end] == b'\r';
                    chunk = &chunk[end + 1..];
                    if was_cr {
                        match chunk.first() {
                            Some(b'\n') => chunk = &chunk[1..],
                            None => self.after_cr = true,
                            Some(_) => {}
                        }
                    }
                    if self.line.is_empty() {
                        // The whole line is in this chunk: no copy.
                        if line.len() > self.max_line {
                            return Err(LineTooLong {
                                limit: self.max_line,
                            });
                        }
                        self.end_line(line, out);
                    } else {
                        self.push_line_bytes(line)?;
                        let buffered = std::mem::take(&mut self.line);
                        self.end_line(&buffered, out);
                        self.line = buffered;
                        self.line.clear();
                    }
                }
                None => {
                    self.push_line_bytes(chunk)?;
                    break;
                }
            }
        }
        Ok(())
    }

    fn push_line_bytes(&mut self, bytes: &[u8]) -> Result<(), LineTooLong> {
        if self.line.len() + bytes.len() > self.max_line {
            return Err(LineTooLong {
                limit: self.max_line,
            });
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn end_line(&mut self, mut line: &[u8], out: &mut Vec<SseEvent>) {
        if self.at_start {
            self.at_start = false;
            if let [0xEF, 0xBB, 0xBF, rest @ ..] = line {
                line = rest;
            }
        }
        if line.is_empty() {
            if self.has_data {
                if self.data.ends_with('\n') {
                    self.data.pop();
                }
                out.push(SseEvent {
                    event: std::mem::take(&mut self.event),
                    data: std::mem::take(&mut self.data),
                });
            }
            self.event.clear();
            self.data.clear();
            self.has_data = false;
        } else if line[0] != b':' {
            let (field, value) = match memchr::memchr(b':', line) {
                Some(colon) => {
                    let value = &line[colon + 1..];
                    (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
                }
                None => (line, &b""[..]),
            };
            match field {
                b"event" => {
                    self.event.clear();
                    push_lossy(&mut self.event, value);
                }
                b"data" => {
                    push_lossy(&mut self.data, value);
                    self.data.push('\n');
                    self.has_data = true;
                }
                // `id` and `retry` serve reconnection, which a one-shot API call never does.
                _ => {}
            }
        }
    }
}

/// Appends `bytes` as UTF-8, invalid sequences replaced by U+FFFD (the fast path first).
fn push_lossy(out: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => out.push_str(text),
        Err(_) => out.push_str(&String::from_utf8_lossy(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut decoder = SseDecoder::new();
        let mut out = Vec::new();
        for chunk in chunks {
            decoder.feed(chunk, &mut out).unwrap();
        }
        out
    }

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn multi_line_data_joins_with_newlines() {
        assert_eq!(decode(&[b"data: a\ndata: b\n\n"]), vec![ev("", "a\nb")]);
    }

    #[test]
    fn comments_ids_and_unknown_fields_are_ignored() {
        assert_eq!(
            decode(&[b": keep-alive\nid: 7\nretry: 10\nfoo: bar\ndata: x\n\n"]),
            vec![ev("", "x")]
        );
    }

    #[test]
    fn cr_lf_and_lone_cr_end_lines_even_across_chunks() {
        assert_eq!(decode(&[b"data: a\r", b"\n\r", b"\n"]), vec![ev("", "a")]);
        assert_eq!(
            decode(&[b"data: a\r\rdata: b\r\r"]),
            vec![ev("", "a"), ev("", "b")]
        );
    }

    #[test]
    fn utf8_split_inside_a_character_survives() {
        let bytes = "data: héllo 👋\n\n".as_bytes();
        let (a, b) = bytes.split_at(9); // inside "é"
        let (b, c) = b.split_at(8); // inside the emoji
        assert_eq!(decode(&[a, b, c]), vec![ev("", "héllo 👋")]);
    }

    #[test]
    fn blank_lines_without_data_dispatch_nothing_and_reset_the_event_name() {
        assert_eq!(decode(&[b"event: x\n\ndata: y\n\n"]), vec![ev("", "y")]);
    }

    #[test]
    fn a_field_without_colon_or_space_is_read() {
        assert_eq!(decode(&[b"data\ndata:x\n\n"]), vec![ev("", "\nx")]);
    }

    #[test]
    fn a_leading_bom_is_dropped() {
        assert_eq!(decode(&[b"\xEF\xBB\xBFdata: x\n\n"]), vec![ev("", "x")]);
    }

    #[test]
    fn an_unterminated_event_is_not_dispatched() {
        assert!(decode(&[b"data: x\n"]).is_empty());
    }

    #[test]
    fn invalid_utf8_is_replaced_in_whole_and_split_lines() {
        assert_eq!(
            decode(&[b"event: a\xFFb\ndata: x\xC3\n\n"]),
            vec![ev("a\u{FFFD}b", "x\u{FFFD}")]
        );
        assert_eq!(
            decode(&[b"data: x\xC3", b"\n\n"]),
            vec![ev("", "x\u{FFFD}")]
        );
    }

    #[test]
    fn every_split_of_a_stream_decodes_the_same() {
        let bytes: &[u8] =
            b"\xEF\xBB\xBFevent: a\r\ndata: 1\r\n\r\n: c\rdata: h\xC3\xA9\rdata:2\r\rid: 3\n\ndata: z\n\n";
        let whole = decode(&[bytes]);
        assert_eq!(whole, vec![ev("a", "1"), ev("", "h\u{e9}\n2"), ev("", "z")]);
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                let (a, rest) = bytes.split_at(i);
                let (b, c) = rest.split_at(j - i);
                assert_eq!(decode(&[a, b, c]), whole, "split at {i}, {j}");
            }
        }
    }

    #[test]
    fn the_line_limit_holds_for_whole_and_buffered_lines() {
        let mut decoder = SseDecoder::with_max_line(8);
        let mut out = Vec::new();
        assert!(decoder.feed(b"data: 12\n\n", &mut out).is_ok());
        assert_eq!(out, vec![ev("", "12")]);
        assert!(decoder.feed(b"data: 123\n", &mut out).is_err());
        let mut decoder = SseDecoder::with_max_line(8);
        assert!(decoder.feed(b"data", &mut out).is_ok());
        assert!(decoder.feed(b": 123\n", &mut out).is_err());
    }

    #[test]
    fn overlong_lines_are_rejected() {
        let mut decoder = SseDecoder::with_max_line(8);
        let mut out = Vec::new();
        assert!(decoder.feed(b"data: 0123456789", &mut out).is_err());
    }
}
