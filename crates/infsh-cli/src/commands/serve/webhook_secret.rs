//! The secret webhooks are signed with when `--webhook-secret` is not
//! given: `whsec_<base64>` in the data folder, created on first start
//! (random, mode 0600), so receivers keep verifying across restarts. Give
//! API nodes that share a store the same `--webhook-secret` instead.

use std::io::Write;
use std::path::Path;

use infsh_engine::{WebhookSecret, GENERATED_SECRET_BYTES};

use crate::exit::{ExitCode, Failure};

/// Name of the webhook secret's file in the data dir.
pub const WEBHOOK_SECRET_FILE: &str = "webhook.secret";

/// `--webhook-secret`'s value, or a usage error naming the flag (a secret
/// under 24 bytes, or not `whsec_` + base64).
pub fn parse_flag(value: &str) -> Result<WebhookSecret, Failure> {
    WebhookSecret::parse(value)
        .map_err(|e| Failure::new(ExitCode::Usage, format!("--webhook-secret: {e}")))
}

/// Reads the secret at `path`, or creates it there.
pub fn load_or_create_webhook_secret(path: &Path) -> Result<WebhookSecret, Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |code: ExitCode, what: &str, e: &dyn std::fmt::Display| {
        Failure::new(
            code,
            format!("{what} the webhook secret {}: {e}", path.display()),
        )
    };
    let mut bytes = vec![0u8; GENERATED_SECRET_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| fail(ExitCode::Internal, "cannot generate", &e))?;
    let secret = WebhookSecret::from_bytes(bytes).expect("32 bytes are enough");
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            file.write_all(format!("{}\n", secret.encode()).as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| fail(ExitCode::Internal, "cannot write", &e))?;
            tracing::info!(path = %path.display(), "generated the webhook signing secret");
            Ok(secret)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| fail(ExitCode::Internal, "cannot read", &e))?;
            WebhookSecret::parse(&text).map_err(|e| {
                fail(
                    ExitCode::Usage,
                    "unusable",
                    &format!("{e}; fix it or delete it to make a new one"),
                )
            })
        }
        Err(e) => Err(fail(ExitCode::Internal, "cannot create", &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_created_once_with_mode_0600_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(WEBHOOK_SECRET_FILE);
        let first = load_or_create_webhook_secret(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("whsec_"), "{text}");
        assert_eq!(text.trim(), first.encode());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create_webhook_secret(&path).unwrap(), first);
        std::fs::write(&path, "whsec_c2hvcnQ=\n").unwrap();
        let e = load_or_create_webhook_secret(&path).unwrap_err();
        assert_eq!(e.code, ExitCode::Usage);
        assert_eq!(
            e.message,
            format!(
                "unusable the webhook secret {}: the webhook secret is 5 bytes; at least 24 are needed (whsec_ followed by the base64 of at least 24 random bytes); fix it or delete it to make a new one",
                path.display()
            )
        );
    }

    #[test]
    fn a_short_flag_is_a_usage_error() {
        let e = parse_flag("whsec_c2hvcnQ=").unwrap_err();
        assert_eq!(e.code, ExitCode::Usage);
        assert_eq!(
            e.message,
            "--webhook-secret: the webhook secret is 5 bytes; at least 24 are needed (whsec_ followed by the base64 of at least 24 random bytes)"
        );
    }
}
