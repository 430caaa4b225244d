//! What the workspace's tests share, so that each crate's `tests/common`
//! keeps only what is its own (an engine fixture, a served sandbox, a
//! worker's test app):
//!
//! - [`python`]: the interpreter real workers run under in tests;
//! - [`paths`]: the repository, its fixture apps and examples, [`copy_dir`];
//! - [`poll`]: bounded waits, sync ([`wait_for`]) and async ([`eventually`],
//!   [`poll()`], [`until`], [`within`]), so a test polls instead of sleeping
//!   and a broken run fails instead of hanging;
//! - [`process`]: whether a process is gone, and which processes still run
//!   in a folder (workers run in their app's folder), so every test can
//!   check that nothing outlived it;
//! - [`postgres`]: [`PgTestDb`], a database of its own per test, dropped
//!   after it;
//! - [`fuzz`]: the deterministic generator of the fuzz targets' stable tests.
//!
//! A dev-dependency only (`publish = false`), and free of workspace crates,
//! so that any crate's tests, unit tests included, can use it without a
//! dependency cycle. The upload-token helper lives in
//! `crates/infsh-server/tests/common` for that reason: it calls the server's
//! own signer.

pub mod fuzz;
pub mod paths;
pub mod poll;
pub mod postgres;
pub mod process;
mod python;

pub use paths::{add_env, copy_dir, copy_fixture_as, copy_fixtures, example, fixture, repo_root};
pub use poll::{eventually, poll, until, wait_for, within};
pub use postgres::PgTestDb;
pub use process::{alive, group_gone, pid_gone, process_gone, processes_in, wait_dead};
pub use python::python;
