//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): every
//! delivery carries `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`,
//! keyed with the bytes of a secret written `whsec_<base64>`. Receivers
//! verify with any Standard Webhooks library (docs/security.md).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The fewest secret bytes accepted (the specification's minimum).
pub const MIN_SECRET_BYTES: usize = 24;
/// The bytes of a secret infsh generates.
pub const GENERATED_SECRET_BYTES: usize = 32;
/// How a secret is written.
pub const SECRET_PREFIX: &str = "whsec_";

/// The key webhooks are signed with. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookSecret({} bytes)", self.0.len())
    }
}

/// Why a secret was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the webhook secret is not base64 after \"whsec_\" (write it as whsec_ followed by the base64 of at least {MIN_SECRET_BYTES} random bytes)")]
    NotBase64,
    #[error("the webhook secret is {0} bytes; at least {MIN_SECRET_BYTES} are needed (whsec_ followed by the base64 of at least {MIN_SECRET_BYTES} random bytes)")]
    TooShort(usize),
}

impl WebhookSecret {
    /// Parses `whsec_<base64>` (the prefix may be left out, as the
    /// reference libraries allow).
    pub fn parse(text: &str) -> Result<WebhookSecret, SecretError> {
        let text = text.trim();
        let b64 = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
        let bytes = STANDARD.decode(b64).map_err(|_| SecretError::NotBase64)?;
        WebhookSecret::from_bytes(bytes)
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Result<WebhookSecret, SecretError> {
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort(bytes.len()));
        }
        Ok(WebhookSecret(bytes))
    }

    /// `whsec_<base64>`, as receivers are given it.
    pub fn encode(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// The `webhook-signature` header of `body` sent as message `id` at
    /// `timestamp` (Unix seconds).
    pub fn sign(&self, id: &str, timestamp: i64, body: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's own example (its README and
    /// every reference library's tests).
    #[test]
    fn signs_the_specification_example() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn short_or_malformed_secrets_are_refused() {
        assert_eq!(
            WebhookSecret::parse("whsec_c2hvcnQ="),
            Err(SecretError::TooShort(5))
        );
        assert_eq!(
            WebhookSecret::parse("whsec_not base64!"),
            Err(SecretError::NotBase64)
        );
        assert_eq!(
            SecretError::TooShort(5).to_string(),
            "the webhook secret is 5 bytes; at least 24 are needed (whsec_ followed by the base64 of at least 24 random bytes)"
        );
        let ok = WebhookSecret::from_bytes(vec![7; 24]).unwrap();
        assert_eq!(WebhookSecret::parse(&ok.encode()).unwrap(), ok);
        assert_eq!(format!("{ok:?}"), "WebhookSecret(24 bytes)");
    }
}
