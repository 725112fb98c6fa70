//! Every front-end: the command line (clap arguments), training headless, in the TUI, detached or
//! served, `dino attach`, `dino ctl`, the evaluation, outlier, search and duplicates commands that print their
//! results, `dino runs`, the demo. The library layers below return values and print nothing; only
//! this layer talks to people on stdout and stderr.

pub mod attach;
pub mod attention;
pub mod build_info;
pub mod cli;
pub mod compare;
pub mod completions;
pub mod ctl;
pub mod demo;
pub mod detach;
pub mod dispatch;
pub mod duplicates;
pub mod embed;
pub mod eval;
pub mod eval_args;
pub mod eval_label_efficiency;
pub mod eval_linear;
pub mod eval_setup;
pub mod evaluator;
pub mod export;
pub mod flags;
pub mod foreground;
pub mod headless;
pub mod image_source;
pub mod interactive;
pub mod launch;
pub mod logging;
pub mod offline_eval;
pub mod progress;
pub mod recipe;
pub mod search;
pub mod serve;
pub mod train_from;
