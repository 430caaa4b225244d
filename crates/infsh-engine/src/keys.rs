//! API keys created at run time, through the engine (the HTTP layer never
//! touches the store): create one (the key is returned once, its SHA-256
//! digest stored), find one by digest, list, revoke. Every API node that
//! shares the store sees the same keys. Scopes and teams are the HTTP
//! layer's business; here they are strings.

use infsh_store::{new_id, now_ms, ApiKeyRecord};

use crate::{Engine, EngineError};

/// What a key is made with.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub name: String,
    pub scopes: Vec<String>,
    pub team: String,
    pub expires_at_ms: Option<i64>,
}

/// A key just created: its record, and the key itself (shown once).
#[derive(Debug, Clone)]
pub struct CreatedApiKey {
    pub record: ApiKeyRecord,
    pub key: String,
}

/// What every created key starts with, so it is recognisable in a leak scan.
pub const KEY_PREFIX: &str = "infsh_";

/// Hex SHA-256: how a key is looked up.
pub fn key_digest(key: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Engine {
    pub async fn create_api_key(&self, new: NewApiKey) -> Result<CreatedApiKey, EngineError> {
        // 256 random bits (two 128-bit ids).
        let key = format!("{KEY_PREFIX}{}{}", new_id(), new_id());
        let record = ApiKeyRecord {
            id: new_id(),
            name: new.name,
            key_hash: key_digest(&key),
            scopes: new.scopes,
            team: new.team,
            created_at_ms: now_ms(),
            expires_at_ms: new.expires_at_ms,
            revoked_at_ms: None,
        };
        self.shared().store.insert_api_key(&record).await?;
        Ok(CreatedApiKey { record, key })
    }

    /// The stored key whose digest is `digest` (revoked and expired ones too).
    pub async fn api_key_by_digest(
        &self,
        digest: &str,
    ) -> Result<Option<ApiKeyRecord>, EngineError> {
        Ok(self.shared().store.api_key_by_hash(digest).await?)
    }

    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, EngineError> {
        Ok(self.shared().store.list_api_keys().await?)
    }

    /// Revokes key `id`; [`EngineError::UnknownApiKey`] for an unknown one.
    pub async fn revoke_api_key(&self, id: &str) -> Result<ApiKeyRecord, EngineError> {
        self.shared()
            .store
            .revoke_api_key(id, now_ms())
            .await
            .map_err(|e| match e {
                e if e.is_not_found() => EngineError::UnknownApiKey(id.to_string()),
                e => EngineError::Store(e),
            })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn digest_is_hex_sha256() {
        assert_eq!(
            super::key_digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
