//! Shared pieces of the chart's tests: the values profiles of `charts/citus/ci/`, rendering them at
//! the Kubernetes versions the chart supports, and walking the rendered pods.

#![forbid(unsafe_code)]

use std::fs;
use std::path::PathBuf;

use helm_engine::{Document, Helm, HelmError, RenderOptions};
pub use k8s_objects::{containers, PodTemplate};
use serde_json::Value;

pub use chart_values::chart_dir;

/// The oldest Kubernetes the chart supports and the newest the schemas cover.
pub const KUBE_VERSIONS: [&str; 2] = ["v1.23.0", "v1.37.0"];
/// CRD APIs a monitoring-enabled cluster serves, so that ServiceMonitor, PrometheusRule and VPA render.
pub const CRD_APIS: [&str; 2] = ["monitoring.coreos.com/v1", "autoscaling.k8s.io/v1"];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
}

/// One values file of `charts/citus/ci/`.
#[derive(Debug, Clone)]
pub struct Profile {
    /// File name without `-values.yaml`.
    pub name: String,
    pub values: Value,
}

/// Every `charts/citus/ci/*-values.yaml`, sorted by name; adding a file adds it to every matrix test.
pub fn profiles() -> Result<Vec<Profile>, Error> {
    let dir = chart_dir().join("ci");
    let read_err = |path: &PathBuf, message: String| Error::Read { path: path.display().to_string(), message };
    let entries = fs::read_dir(&dir).map_err(|e| read_err(&dir, e.to_string()))?;
    let mut profiles = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix("-values.yaml")) else {
            continue;
        };
        let text = fs::read_to_string(&path).map_err(|e| read_err(&path, e.to_string()))?;
        let values: Value = serde_yaml::from_str(&text).map_err(|e| read_err(&path, e.to_string()))?;
        profiles.push(Profile { name: name.to_owned(), values });
    }
    profiles.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(profiles)
}

pub fn profile(name: &str) -> Result<Profile, Error> {
    profiles()?.into_iter().find(|p| p.name == name).ok_or_else(|| Error::Read {
        path: format!("charts/citus/ci/{name}-values.yaml"),
        message: "no such profile".into(),
    })
}

/// Render options of release `my-citus` in namespace `citus` at a Kubernetes version, CRD APIs served.
pub fn options(kube_version: &str) -> RenderOptions {
    RenderOptions {
        kube_version: Some(kube_version.to_owned()),
        api_versions: CRD_APIS.iter().map(|s| s.to_string()).collect(),
        ..RenderOptions::default()
    }
}

/// Renders the chart with `values` and returns its objects.
pub fn render(helm: &Helm, values: &Value, kube_version: &str) -> Result<Vec<Document>, HelmError> {
    helm.render(&chart_dir(), values, &options(kube_version))?.documents()
}

/// Whether every `selector` label equals the label of `labels`.
pub fn selects(selector: &Value, labels: &Value) -> bool {
    selector.as_object().is_some_and(|sel| !sel.is_empty() && sel.iter().all(|(k, v)| &labels[k] == v))
}
