//! Copies a Socket.IO request's head out of hyper's read buffer.
//!
//! hyper parses the URI and header values as slices of the connection's read buffer (8 KB or
//! more). Engine.IO keeps the opening request's head for the life of the session, so without a
//! copy every connected socket pins that whole buffer: about 16 KB per idle WebSocket, measured
//! with a heap profile (docs/benchmarks-notes.md). Copying a few hundred bytes once per request
//! lets the buffer go as soon as the request is parsed.

use axum::{
    extract::Request,
    http::{HeaderMap, HeaderValue, Uri},
};

/// The same request, its URI and header values in allocations of their own, and a count of
/// the CONNECTs refused on the connection it may open (Engine.IO keeps this head).
pub fn detach_from_read_buffer(request: Request) -> Request {
    let (mut head, body) = request.into_parts();
    head.uri = copied_uri(&head.uri);
    head.headers = copied_headers(&head.headers);
    head.extensions
        .insert(crate::realtime::limits::RefusedConnects::default());
    Request::from_parts(head, body)
}

fn copied_uri(uri: &Uri) -> Uri {
    // `Uri::from_maybe_shared` of owned bytes cannot fail for a URI that already parsed.
    Uri::from_maybe_shared(uri.to_string().into_bytes()).unwrap_or_else(|_| uri.clone())
}

fn copied_headers(headers: &HeaderMap) -> HeaderMap {
    let mut copy = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        // `from_bytes` copies; names are either static or already owned by `http`.
        let mut owned = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        owned.set_sensitive(value.is_sensitive());
        copy.append(name.clone(), owned);
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
        request.headers_mut().append("x-client", value.clone());
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
        let values: Vec<_> = detached.headers().get_all("x-client").iter().collect();
        assert_eq!(values, ["driver-app/1.0", "driver-app/1.0"]);
    }
}
