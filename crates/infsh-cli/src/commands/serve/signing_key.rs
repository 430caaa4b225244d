//! The key that signs upload URLs and file URLs (issue 15), kept in the
//! data folder so URLs handed out before a restart stay valid after it, or
//! given as `--signing-secret` (the same on every API node of a fleet).

use std::io::Write;
use std::path::Path;

use crate::exit::{ExitCode, Failure};

/// Name of the upload-URL signing key in the data dir.
pub const SIGNING_KEY_FILE: &str = "signing.key";
const SIGNING_KEY_BYTES: usize = 32;

/// Fewest bytes `--signing-secret` takes (as webhook secrets).
pub const MIN_SIGNING_SECRET_BYTES: usize = 24;

/// `--signing-secret`'s value as the key, or the usage error for one too
/// short to resist guessing.
pub fn from_flag(secret: &str) -> Result<Vec<u8>, Failure> {
    let secret = secret.trim();
    if secret.len() < MIN_SIGNING_SECRET_BYTES {
        return Err(Failure::new(
            ExitCode::Usage,
            format!(
                "--signing-secret: {} bytes is too short: give at least {MIN_SIGNING_SECRET_BYTES} \
                 (e.g. `openssl rand -hex 32`)",
                secret.len()
            ),
        ));
    }
    Ok(secret.as_bytes().to_vec())
}

/// The key that signs upload URLs: read from `path`, or created there
/// (random, mode 0600) on first start, so URLs survive restarts.
pub fn load_or_create_signing_key(path: &Path) -> Result<Vec<u8>, Failure> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        Failure::new(
            ExitCode::Internal,
            format!("{what} the signing key {}: {e}", path.display()),
        )
    };
    let mut key = vec![0u8; SIGNING_KEY_BYTES];
    getrandom::fill(&mut key).map_err(|e| fail("cannot generate", &e))?;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            file.write_all(&key)
                .and_then(|()| file.sync_all())
                .map_err(|e| fail("cannot write", &e))?;
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let existing = std::fs::read(path).map_err(|e| fail("cannot read", &e))?;
            if existing.len() < 16 {
                return Err(fail(
                    "unusable",
                    &format!(
                        "{} bytes (at least 16 needed); delete it to make a new one",
                        existing.len()
                    ),
                ));
            }
            if let Ok(meta) = std::fs::metadata(path) {
                if meta.permissions().mode() & 0o077 != 0 {
                    eprintln!(
                        "warning: {} is readable by other users; chmod 600 it",
                        path.display()
                    );
                }
            }
            Ok(existing)
        }
        Err(e) => Err(fail("cannot create", &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signing_secret_flag_needs_24_bytes() {
        let e = from_flag("short").unwrap_err();
        assert_eq!(e.code, ExitCode::Usage);
        assert!(
            e.message
                .starts_with("--signing-secret: 5 bytes is too short: give at least 24"),
            "{}",
            e.message
        );
        let key = from_flag(" 0123456789abcdef01234567 ").unwrap();
        assert_eq!(key, b"0123456789abcdef01234567".to_vec());
    }

    #[test]
    fn the_signing_key_is_created_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SIGNING_KEY_FILE);
        let first = load_or_create_signing_key(&path).unwrap();
        assert_eq!(first.len(), SIGNING_KEY_BYTES);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create_signing_key(&path).unwrap(), first);
        std::fs::write(&path, b"short").unwrap();
        assert!(load_or_create_signing_key(&path).is_err());
    }
}
