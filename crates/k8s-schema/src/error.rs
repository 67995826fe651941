use std::fmt;
use std::path::PathBuf;

/// The schemas themselves cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("no Kubernetes schemas for {version} in {}: run `cargo xtask setup --only schemas` (or set CITUS_K8S_SCHEMAS)", dir.display())]
    MissingSchemas { dir: PathBuf, version: String },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not valid JSON/YAML: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("CRD {file}: {message}")]
    Crd { file: String, message: String },
    #[error("schema of {kind} does not compile: {message}")]
    Compile { kind: String, message: String },
}

/// One problem found in a document, at a JSON pointer into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub instance_path: String,
    pub message: String,
}

/// Everything wrong with one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationFailure {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    /// No schema exists for this apiVersion/kind at this Kubernetes version.
    pub unknown_kind: bool,
    pub errors: Vec<Violation>,
}

impl fmt::Display for ValidationFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}:", self.api_version, self.kind, self.name)?;
        for v in &self.errors {
            write!(f, "\n  - at '{}': {}", v.instance_path, v.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationFailure {}
