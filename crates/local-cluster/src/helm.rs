//! Helm's part: a rendered release, the objects real Helm produced, split into the release's resources and
//! its hooks (parsed and ordered by the shared object model, `k8s-objects`).

use std::path::Path;

use serde_json::Value;

use k8s_objects::{sort_hooks, Hook, HookEvent};

use crate::error::{Error, Result};
use crate::store::kind_and_name;

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

/// One hook object of an event, in Helm's order.
#[derive(Debug, Clone)]
pub struct HookObject {
    pub hook: Hook,
    pub value: Value,
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
        Ok(Self::from_documents(documents.into_iter().map(|d| d.value).collect()))
    }

    /// From already rendered objects (anything without a kind, e.g. an empty document, is dropped).
    pub fn from_documents(documents: Vec<Value>) -> Self {
        Manifest { documents: documents.into_iter().filter(|d| d.get("kind").is_some()).collect() }
    }

    pub fn documents(&self) -> &[Value] {
        &self.documents
    }

    /// The object of that kind and name, to read or (in tests) to change before it is applied.
    pub fn get_mut(&mut self, kind: &str, name: &str) -> Option<&mut Value> {
        self.documents.iter_mut().find(|d| kind_and_name(d).is_ok_and(|(k, n)| k == kind && n == name))
    }

    pub fn get(&self, kind: &str, name: &str) -> Option<&Value> {
        self.documents.iter().find(|d| kind_and_name(d).is_ok_and(|(k, n)| k == kind && n == name))
    }

    /// The release's own objects (everything that is not a hook).
    pub fn resources(&self) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for v in &self.documents {
            if Hook::of(v).map_err(|e| Error::Manifest(e.to_string()))?.is_none() {
                out.push(v.clone());
            }
        }
        Ok(out)
    }

    /// The hooks of an event, in the order Helm runs them.
    pub fn hooks(&self, event: HookEvent) -> Result<Vec<HookObject>> {
        let mut hooks = Vec::new();
        for v in &self.documents {
            if let Some(hook) = Hook::of(v).map_err(|e| Error::Manifest(e.to_string()))? {
                if hook.runs_on(event) {
                    hooks.push(hook);
                }
            }
        }
        sort_hooks(&mut hooks);
        Ok(hooks
            .into_iter()
            .filter_map(|hook| {
                let value = self.get(&hook.key.kind, &hook.key.name)?.clone();
                Some(HookObject { hook, value })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hooks_of_an_event_in_helm_order_and_resources_apart() -> Result<()> {
        let hook = |name: &str, events: &str, weight: &str| json!({"kind": "Job", "metadata": {"name": name, "annotations": {"helm.sh/hook": events, "helm.sh/hook-weight": weight}}});
        let manifest = Manifest::from_documents(vec![
            hook("b", "pre-upgrade", "0"),
            hook("a", "pre-upgrade,post-install", "5"),
            json!({"kind": "Secret", "metadata": {"name": "plain"}}),
            json!(null),
        ]);
        let names: Vec<_> = manifest.hooks(HookEvent::PreUpgrade)?.into_iter().map(|h| h.hook.key.name).collect();
        assert_eq!(names, ["b", "a"]);
        // `Cluster::rollback` asks for these events: a hook of pre-upgrade only is not one of them.
        let rollback = Manifest::from_documents(vec![
            hook("upgrade-only", "pre-upgrade", "0"),
            hook("both", "pre-upgrade,pre-rollback", "0"),
            hook("after", "post-upgrade,post-rollback", "0"),
        ]);
        let names = |event| -> Result<Vec<String>> {
            Ok(rollback.hooks(event)?.into_iter().map(|h| h.hook.key.name).collect())
        };
        assert_eq!(names(HookEvent::PreRollback)?, ["both"]);
        assert_eq!(names(HookEvent::PostRollback)?, ["after"]);
        assert_eq!(manifest.resources()?.len(), 1);
        let bad = Manifest::from_documents(vec![hook("j", "post-install", "ten")]);
        assert!(
            matches!(bad.hooks(HookEvent::PostInstall), Err(Error::Manifest(m)) if m.contains("Job j") && m.contains("ten"))
        );
        Ok(())
    }
}
