//! `CORS_ORIGINS`: which browser origins may open sockets.
//!
//! Browsers send `Origin` on every cross-origin request and on WebSocket upgrades, which CORS
//! does not cover; the check here applies to both, before Engine.IO sees the request. Requests
//! without `Origin` (native apps, backends, load balancers) are not browsers' and pass.

use axum::http::{HeaderValue, Uri};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origins {
    /// `*`: any origin (the connection guide's `origin: '*'`).
    Any,
    /// `scheme://host[:port]`, lowercase, as browsers send them.
    List(Vec<String>),
}

impl Origins {
    /// `*`, or origins separated by commas. Each must be `http(s)://host[:port]` with no path.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw == "*" {
            return Ok(Self::Any);
        }
        let mut origins = Vec::new();
        for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            origins.push(origin(item).ok_or_else(|| {
                format!("{item:?} is not an origin (http(s)://host[:port], no path)")
            })?);
        }
        if origins.is_empty() {
            return Err("lists no origin (use * for any)".into());
        }
        Ok(Self::List(origins))
    }

    /// Whether a request with this `Origin` header (or none) may reach Socket.IO.
    pub fn allows(&self, header: Option<&HeaderValue>) -> bool {
        match (self, header) {
            (Self::Any, _) | (_, None) => true,
            (Self::List(list), Some(value)) => value
                .to_str()
                .is_ok_and(|v| list.iter().any(|o| o.eq_ignore_ascii_case(v))),
        }
    }
}

fn origin(item: &str) -> Option<String> {
    let uri: Uri = item.parse().ok()?;
    let scheme = uri.scheme_str().filter(|s| *s == "http" || *s == "https")?;
    let authority = uri.authority()?;
    let bare = uri.path_and_query().is_none_or(|p| p.as_str() == "/");
    (bare && !item.ends_with('/') && !authority.as_str().contains('@'))
        .then(|| format!("{scheme}://{}", authority.as_str().to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_allows_its_origins_and_requests_without_one() {
        let origins =
            Origins::parse("https://ops.example.com, http://localhost:5173").expect("list");
        let allows = |v: &str| origins.allows(Some(&HeaderValue::from_str(v).expect("value")));
        assert!(allows("https://ops.example.com"));
        assert!(allows("https://OPS.example.com"));
        assert!(allows("http://localhost:5173"));
        assert!(!allows("https://evil.example.com"));
        assert!(
            !allows("http://ops.example.com"),
            "the scheme is part of the origin"
        );
        assert!(!allows("http://localhost:5174"), "so is the port");
        assert!(!allows("null"));
        assert!(origins.allows(None), "native apps send no Origin");
        assert!(
            Origins::parse("*")
                .expect("any")
                .allows(Some(&HeaderValue::from_static("null")))
        );
    }

    #[test]
    fn anything_but_bare_origins_is_refused() {
        for bad in [
            "",
            ",",
            "ops.example.com",
            "ftp://ops.example.com",
            "https://ops.example.com/",
            "https://ops.example.com/app",
            "https://ops.example.com?x=1",
            "https://user@ops.example.com",
            "*,https://ops.example.com",
        ] {
            assert!(Origins::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
