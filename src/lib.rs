//! dino-tui: DINO self-supervised training on libtorch, watched and steered from a terminal.
pub mod allocator;
pub mod cmd;
pub mod config;
pub mod control;
pub mod data;
pub mod dist;
pub mod eval;
pub mod files;
pub mod human;
pub mod interop;
pub mod model;
pub mod protocol;
pub mod run;
pub mod say;
pub mod telemetry;
pub mod train;
pub mod tui;
