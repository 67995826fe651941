use std::path::PathBuf;

/// Everything that can go wrong while asking Helm for something.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Neither the library nor a helm binary is available.
    #[error("Helm not found: no libhelm_c at {} (or $CITUS_HELM_LIB) and no `helm` on PATH; run `cargo xtask setup --only helm`", searched.display())]
    NotFound { searched: PathBuf },
    /// The shared library exists but cannot be loaded or lacks a symbol.
    #[error("cannot load libhelm_c from {}: {source}", path.display())]
    Library {
        path: PathBuf,
        #[source]
        source: libloading::Error,
    },
    /// The chart directory is not a loadable chart.
    #[error("cannot load chart {}: {message}", path.display())]
    ChartLoad { path: PathBuf, message: String },
    /// The values do not fit the chart's values.schema.json (Helm status -22).
    #[error("values rejected by the chart's schema: {message}")]
    Values { message: String },
    /// A template failed: `fail`, `required`, or a template error (Helm status -23).
    #[error("rendering failed: {message}")]
    Render { message: String },
    /// Any other non-zero status of a libhelm_c call.
    #[error("{call} failed with status {status}: {message}")]
    Call { call: &'static str, status: i32, message: String },
    /// The helm binary exited with an error.
    #[error("`{command}` failed ({status}): {stderr}")]
    Cli { command: String, status: String, stderr: String },
    /// The backend in use cannot do this (the helm binary backend only renders and lints).
    #[error("{what} need the libhelm_c backend; this Helm is the {backend}")]
    Unsupported { what: &'static str, backend: String },
    /// Helm's output could not be understood.
    #[error("cannot parse {what}: {message}")]
    Parse { what: String, message: String },
    #[error("I/O error while {action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
}

/// The name the other crates of this workspace use.
pub type HelmError = Error;
