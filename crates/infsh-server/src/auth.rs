//! Bearer-key authentication: `Authorization: Bearer <key>` checked against
//! `ServerConfig::api_keys` (by scoped_keys.rs's middleware) on every route but `/health`, `GET /files/{id}`
//! and the signed upload `PUT` (those are wired outside this middleware in
//! lib.rs). With no keys configured every request passes (serve() refuses
//! that on non-loopback binds unless `insecure`).
//!
//! Keys created at run time (`POST /apikeys`, `infsh keys create`) are
//! looked up in the store by digest when no admin key matches
//! (scoped_keys.rs), and limited to their scopes (scopes.rs).
//!
//! Keys are compared as SHA-256 digests with a constant-time equality, and
//! every configured key is checked, so neither the key's bytes nor which key
//! matched leak through timing.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::client_id::ClientId;
use crate::problem::Problem;

/// The accepted keys, kept as digests.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

impl ApiKeys {
    pub fn new(keys: &[String]) -> ApiKeys {
        ApiKeys {
            digests: keys.iter().map(|k| digest(k.as_bytes())).collect(),
        }
    }

    /// No keys configured: every request is let through.
    pub fn is_open(&self) -> bool {
        self.digests.is_empty()
    }

    /// Checks the request's headers; the problem is the 401 to answer.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Problem> {
        if self.is_open() {
            return Ok(());
        }
        if self.matches(presented_token(headers)?) {
            Ok(())
        } else {
            Err(Problem::unauthorized("invalid API key", true))
        }
    }

    /// Who an accepted request is from (client_id.rs): the digest of its
    /// key, or without keys its peer's IP address.
    pub fn client_id(&self, req: &Request) -> ClientId {
        if !self.is_open() {
            if let Some(token) = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(bearer_token)
            {
                return ClientId::Key(digest(token.as_bytes()));
            }
        }
        match req.extensions().get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(addr)) => ClientId::Addr(addr.ip()),
            None => ClientId::Unknown,
        }
    }

    /// Whether `token` is one of these keys (constant time).
    pub fn matches(&self, token: &str) -> bool {
        let presented = digest(token.as_bytes());
        let mut found = subtle::Choice::from(0u8);
        for d in &self.digests {
            found |= d.ct_eq(&presented);
        }
        found.into()
    }
}

/// The key of `Authorization: Bearer <key>`, or the 401 for a missing or
/// malformed header.
pub fn presented_token(headers: &HeaderMap) -> Result<&str, Problem> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(Problem::unauthorized(
            "missing API key: send Authorization: Bearer <key>",
            false,
        ));
    };
    value.to_str().ok().and_then(bearer_token).ok_or_else(|| {
        Problem::unauthorized(
            "malformed Authorization header: expected Bearer <key>",
            true,
        )
    })
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The token of `Bearer <token>` (scheme case-insensitive), if non-empty.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn parses_bearer() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer   abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn open_when_no_keys() {
        let keys = ApiKeys::new(&[]);
        assert!(keys.check(&headers(None)).is_ok());
        assert!(keys.check(&headers(Some("Bearer whatever"))).is_ok());
    }

    #[test]
    fn checks_every_key() {
        let keys = ApiKeys::new(&["k1".into(), "k2".into()]);
        assert!(keys.check(&headers(Some("Bearer k1"))).is_ok());
        assert!(keys.check(&headers(Some("Bearer k2"))).is_ok());
        let e = keys.check(&headers(Some("Bearer k3"))).unwrap_err();
        assert_eq!(e.status.as_u16(), 401);
        let e = keys.check(&headers(None)).unwrap_err();
        assert_eq!(e.status.as_u16(), 401);
        assert!(e.detail.contains("missing"));
        let e = keys.check(&headers(Some("Token k1"))).unwrap_err();
        assert_eq!(e.status.as_u16(), 401);
        // A prefix of a key is not the key.
        assert!(keys.check(&headers(Some("Bearer k"))).is_err());
    }
}
