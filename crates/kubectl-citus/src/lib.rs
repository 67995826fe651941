//! `kubectl citus`: day-2 operations for Citus on Kubernetes (or any coordinator reachable with --dsn).
//!
//! Layout: `cli` (arguments) -> `connect` (cluster or direct target) -> gathering in `sql` and `k8s` ->
//! decisions in `doctor` and `commands` -> `render` (table, JSON, YAML). Only `render` output and `follow`'s
//! progress reach the terminal.

pub mod cli;
pub mod commands;
pub mod connect;
pub mod doctor;
pub mod error;
pub mod follow;
pub mod k8s;
pub mod model;
pub mod render;
pub mod report;
pub mod sql;

pub use commands::{run, Exit};
pub use error::{Error, Result};

/// Write a command's result; a closed pipe (`| head`) is not an error.
pub fn write_stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}
