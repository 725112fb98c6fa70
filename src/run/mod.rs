//! The run: its directory (the single source of truth), its logs, the protocol its clients speak,
//! and the control socket that lets any terminal watch and steer it.
pub mod client;
pub mod ctl;
pub mod detach;
pub mod dir;
pub mod follow;
pub mod history;
pub mod hub;
pub mod index;
pub mod lines;
pub mod lock;
pub mod runs;
pub mod schedule_file;
pub mod serve;
pub mod server;
