//! Control of a live run from anywhere: the hub that fans a trainer's events out, the Unix-socket
//! server and its client, the JSON-lines framing they share, and the `schedule-edits.toml` watch.
//! It speaks `protocol` and knows the run directory's file names; it never touches a tensor.

pub mod client;
pub mod hub;
pub mod lines;
pub mod schedule_file;
pub mod server;
