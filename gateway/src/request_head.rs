//! What Engine.IO keeps of a Socket.IO request's head.
//!
//! Engine.IO keeps the opening request's head for the life of the session. Two things made that
//! expensive. hyper parses the URI and header values as slices of the connection's read buffer
//! (8 KB or more), so every connected socket pinned that whole buffer: about 16 KB per idle
//! WebSocket, measured with a heap profile (docs/performance-history.md). And every header stayed,
//! however large: a client sending 360 KB of headers held 419 KB per socket. The copy made here
//! keeps the URI and only the headers something reads (below), in allocations of their own, so
//! the buffer goes as soon as the request is parsed. It runs after CORS, which reads the rest.

use axum::{
    extract::Request,
    http::{
        HeaderMap, HeaderName, HeaderValue, Uri,
        header::{AUTHORIZATION, CONTENT_TYPE, SEC_WEBSOCKET_KEY},
    },
};

/// The headers read after CORS: the handshake's token fallback, how a polling body is encoded,
/// and the key a WebSocket upgrade answers with.
const KEPT: [HeaderName; 3] = [AUTHORIZATION, CONTENT_TYPE, SEC_WEBSOCKET_KEY];

/// The same request with its URI and the kept headers in allocations of their own, the other
/// headers dropped, and a count of the CONNECTs refused on the connection it may open.
pub fn detach_from_read_buffer(request: Request) -> Request {
    let (mut head, body) = request.into_parts();
    head.uri = copied_uri(&head.uri);
    head.headers = kept_headers(&head.headers);
    head.extensions
        .insert(crate::realtime::limits::RefusedConnects::default());
    Request::from_parts(head, body)
}

fn copied_uri(uri: &Uri) -> Uri {
    // `Uri::from_maybe_shared` of owned bytes cannot fail for a URI that already parsed.
    Uri::from_maybe_shared(uri.to_string().into_bytes()).unwrap_or_else(|_| uri.clone())
}

fn kept_headers(headers: &HeaderMap) -> HeaderMap {
    let mut copy = HeaderMap::new();
    for name in &KEPT {
        for value in headers.get_all(name) {
            // `from_bytes` copies; the names are static.
            let mut owned =
                HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
            owned.set_sensitive(value.is_sensitive());
            copy.append(name.clone(), owned);
        }
    }
    copy
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, Bytes};

    use super::*;

    /// A request whose URI and header values point into one shared buffer, as hyper builds it.
    fn request_sharing(buffer: &Bytes) -> Request {
        let text = std::str::from_utf8(buffer).expect("ascii");
        let path_end = text.find(' ').expect("path");
        let value_start = path_end + 1;
        let value_end = value_start + text[value_start..].find(' ').expect("value");
        let uri = Uri::from_maybe_shared(buffer.slice(..path_end)).expect("uri");
        let value = HeaderValue::from_maybe_shared(buffer.slice(value_start..value_end))
            .expect("header value");
        let mut request = Request::new(Body::empty());
        *request.uri_mut() = uri;
        request.headers_mut().append(AUTHORIZATION, value.clone());
        request.headers_mut().append(AUTHORIZATION, value.clone());
        request.headers_mut().append("x-client", value);
        request
    }

    #[test]
    fn the_copy_no_longer_holds_the_read_buffer() {
        let mut raw = b"/socket.io/?EIO=4&transport=websocket driver-app/1.0 ".to_vec();
        raw.resize(8192, b' ');
        let buffer = Bytes::from(raw);
        let request = request_sharing(&buffer);
        assert!(!buffer.is_unique(), "the test request shares the buffer");

        let detached = detach_from_read_buffer(request);

        assert!(
            buffer.is_unique(),
            "the detached request still holds the buffer"
        );
        assert_eq!(detached.uri(), "/socket.io/?EIO=4&transport=websocket");
        let values: Vec<_> = detached.headers().get_all(AUTHORIZATION).iter().collect();
        assert_eq!(values, ["driver-app/1.0", "driver-app/1.0"]);
    }

    #[test]
    fn only_the_headers_read_later_are_kept() {
        let mut request = Request::new(Body::empty());
        let headers = request.headers_mut();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        headers.insert(
            SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZQ=="),
        );
        headers.insert(
            "cookie",
            HeaderValue::from_str(&"c".repeat(12_000)).expect("value"),
        );
        headers.insert("user-agent", HeaderValue::from_static("driver-app/1.0"));

        let detached = detach_from_read_buffer(request);

        let mut names: Vec<_> = detached.headers().keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["authorization", "content-type", "sec-websocket-key"]
        );
    }
}
