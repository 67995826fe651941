//! Every error names what failed and what to do about it; the cause stays attached as the source.

use std::fmt::Write as _;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Arguments that cannot work together (found before any IO).
    #[error("{problem}\n  what to do: {fix}")]
    Usage { problem: String, fix: String },

    /// A Kubernetes API call failed.
    #[error("{action} failed: {cause}\n  what to do: {fix}")]
    Kube {
        action: String,
        cause: String,
        fix: String,
        #[source]
        source: Box<kube::Error>,
    },

    /// Kubernetes answered, but not with what the release should have.
    #[error("{problem}\n  what to do: {fix}")]
    Release { problem: String, fix: String },

    /// Connecting to PostgreSQL failed.
    #[error("connecting to {target} failed: {cause}\n  what to do: {fix}")]
    Connect {
        target: String,
        cause: String,
        fix: String,
        #[source]
        source: tokio_postgres::Error,
    },

    /// A SQL statement failed.
    #[error("{action} failed: {cause}\n  what to do: {fix}")]
    Sql {
        action: String,
        cause: String,
        fix: String,
        #[source]
        source: tokio_postgres::Error,
    },

    /// The operation would lose data or cannot succeed; nothing was changed.
    #[error("refusing to {action}: {reason}\n  what to do: {fix}")]
    Refused { action: String, reason: String, fix: String },

    /// A local file or process failed.
    #[error("{action} failed: {source}\n  what to do: {fix}")]
    Io {
        action: String,
        fix: String,
        #[source]
        source: std::io::Error,
    },

    /// A background job ended badly.
    #[error("{what}\n  what to do: {fix}")]
    Job { what: String, fix: String },

    #[error("writing the report archive failed: {source}\n  what to do: check free space and that --file is writable")]
    Zip {
        #[source]
        source: zip::result::ZipError,
    },

    #[error("encoding the output failed: {0}")]
    Encode(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn usage(problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Error::Usage { problem: problem.into(), fix: fix.into() }
    }

    pub fn refused(action: impl Into<String>, reason: impl Into<String>, fix: impl Into<String>) -> Self {
        Error::Refused { action: action.into(), reason: reason.into(), fix: fix.into() }
    }

    pub fn kube(action: impl Into<String>, fix: impl Into<String>, source: kube::Error) -> Self {
        let cause = kube_cause(&source);
        Error::Kube { action: action.into(), cause, fix: fix.into(), source: Box::new(source) }
    }

    pub fn sql(action: impl Into<String>, fix: impl Into<String>, source: tokio_postgres::Error) -> Self {
        Error::Sql { action: action.into(), cause: pg_cause(&source), fix: fix.into(), source }
    }

    pub fn io(action: impl Into<String>, fix: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { action: action.into(), fix: fix.into(), source }
    }
}

/// The server's message with detail and hint, or the client error and its causes: tokio-postgres prints only
/// "db error" for a server error.
pub fn pg_cause(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{}: {}", db.severity(), db.message());
        if let Some(d) = db.detail() {
            let _ = write!(s, " (detail: {d})");
        }
        if let Some(h) = db.hint() {
            let _ = write!(s, " (hint: {h})");
        }
        return s;
    }
    chain(e)
}

fn kube_cause(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.reason),
        other => chain(other),
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            let _ = write!(s, ": {text}");
        }
        cur = c.source();
    }
    s
}

/// HTTP status of a Kubernetes API error, if it was one.
pub fn kube_status(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}
