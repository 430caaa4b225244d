//! Handlers, one file per resource. Each handler parses its request into
//! engine types, calls the engine, and renders DTOs (dto.rs); failures go
//! through problem.rs. Every handler carries a `#[utoipa::path]`.

pub mod apps;
pub mod files;
pub mod ops;
pub mod runs;
pub mod stream;
pub mod tasks;
