//! A rendered release: the objects real Helm produced, split into the release's resources and its hooks,
//! with Helm's hook ordering (weight, then name, then kind install order) and delete policies.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::objects::kind_and_name;

/// What to render.
#[derive(Debug, Clone)]
pub struct RenderRequest<'a> {
    pub chart_dir: &'a Path,
    pub release: &'a str,
    pub namespace: &'a str,
    pub values: &'a Value,
    pub is_upgrade: bool,
    pub revision: u32,
}

/// The objects of one render (empty documents and NOTES.txt dropped).
#[derive(Debug, Clone)]
pub struct Manifest {
    documents: Vec<Value>,
}

/// Helm hook events this harness runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    PreInstall,
    PostInstall,
    PreUpgrade,
    PostUpgrade,
    Test,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::PreInstall => "pre-install",
            Phase::PostInstall => "post-install",
            Phase::PreUpgrade => "pre-upgrade",
            Phase::PostUpgrade => "post-upgrade",
            Phase::Test => "test",
        }
    }
}

/// One hook object of a phase.
#[derive(Debug, Clone)]
pub struct Hook {
    pub value: Value,
    pub kind: String,
    pub name: String,
    pub weight: i64,
    pub delete_before_creation: bool,
    pub delete_on_success: bool,
    pub delete_on_failure: bool,
}

/// Helm's InstallOrder, for the kinds this chart has; it only breaks ties of equal weight and name.
const KIND_ORDER: [&str; 8] = [
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "PersistentVolumeClaim",
    "Service",
    "Pod",
    "StatefulSet",
    "Job",
];

fn annotation<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

fn hook_events(v: &Value) -> Vec<&str> {
    annotation(v, "helm.sh/hook")
        .map(|s| s.split(',').map(str::trim).collect())
        .unwrap_or_default()
}

impl Manifest {
    /// Renders the chart with real Helm.
    pub fn render(req: &RenderRequest) -> Result<Self> {
        let helm = helm_engine::Helm::discover().map_err(Error::Render)?;
        let options = helm_engine::RenderOptions {
            release_name: req.release.to_owned(),
            namespace: req.namespace.to_owned(),
            is_upgrade: req.is_upgrade,
            revision: req.revision,
            ..Default::default()
        };
        let documents = helm
            .render(req.chart_dir, req.values, &options)
            .and_then(|rendered| rendered.documents())
            .map_err(Error::Render)?;
        Ok(Self::from_documents(
            documents.into_iter().map(|d| d.value).collect(),
        ))
    }

    /// From already rendered objects (anything without a kind, e.g. an empty document, is dropped).
    pub fn from_documents(documents: Vec<Value>) -> Self {
        Manifest {
            documents: documents
                .into_iter()
                .filter(|d| d.get("kind").is_some())
                .collect(),
        }
    }

    pub fn documents(&self) -> &[Value] {
        &self.documents
    }

    /// The object of that kind and name, to read or (in tests) to change before it is applied.
    pub fn get_mut(&mut self, kind: &str, name: &str) -> Option<&mut Value> {
        self.documents
            .iter_mut()
            .find(|d| kind_and_name(d).is_ok_and(|(k, n)| k == kind && n == name))
    }

    pub fn get(&self, kind: &str, name: &str) -> Option<&Value> {
        self.documents
            .iter()
            .find(|d| kind_and_name(d).is_ok_and(|(k, n)| k == kind && n == name))
    }

    /// The release's own objects (everything that is not a hook).
    pub fn resources(&self) -> Vec<Value> {
        self.documents
            .iter()
            .filter(|d| hook_events(d).is_empty())
            .cloned()
            .collect()
    }

    /// The hooks of a phase, in the order Helm runs them.
    pub fn hooks(&self, phase: Phase) -> Result<Vec<Hook>> {
        let mut hooks = Vec::new();
        for v in &self.documents {
            if !hook_events(v).contains(&phase.as_str()) {
                continue;
            }
            let (kind, name) = kind_and_name(v)?;
            let weight = match annotation(v, "helm.sh/hook-weight") {
                Some(w) => w
                    .trim()
                    .parse()
                    .map_err(|_| Error::Manifest(format!("{kind} {name}: hook weight {w:?}")))?,
                None => 0,
            };
            let policies: Vec<&str> = annotation(v, "helm.sh/hook-delete-policy")
                .map(|p| p.split(',').map(str::trim).collect())
                .unwrap_or_default();
            hooks.push(Hook {
                value: v.clone(),
                // Without any policy Helm applies before-hook-creation.
                delete_before_creation: policies.is_empty()
                    || policies.contains(&"before-hook-creation"),
                delete_on_success: policies.contains(&"hook-succeeded"),
                delete_on_failure: policies.contains(&"hook-failed"),
                kind,
                name,
                weight,
            });
        }
        let rank = |kind: &str| {
            KIND_ORDER
                .iter()
                .position(|k| *k == kind)
                .unwrap_or(KIND_ORDER.len())
        };
        hooks.sort_by(|a, b| {
            (a.weight, &a.name, rank(&a.kind)).cmp(&(b.weight, &b.name, rank(&b.kind)))
        });
        Ok(hooks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hook(
        kind: &str,
        name: &str,
        events: &str,
        weight: Option<&str>,
        policy: Option<&str>,
    ) -> Value {
        let mut annotations = json!({"helm.sh/hook": events});
        if let Some(w) = weight {
            annotations["helm.sh/hook-weight"] = json!(w);
        }
        if let Some(p) = policy {
            annotations["helm.sh/hook-delete-policy"] = json!(p);
        }
        json!({"kind": kind, "metadata": {"name": name, "annotations": annotations}})
    }

    #[test]
    fn hooks_run_by_weight_then_name_and_keep_helm_delete_policies() -> Result<()> {
        let manifest = Manifest::from_documents(vec![
            hook(
                "Job",
                "b-job",
                "pre-upgrade",
                Some("0"),
                Some("before-hook-creation"),
            ),
            hook(
                "ConfigMap",
                "scripts",
                "pre-upgrade",
                Some("-10"),
                Some("before-hook-creation,hook-succeeded"),
            ),
            hook("Job", "a-job", "pre-upgrade, post-upgrade", Some("0"), None),
            hook(
                "Job",
                "register",
                "post-install,post-upgrade",
                Some("10"),
                None,
            ),
            json!({"kind": "Secret", "metadata": {"name": "plain"}}),
            json!(null),
        ]);
        let order: Vec<_> = manifest
            .hooks(Phase::PreUpgrade)?
            .into_iter()
            .map(|h| h.name)
            .collect();
        assert_eq!(order, ["scripts", "a-job", "b-job"]);
        let post: Vec<_> = manifest
            .hooks(Phase::PostUpgrade)?
            .into_iter()
            .map(|h| h.name)
            .collect();
        assert_eq!(post, ["a-job", "register"]);
        let scripts = &manifest.hooks(Phase::PreUpgrade)?[0];
        assert!(
            scripts.delete_before_creation
                && scripts.delete_on_success
                && !scripts.delete_on_failure
        );
        let default = &manifest.hooks(Phase::PostInstall)?[0];
        assert!(default.delete_before_creation && !default.delete_on_success);
        assert_eq!(manifest.resources().len(), 1);
        Ok(())
    }

    #[test]
    fn a_hook_weight_that_is_not_a_number_is_an_error() {
        let manifest =
            Manifest::from_documents(vec![hook("Job", "j", "post-install", Some("ten"), None)]);
        assert!(
            matches!(manifest.hooks(Phase::PostInstall), Err(Error::Manifest(m)) if m.contains("ten"))
        );
    }
}
