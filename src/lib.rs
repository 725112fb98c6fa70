//! dino-tui: DINO self-supervised training on libtorch, watched and steered from a terminal.
pub mod attach;
pub mod cli;
pub mod config;
pub mod data;
pub mod dist;
pub mod eval;
pub mod headless;
pub mod interop;
pub mod interactive;
pub mod logging;
pub mod model;
pub mod run;
pub mod say;
pub mod telemetry;
pub mod train;
pub mod tui;
