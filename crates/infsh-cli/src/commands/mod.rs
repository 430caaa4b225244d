//! One module per command; `main` dispatches here.

pub mod deploy;
pub mod dev;
pub mod engine;
pub mod engine_list;
pub mod engine_run;
pub mod gc;
pub mod init;
pub mod inspect;
pub mod keys;
pub mod run;
pub mod serve;
pub mod session;
pub mod task;
pub mod test;
