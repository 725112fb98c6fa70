pub mod cli;
pub mod config;
pub mod data;
pub mod headless;
pub mod model;
pub mod run;
pub mod train;
