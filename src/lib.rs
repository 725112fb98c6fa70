pub mod cli;
pub mod config;
pub mod model;
pub mod run;
pub mod train;
