//! What an edge saw of the HTTP or gRPC call that carried a chat request: [`RequestHead`].

use http::HeaderMap;

/// Extension: the path (or gRPC method) and headers of the call that carried a
/// [`ChatRequest`](crate::ChatRequest).
///
/// An edge that turns an `http::Request` into a `ChatRequest` inserts it, so that
/// admission can classify on headers, API key and route even when it runs on the
/// `ChatRequest` rather than at the edge.
///
/// ```
/// use http::HeaderMap;
/// use switchboard_core::RequestHead;
/// let mut headers = HeaderMap::new();
/// headers.insert("x-switchboard-tier", "L2".parse().unwrap());
/// let head = RequestHead::new("/v1/chat/completions", headers);
/// assert_eq!(head.header("x-switchboard-tier"), Some("L2"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    /// The URI path (`/v1/chat/completions`), or the gRPC method
    /// (`/switchboard.v1.Chat/Complete`).
    pub path: String,
    /// The request headers.
    pub headers: HeaderMap,
}

impl RequestHead {
    /// A head from a path and headers.
    pub fn new(path: impl Into<String>, headers: HeaderMap) -> Self {
        Self {
            path: path.into(),
            headers,
        }
    }

    /// A header's value, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}
