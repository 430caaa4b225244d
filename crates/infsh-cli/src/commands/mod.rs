//! One module per `infsh app` command; `main` dispatches here.

pub mod init;
pub mod inspect;
pub mod run;
pub mod test;
