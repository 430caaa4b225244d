//! [`EngineStartError`]: why `Engine::start` failed, one variant per step,
//! each keeping its cause. The messages are what `infsh serve` prints after
//! "cannot start the server: ".

use std::path::PathBuf;

use infsh_store::StoreError;

use crate::registry::ScanError;
use crate::webhook::WebhookClientError;

/// Why the engine could not start (bad data dir, unreadable database...).
#[derive(Debug, thiserror::Error)]
pub enum EngineStartError {
    /// The data folder could not be created.
    #[error("cannot create {}: {source}", path.display())]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The task database could not be opened (or migrated).
    #[error("cannot open {}: {source}", path.display())]
    OpenStore {
        path: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("cannot open the file store: {0}")]
    OpenFileStore(#[source] StoreError),
    #[error(transparent)]
    WebhookClient(#[from] WebhookClientError),
    /// The scan of the apps folder, run on a blocking thread, panicked.
    #[error("scanning apps: {0}")]
    ScanTask(#[source] tokio::task::JoinError),
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// The workers' state folder (`<data_dir>/state`) could not be created.
    #[error("cannot create {}: {source}", path.display())]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The last run's tasks could not be read or updated.
    #[error("recovering tasks: {0}")]
    Recovery(#[source] StoreError),
    /// The deployed versions could not be hosted again.
    #[error("hosting deployed versions: {0}")]
    Versions(String),
    /// The engine config's `workers` name GPUs this machine does not have.
    #[error("engine config: {0}")]
    Layout(#[source] infsh_placement::LayoutError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use infsh_core::ErrorChain;
    use std::error::Error;

    #[test]
    fn a_step_keeps_its_cause_and_reads_as_before() {
        let e = EngineStartError::DataDir {
            path: PathBuf::from("/data"),
            source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, "permission denied"),
        };
        let io = e.source().and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(
            io.map(std::io::Error::kind),
            Some(std::io::ErrorKind::PermissionDenied)
        );
        assert_eq!(e.to_string(), "cannot create /data: permission denied");
        assert_eq!(ErrorChain(&e).to_string(), e.to_string());
    }

    #[test]
    fn a_missing_apps_folder_is_a_scan_error() {
        let e = EngineStartError::from(ScanError::AppsDirNotFound {
            path: PathBuf::from("/nowhere"),
        });
        assert!(matches!(
            e,
            EngineStartError::Scan(ScanError::AppsDirNotFound { .. })
        ));
        assert_eq!(e.to_string(), "apps folder not found: /nowhere");
    }

    #[test]
    fn a_layout_error_keeps_its_cause_and_names_the_config() {
        let e = EngineStartError::Layout(infsh_placement::LayoutError {
            key: "workers.gpu[0].gpus".into(),
            index: 7,
            present: vec![0, 1],
        });
        let cause = e
            .source()
            .and_then(|s| s.downcast_ref::<infsh_placement::LayoutError>());
        assert_eq!(cause.map(|c| c.index), Some(7));
        assert_eq!(
            e.to_string(),
            "engine config: workers.gpu[0].gpus: GPU 7 is not on this machine (it has GPUs 0, 1)"
        );
    }
}
