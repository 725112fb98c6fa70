//! The run: its directory (the single source of truth), its logs, the protocol its clients speak,
//! and the control socket that lets any terminal watch and steer it.
pub mod checkpoint;
pub mod compare;
pub mod dir;
pub mod export;
pub mod follow;
pub mod history;
pub mod index;
pub mod lock;
pub mod metrics_index;
pub mod pytorch;
pub mod runs;
pub mod tensorboard;
