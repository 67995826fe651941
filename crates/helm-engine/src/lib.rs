//! Real Helm from Rust.
//!
//! Two backends with one API: the Helm engine compiled as a C library (`libhelm_c.so` from the PyPI
//! package helm-python-sdk, found through `CITUS_HELM_LIB` or `.tools/helm/`), or a `helm` binary on
//! PATH. Both are the same Go template engine, so renders and lint results are Helm's own.

mod cli;
mod documents;
mod error;
mod ffi;
mod options;

use std::path::{Path, PathBuf};

pub use documents::Rendered;
pub use error::{Error, HelmError};
pub use k8s_objects::{Document, Hook, HookEvent, ObjectKey, PodTemplate};
pub use options::{LintMessage, LintOptions, LintReport, RenderOptions, Severity};

/// Environment variable naming the libhelm_c shared library.
pub const LIBRARY_ENV: &str = "CITUS_HELM_LIB";

/// A Helm engine, ready to render and lint.
#[derive(Debug, Clone)]
pub struct Helm {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Library(&'static ffi::Library),
    Cli(PathBuf),
}

impl Helm {
    /// Finds Helm: `$CITUS_HELM_LIB`, then `<workspace>/.tools/helm/libhelm_c.so`, then `helm` on PATH.
    pub fn discover() -> Result<Helm, Error> {
        if let Some(path) = library_path() {
            return Ok(Helm { backend: Backend::Library(ffi::Library::load(&path)?) });
        }
        if let Some(helm) = cli::find_on_path() {
            return Ok(Helm { backend: Backend::Cli(helm) });
        }
        Err(Error::NotFound { searched: default_library_path() })
    }

    /// Which backend renders: the library path or the helm binary.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Library(lib) => format!("libhelm_c {}", lib.path().display()),
            Backend::Cli(helm) => format!("helm binary {}", helm.display()),
        }
    }

    /// Renders the chart in `chart_dir` with `values` (a JSON object), like `helm template`.
    pub fn render(
        &self,
        chart_dir: &Path,
        values: &serde_json::Value,
        options: &RenderOptions,
    ) -> Result<Rendered, Error> {
        let files = match &self.backend {
            Backend::Library(lib) => lib.render(chart_dir, values, options)?,
            Backend::Cli(helm) => cli::render(helm, chart_dir, values, options)?,
        };
        Ok(Rendered { files })
    }

    /// Lints the chart in `chart_dir` with `values`, like `helm lint`.
    pub fn lint(
        &self,
        chart_dir: &Path,
        values: &serde_json::Value,
        options: &LintOptions,
    ) -> Result<LintReport, Error> {
        match &self.backend {
            Backend::Library(lib) => lib.lint(chart_dir, values, options),
            Backend::Cli(helm) => cli::lint(helm, chart_dir, values, options),
        }
    }

    /// Handles the library holds open (charts not yet freed); 0 for the CLI backend.
    pub fn open_handles(&self) -> i64 {
        match &self.backend {
            Backend::Library(lib) => lib.open_handles(),
            Backend::Cli(_) => 0,
        }
    }
}

fn default_library_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/helm/libhelm_c.so")
}

fn library_path() -> Option<PathBuf> {
    match std::env::var_os(LIBRARY_ENV) {
        Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ => Some(default_library_path()).filter(|p| p.exists()),
    }
}
