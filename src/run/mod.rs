//! The run: its directory (the single source of truth), its logs and the protocol its clients speak.
pub mod dir;
pub mod protocol;
