//! The one error type of the crate. Every variant names what failed (pod, command, path) and, where a
//! process was involved, carries the tail of its log so that a failing test explains itself.

use std::time::Duration;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A rendered object is malformed or refers to something that does not exist.
    #[error("invalid manifest: {0}")]
    Manifest(String),
    /// The manifest asks for something this harness does not emulate.
    #[error("not supported by the local cluster: {0}")]
    Unsupported(String),
    /// A file system operation of the harness failed.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A system call of the harness failed.
    #[error("{context}")]
    Sys {
        context: String,
        #[source]
        source: nix::Error,
    },
    /// An external command (iproute2, pg_config) failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command { command: String, status: String, stderr: String },
    /// A condition was not reached in time.
    #[error("timed out after {waited:?} waiting for {what}{log_tail}")]
    Timeout { what: String, waited: Duration, log_tail: String },
    /// A pod's container ended while something still needed it.
    #[error("pod {pod} exited ({status}) {during}{log_tail}")]
    PodExited { pod: String, status: String, during: String, log_tail: String },
    /// A call to the Kubernetes API server failed (node agent).
    #[error("API server: {what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// What went wrong in one pass of the node agent, one line per pod or namespace.
    #[error("{0}")]
    Agent(String),
}

/// Adds context to io and nix results.
pub(crate) trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io { context: what(), source })
    }
}

impl<T> Context<T> for nix::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Sys { context: what(), source })
    }
}
