//! Signed upload tokens: the capability in `upload_url` that lets the
//! client `PUT` a file's bytes without an API key (the official client sends
//! no Authorization on that PUT; docs/client-wire-notes.md §4.3).
//!
//! Token = `<expiry unix seconds>.<hex HMAC-SHA256(signing_key,
//! "infsh-upload\0" + file id + "\0" + expiry)>`, carried as `?token=`.
//! It binds one file id and one expiry; the signature is checked in
//! constant time before the expiry, so a forged token never learns whether
//! its expiry was acceptable.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a token was refused (all answered 403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("missing upload token")]
    Missing,
    #[error("malformed upload token")]
    Malformed,
    #[error("invalid upload token")]
    BadSignature,
    #[error("upload token expired")]
    Expired,
}

/// Signs and verifies upload tokens.
#[derive(Clone)]
pub struct UploadSigner {
    key: Vec<u8>,
    ttl: Duration,
}

impl std::fmt::Debug for UploadSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadSigner")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

fn mac(key: &[u8], id: &str, expires: u64) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"infsh-upload\0");
    mac.update(id.as_bytes());
    mac.update(b"\0");
    mac.update(expires.to_string().as_bytes());
    mac
}

/// The token for `id` under `key` until `expires` (unix seconds): what
/// [`UploadSigner::sign`] hands out. Public (hidden) so that tests forge
/// tokens (expired, other keys, other expiries) with the real signer.
#[doc(hidden)]
pub fn upload_token(key: &[u8], id: &str, expires: u64) -> String {
    let sig = mac(key, id, expires).finalize().into_bytes();
    format!("{expires}.{}", hex::encode(sig))
}

impl UploadSigner {
    /// An empty key is replaced by a random one (tokens then die with the
    /// process, which is the safe failure).
    pub fn new(key: &[u8], ttl: Duration) -> UploadSigner {
        let key = if key.is_empty() {
            let mut k = vec![0u8; 32];
            getrandom::fill(&mut k).expect("the OS random source works");
            k
        } else {
            key.to_vec()
        };
        UploadSigner { key, ttl }
    }

    /// The effective key (random when none was given): file URLs are
    /// signed with it too (file_urls.rs).
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// A token for `id` valid until `now + ttl`; returns it with the expiry
    /// (unix seconds).
    pub fn sign(&self, id: &str, now: SystemTime) -> (String, u64) {
        let expires = unix_secs(now) + self.ttl.as_secs().max(1);
        (upload_token(&self.key, id, expires), expires)
    }

    pub fn verify(&self, id: &str, token: Option<&str>, now: SystemTime) -> Result<(), TokenError> {
        let token = token.ok_or(TokenError::Missing)?;
        let (exp, sig) = token.split_once('.').ok_or(TokenError::Malformed)?;
        if exp.is_empty() || !exp.bytes().all(|b| b.is_ascii_digit()) || exp.len() > 20 {
            return Err(TokenError::Malformed);
        }
        let expires: u64 = exp.parse().map_err(|_| TokenError::Malformed)?;
        let sig = hex::decode(sig).map_err(|_| TokenError::Malformed)?;
        mac(&self.key, id, expires)
            .verify_slice(&sig)
            .map_err(|_| TokenError::BadSignature)?;
        if unix_secs(now) > expires {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    fn signer() -> UploadSigner {
        UploadSigner::new(b"secret", Duration::from_secs(60))
    }

    #[test]
    fn round_trip() {
        let s = signer();
        let now = SystemTime::now();
        let (tok, exp) = s.sign(ID, now);
        assert_eq!(exp, unix_secs(now) + 60);
        assert_eq!(upload_token(b"secret", ID, exp), tok);
        assert_eq!(s.verify(ID, Some(&tok), now), Ok(()));
        assert_eq!(
            s.verify(ID, Some(&tok), now + Duration::from_secs(60)),
            Ok(())
        );
    }

    #[test]
    fn expired() {
        let s = signer();
        let now = SystemTime::now();
        let (tok, _) = s.sign(ID, now);
        assert_eq!(
            s.verify(ID, Some(&tok), now + Duration::from_secs(62)),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn forged() {
        let s = signer();
        let now = SystemTime::now();
        let (tok, exp) = s.sign(ID, now);
        // Another file id.
        assert_eq!(
            s.verify("ffffffffffffffffffffffffffffffff", Some(&tok), now),
            Err(TokenError::BadSignature)
        );
        // A later expiry with the old signature.
        let sig = tok.split_once('.').unwrap().1;
        let stretched = format!("{}.{sig}", exp + 3600);
        assert_eq!(
            s.verify(ID, Some(&stretched), now),
            Err(TokenError::BadSignature)
        );
        // Another key.
        let other = UploadSigner::new(b"other", Duration::from_secs(60));
        assert_eq!(
            other.verify(ID, Some(&tok), now),
            Err(TokenError::BadSignature)
        );
        // Junk.
        assert_eq!(s.verify(ID, None, now), Err(TokenError::Missing));
        assert_eq!(s.verify(ID, Some("abc"), now), Err(TokenError::Malformed));
        assert_eq!(s.verify(ID, Some("1.zz"), now), Err(TokenError::Malformed));
        assert_eq!(s.verify(ID, Some("-1.00"), now), Err(TokenError::Malformed));
        assert_eq!(
            s.verify(ID, Some("1.00"), now),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn empty_key_is_random() {
        let a = UploadSigner::new(b"", Duration::from_secs(60));
        let b = UploadSigner::new(b"", Duration::from_secs(60));
        let now = SystemTime::now();
        let (tok, _) = a.sign(ID, now);
        assert!(a.verify(ID, Some(&tok), now).is_ok());
        assert!(b.verify(ID, Some(&tok), now).is_err());
    }
}
