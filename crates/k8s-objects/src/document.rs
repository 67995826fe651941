use std::fmt;

use serde_json::Value;

use crate::hook::Hook;
use crate::pod_template::PodTemplate;
use crate::Error;

/// What names an object in a namespace-scoped release: kind, namespace (None = the release's) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    pub fn new(kind: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey { kind: kind.into(), namespace: None, name: name.into() }
    }

    /// The key of a JSON object; an object without kind or name is an error naming what it has.
    pub fn of(value: &Value) -> Result<Self, Error> {
        let field = |pointer: &str, field| {
            value
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| Error::MissingField { object: describe(value), field })
        };
        Ok(ObjectKey {
            kind: field("/kind", "kind")?,
            namespace: value.pointer("/metadata/namespace").and_then(Value::as_str).map(str::to_owned),
            name: field("/metadata/name", "metadata.name")?,
        })
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// A short description of an object for messages about objects that lack a key.
fn describe(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("object {}...", &text[..cut]),
        None => format!("object {text}"),
    }
}

/// One Kubernetes object of a render, with the template that produced it.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The template path, e.g. `citus/templates/worker/statefulset.yaml` (empty for objects made elsewhere).
    pub source: String,
    pub value: Value,
}

impl Document {
    pub fn new(source: impl Into<String>, value: Value) -> Self {
        Document { source: source.into(), value }
    }

    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }

    pub fn api_version(&self) -> &str {
        self.value["apiVersion"].as_str().unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or_default()
    }

    pub fn key(&self) -> Result<ObjectKey, Error> {
        ObjectKey::of(&self.value)
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.value["metadata"]["annotations"][key].as_str()
    }

    /// The hook this object declares, None for an ordinary release object, an error for annotations Helm
    /// would misread (Helm itself turns a bad weight into 0 without a word).
    pub fn hook(&self) -> Result<Option<Hook>, Error> {
        Hook::of(&self.value)
    }

    /// The pod template of a workload kind (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob).
    pub fn pod_template(&self) -> Option<PodTemplate<'_>> {
        PodTemplate::of(&self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_name_kind_namespace_and_name() {
        let v = json!({"kind": "Secret", "metadata": {"name": "s", "namespace": "citus"}});
        let key = ObjectKey::of(&v).expect("key");
        assert_eq!(key.to_string(), "Secret citus/s");
        assert_eq!(
            ObjectKey::of(&json!({"kind": "Secret"})).map_err(|e| e.to_string()).unwrap_err(),
            "object {\"kind\":\"Secret\"}: metadata.name is missing or not a string"
        );
    }
}
