//! Signed download URLs (issue 15, docs/security.md "File access"): a
//! stored file is private unless registered `public: true`, and its bytes
//! go to a request that carries either a valid key or the file's expiring
//! signature, `?sig=<expiry unix seconds>.<hex HMAC-SHA256>`.
//!
//! The signature is the HMAC of `"infsh-file\0" + id + "\0" + expiry` under
//! the server's signing key (the one upload tokens use, `--signing-secret`
//! or the data folder's `signing.key`; a different prefix, so an upload
//! token is never a download signature nor the other way round). API nodes
//! that share a store share the key, so any of them verifies any other's
//! URLs.
//!
//! URLs are signed when handed out, never stored signed by the engine: a
//! task's output keeps `{public_url}/files/{id}/{name}` and every answer
//! that shows it signs it afresh (so a URL read from a month-old task still
//! works for a week). A server without API keys has no private files (the
//! whole API is open on loopback): it signs nothing and checks nothing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The query parameter a download signature travels in.
pub const SIG_PARAM: &str = "sig";

/// Why a download signature was refused (403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    #[error("malformed file signature: expected ?sig=<expiry>.<hex>")]
    Malformed,
    #[error("invalid file signature: it was not made for this file by this server")]
    BadSignature,
    #[error(
        "this file URL expired at {0} (unix seconds): read the task or file again for a fresh one"
    )]
    Expired(u64),
}

/// Signs and verifies download URLs of this server's files.
#[derive(Clone)]
pub struct FileUrls {
    key: Vec<u8>,
    ttl: Duration,
    /// `{public_url}/files/`: the prefix of the URLs this server signs.
    prefix: String,
    /// False without API keys: nothing is private, nothing is signed.
    private: bool,
}

impl std::fmt::Debug for FileUrls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileUrls")
            .field("ttl", &self.ttl)
            .field("prefix", &self.prefix)
            .field("private", &self.private)
            .finish_non_exhaustive()
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

fn mac(key: &[u8], id: &str, expires: u64) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"infsh-file\0");
    mac.update(id.as_bytes());
    mac.update(b"\0");
    mac.update(expires.to_string().as_bytes());
    mac
}

/// The signature for file `id` under `key` until `expires` (unix seconds).
/// Public (hidden) so that tests forge signatures (expired, other keys).
#[doc(hidden)]
pub fn file_signature(key: &[u8], id: &str, expires: u64) -> String {
    let sig = mac(key, id, expires).finalize().into_bytes();
    format!("{expires}.{}", hex::encode(sig))
}

impl FileUrls {
    /// `key` must be the effective signing key (never empty); `public_url`
    /// is the engine's.
    pub fn new(key: &[u8], ttl: Duration, public_url: &str, private: bool) -> FileUrls {
        FileUrls {
            key: key.to_vec(),
            ttl,
            prefix: format!("{}/files/", public_url.trim_end_matches('/')),
            private,
        }
    }

    /// Whether files need a key or a signature (API keys are configured).
    pub fn private(&self) -> bool {
        self.private
    }

    /// `{public_url}/files/`: every URL this server signs starts with it.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A signature for `id` valid until `now + ttl`.
    pub fn sign(&self, id: &str, now: SystemTime) -> String {
        let expires = unix_secs(now).saturating_add(self.ttl.as_secs().max(1));
        file_signature(&self.key, id, expires)
    }

    /// Checks `sig` for file `id`: the HMAC first (constant time), so a
    /// forged signature never learns whether its expiry would do.
    pub fn verify(&self, id: &str, sig: &str, now: SystemTime) -> Result<(), SigError> {
        let (exp, hex_sig) = sig.split_once('.').ok_or(SigError::Malformed)?;
        if exp.is_empty() || exp.len() > 20 || !exp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SigError::Malformed);
        }
        let expires: u64 = exp.parse().map_err(|_| SigError::Malformed)?;
        let bytes = hex::decode(hex_sig).map_err(|_| SigError::Malformed)?;
        mac(&self.key, id, expires)
            .verify_slice(&bytes)
            .map_err(|_| SigError::BadSignature)?;
        if unix_secs(now) > expires {
            return Err(SigError::Expired(expires));
        }
        Ok(())
    }

    /// The file id of one of this server's file URLs
    /// (`{public_url}/files/{id}[/{name}][?…]`).
    pub fn file_id_of<'a>(&self, uri: &'a str) -> Option<&'a str> {
        let rest = uri.strip_prefix(&self.prefix)?;
        let id = rest.get(..infsh_store::ID_LEN)?;
        let ends = rest[infsh_store::ID_LEN..]
            .chars()
            .next()
            .is_none_or(|c| matches!(c, '/' | '?' | '#'));
        (ends && infsh_store::is_valid_id(id)).then_some(id)
    }

    /// `uri` with a fresh signature when it is one of this server's file
    /// URLs and files are private; any query it had is replaced (this
    /// server's file URLs carry no other).
    pub fn signed(&self, uri: &str, now: SystemTime) -> String {
        if !self.private {
            return uri.to_string();
        }
        let Some(id) = self.file_id_of(uri) else {
            return uri.to_string();
        };
        let path = uri.split(['?', '#']).next().unwrap_or(uri);
        format!("{path}?{SIG_PARAM}={}", self.sign(id, now))
    }

    /// Signs every one of this server's file URLs in `v` (a task's output:
    /// a plain string or a `{"uri": …}` object, at any depth).
    pub fn sign_all(&self, v: &mut Value, now: SystemTime) {
        self.sign_where(v, now, &|_| true);
    }

    /// [`FileUrls::sign_all`] for the files whose id `keep` accepts; the
    /// others' URLs are left as they are.
    pub fn sign_where(&self, v: &mut Value, now: SystemTime, keep: &dyn Fn(&str) -> bool) {
        if !self.private {
            return;
        }
        match v {
            Value::String(s) if self.file_id_of(s).is_some_and(keep) => {
                *s = self.signed(s, now);
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.sign_where(i, now, keep)),
            Value::Object(map) => map.values_mut().for_each(|i| self.sign_where(i, now, keep)),
            _ => {}
        }
    }

    /// The ids of this server's files that `v` names, at any depth.
    pub fn file_ids(&self, v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => {
                if let Some(id) = self.file_id_of(s) {
                    if !out.iter().any(|o| o == id) {
                        out.push(id.to_string());
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| self.file_ids(i, out)),
            Value::Object(map) => map.values().for_each(|i| self.file_ids(i, out)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    fn urls() -> FileUrls {
        FileUrls::new(b"secret", Duration::from_secs(60), "http://h:1/", true)
    }

    #[test]
    fn round_trip_and_expiry() {
        let u = urls();
        let now = SystemTime::now();
        let sig = u.sign(ID, now);
        assert_eq!(u.verify(ID, &sig, now), Ok(()));
        assert_eq!(u.verify(ID, &sig, now + Duration::from_secs(60)), Ok(()));
        let exp = unix_secs(now) + 60;
        assert_eq!(
            u.verify(ID, &sig, now + Duration::from_secs(62)),
            Err(SigError::Expired(exp))
        );
    }

    #[test]
    fn forged_signatures_are_refused() {
        let u = urls();
        let now = SystemTime::now();
        let sig = u.sign(ID, now);
        let other_id = "ffffffffffffffffffffffffffffffff";
        assert_eq!(u.verify(other_id, &sig, now), Err(SigError::BadSignature));
        let (exp, hex_sig) = sig.split_once('.').unwrap();
        let stretched = format!("{}.{hex_sig}", exp.parse::<u64>().unwrap() + 3600);
        assert_eq!(u.verify(ID, &stretched, now), Err(SigError::BadSignature));
        let other_key = FileUrls::new(b"other", Duration::from_secs(60), "http://h:1", true);
        assert_eq!(other_key.verify(ID, &sig, now), Err(SigError::BadSignature));
        // An upload token for the same id and expiry is not a signature.
        let token = crate::tokens::upload_token(b"secret", ID, exp.parse().unwrap());
        assert_eq!(u.verify(ID, &token, now), Err(SigError::BadSignature));
        for junk in ["", "abc", "1.zz", "-1.00", ".00"] {
            assert_eq!(u.verify(ID, junk, now), Err(SigError::Malformed), "{junk}");
        }
    }

    #[test]
    fn signs_only_this_servers_file_urls() {
        let u = urls();
        let now = SystemTime::now();
        let sig = u.sign(ID, now);
        let mut v = json!({
            "image": {"uri": format!("http://h:1/files/{ID}/a.png"), "filename": "a.png"},
            "list": [format!("http://h:1/files/{ID}?sig=1.00"), "http://other/files/x"],
            "elsewhere": format!("https://example.com/files/{ID}"),
            "text": "no url here",
            "n": 3,
        });
        u.sign_all(&mut v, now);
        assert_eq!(
            v["image"]["uri"],
            format!("http://h:1/files/{ID}/a.png?sig={sig}")
        );
        assert_eq!(v["list"][0], format!("http://h:1/files/{ID}?sig={sig}"));
        assert_eq!(v["list"][1], "http://other/files/x");
        assert_eq!(v["elsewhere"], format!("https://example.com/files/{ID}"));
        assert_eq!(v["text"], "no url here");
        // Too long an id is not a file URL.
        assert_eq!(u.file_id_of(&format!("http://h:1/files/{ID}0")), None);
    }

    #[test]
    fn open_servers_sign_nothing() {
        let u = FileUrls::new(b"secret", Duration::from_secs(60), "http://h:1", false);
        let uri = format!("http://h:1/files/{ID}/a.png");
        assert_eq!(u.signed(&uri, SystemTime::now()), uri);
    }
}
