//! Real Helm from Rust.
//!
//! Two backends with one API: the Helm engine compiled as a C library (`libhelm_c.so` from the PyPI
//! package helm-python-sdk, found through `CITUS_HELM_LIB` or `.tools/helm/`), or a `helm` binary on
//! PATH. Both are the same Go template engine, so renders and lint results are Helm's own. The library
//! also runs Helm's release actions against a cluster ([`Helm::releases`]).

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

/// A Helm engine, ready to render and lint (and, with the library, to act on a cluster).
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

    /// Helm's release actions against the cluster of `kubeconfig`, releases in `namespace` (library backend).
    pub fn releases(&self, kubeconfig: &Path, namespace: &str) -> Result<Releases, Error> {
        let Backend::Library(lib) = &self.backend else {
            return Err(Error::Unsupported { what: "release actions", backend: self.describe() });
        };
        let options = serde_json::json!({"kubeconfig_path": kubeconfig, "namespace": namespace});
        Ok(Releases { lib, config: lib.config(&options)?, namespace: namespace.to_owned() })
    }

    /// Handles the library holds open (charts not yet freed); 0 for the CLI backend.
    pub fn open_handles(&self) -> i64 {
        match &self.backend {
            Backend::Library(lib) => lib.open_handles(),
            Backend::Cli(_) => 0,
        }
    }
}

/// What an install or upgrade is told beyond the values.
#[derive(Debug, Clone, Default)]
pub struct ReleaseOptions {
    /// `server`: render with the cluster (`lookup` answers) and validate on the API server, change nothing,
    /// run no hook; `client`: render only.
    pub dry_run: Option<&'static str>,
    /// Seconds Helm waits for hooks.
    pub timeout_seconds: Option<u64>,
    /// `--force-conflicts`: server-side apply takes fields another manager owns (e.g. `.spec.replicas` after
    /// `kubectl scale`) instead of refusing.
    pub force_conflicts: bool,
}

/// Helm's release actions on one cluster and namespace (`helm install/upgrade/rollback/test/history/uninstall`).
pub struct Releases {
    lib: &'static ffi::Library,
    config: u64,
    namespace: String,
}

impl Releases {
    /// `helm install <name> <chart_dir>`; the release (name, version, manifest...) as JSON.
    pub fn install(
        &self,
        chart_dir: &Path,
        name: &str,
        values: &serde_json::Value,
        options: &ReleaseOptions,
    ) -> Result<serde_json::Value, Error> {
        self.lib.release(self.config, false, chart_dir, name, values, &self.options(options))
    }

    /// `helm upgrade <name> <chart_dir>`; the new revision as JSON.
    pub fn upgrade(
        &self,
        chart_dir: &Path,
        name: &str,
        values: &serde_json::Value,
        options: &ReleaseOptions,
    ) -> Result<serde_json::Value, Error> {
        self.lib.release(self.config, true, chart_dir, name, values, &self.options(options))
    }

    /// `helm uninstall <name>`.
    pub fn uninstall(&self, name: &str) -> Result<(), Error> {
        self.lib.named(ffi::NamedCall::Uninstall, self.config, name, &serde_json::json!({})).map(drop)
    }

    /// `helm rollback <name> [revision]` (the previous revision without one).
    pub fn rollback(&self, name: &str, revision: Option<u32>, options: &ReleaseOptions) -> Result<(), Error> {
        // Rollback and test take no namespace (the config's): helm-c refuses unknown fields.
        let mut opts = Self::action_options(options);
        if let Some(revision) = revision {
            opts["version"] = revision.into();
        }
        self.lib.rollback(self.config, name, &opts)
    }

    /// `helm test <name>`: runs the test hooks and removes their pods; the release summary as JSON.
    pub fn test(&self, name: &str, timeout_seconds: Option<u64>) -> Result<serde_json::Value, Error> {
        let opts = serde_json::json!({ "timeout_seconds": timeout_seconds });
        let out = self.lib.named(ffi::NamedCall::Test, self.config, name, &opts)?;
        serde_json::from_str(&out)
            .map_err(|e| Error::Parse { what: "helm_test_run output".into(), message: e.to_string() })
    }

    /// `helm history <name>`: every revision with its status, oldest first.
    pub fn history(&self, name: &str) -> Result<serde_json::Value, Error> {
        let out = self.lib.named(ffi::NamedCall::History, self.config, name, &serde_json::json!({}))?;
        serde_json::from_str(&out)
            .map_err(|e| Error::Parse { what: "helm_history output".into(), message: e.to_string() })
    }

    fn options(&self, options: &ReleaseOptions) -> serde_json::Value {
        let mut json = Self::action_options(options);
        json["namespace"] = self.namespace.clone().into();
        json
    }

    fn action_options(options: &ReleaseOptions) -> serde_json::Value {
        let mut json = serde_json::json!({});
        if let Some(dry_run) = options.dry_run {
            json["dry_run"] = dry_run.into();
        }
        if let Some(timeout) = options.timeout_seconds {
            json["timeout_seconds"] = timeout.into();
        }
        if options.force_conflicts {
            json["force_conflicts"] = true.into();
        }
        json
    }
}

impl Drop for Releases {
    fn drop(&mut self) {
        self.lib.config_free(self.config);
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
