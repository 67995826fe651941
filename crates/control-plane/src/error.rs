use std::path::PathBuf;

/// What can go wrong starting or using the control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("making the certificates: {0}")]
    Pki(#[from] rcgen::Error),
    #[error("no free TCP port on 127.0.0.1: {0}")]
    Port(std::io::Error),
    #[error("{component} exited while starting ({status}); last lines of {}:\n{tail}", log.display())]
    Exited { component: &'static str, status: std::process::ExitStatus, log: PathBuf, tail: String },
    #[error("{component} was not ready within {seconds} s; last lines of {}:\n{tail}", log.display())]
    NotReady { component: &'static str, seconds: u64, log: PathBuf, tail: String },
    #[error("kubectl {args}: {stderr}")]
    Kubectl { args: String, stderr: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
