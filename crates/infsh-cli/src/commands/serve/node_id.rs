//! The API node's id (`<data-dir>/node-id`): made once, kept across
//! restarts. On a PostgreSQL store shared by several API nodes it marks the
//! tasks of this node's own workers, so its start-up recovery touches only
//! those (docs/deploy.md, "Several API nodes on one PostgreSQL database").

use std::path::Path;

use infsh_store::new_id;

use crate::exit::{ExitCode, Failure};

pub const NODE_ID_FILE: &str = "node-id";

/// The id in `path`, or a new one written there.
pub fn load_or_create_node_id(path: &Path) -> Result<String, Failure> {
    let failure = |what: &str, e: std::io::Error| {
        Failure::new(
            ExitCode::Internal,
            format!("cannot {what} the node id {}: {e}", path.display()),
        )
    };
    match std::fs::read_to_string(path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        Ok(_) => write_new(path).map_err(|e| failure("write", e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_new(path).map_err(|e| failure("write", e))
        }
        Err(e) => Err(failure("read", e)),
    }
}

fn write_new(path: &Path) -> std::io::Result<String> {
    let id = new_id();
    std::fs::write(path, format!("{id}\n"))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(NODE_ID_FILE);
        let first = load_or_create_node_id(&path).unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(load_or_create_node_id(&path).unwrap(), first);
        std::fs::write(&path, "  \n").unwrap();
        let remade = load_or_create_node_id(&path).unwrap();
        assert_ne!(remade, first, "an empty file gets a new id");
        let not_a_file = dir.path().to_path_buf();
        let e = load_or_create_node_id(&not_a_file).unwrap_err();
        assert_eq!(e.code, ExitCode::Internal);
        assert!(
            e.message.starts_with(&format!(
                "cannot read the node id {}: ",
                not_a_file.display()
            )),
            "{}",
            e.message
        );
    }
}
