//! The OpenAPI 3.1 document, in two layers:
//! - the FIXED document (document.rs): utoipa's output for the handlers'
//!   `#[utoipa::path]` attributes (whose error sets are responses.rs) and the
//!   DTOs, committed as docs/openapi.json;
//! - at `GET /openapi.json` (routes/ops.rs), every hosted app's functions
//!   merged in (functions.rs): their schemas as components and one concrete
//!   run path per function.
//!
//! Nothing here depends on the handlers: routes name responses.rs, and the
//! routes' operations are handed to document.rs.

pub mod document;
pub mod functions;
pub mod responses;
