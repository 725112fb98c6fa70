pub mod cli;
pub mod config;
pub mod logging;
pub mod model;
pub mod run;
pub mod telemetry;
pub mod train;
pub mod tui;
