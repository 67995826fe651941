//! The kubelet's environment work: `env` and `envFrom` of a container resolved against the store
//! (ConfigMaps, Secrets) and the pod's own fields (`fieldRef`).

use super::podspec::{Container, KeyRef};
use crate::error::{Error, Result};
use crate::store::Store;

/// What a pod's env may refer to besides ConfigMaps and Secrets (`fieldRef`).
pub struct PodFields<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub ip: &'a str,
}

/// A container's environment as the kubelet builds it: `envFrom` first, then `env` (later entries win).
pub fn container_env(store: &Store, owner: &str, c: &Container, pod: &PodFields) -> Result<Vec<(String, String)>> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |name: String, value: String| match env.iter_mut().find(|(n, _)| *n == name) {
        Some(slot) => slot.1 = value,
        None => env.push((name, value)),
    };
    for from in &c.env_from {
        let (kind, r) = match (&from.config_map_ref, &from.secret_ref) {
            (Some(r), None) => ("ConfigMap", r),
            (None, Some(r)) => ("Secret", r),
            _ => return Err(Error::Manifest(format!("{owner}: envFrom needs exactly one of configMapRef, secretRef"))),
        };
        match store.data(kind, &r.name)? {
            Some(data) => {
                for (key, bytes) in data {
                    set(format!("{}{key}", from.prefix), utf8(owner, &key, bytes)?);
                }
            }
            None if r.optional => {}
            None => return Err(missing(owner, kind, &r.name)),
        }
    }
    for var in &c.env {
        let value = match (&var.value, &var.value_from) {
            (_, Some(src)) => match (&src.secret_key_ref, &src.config_map_key_ref, &src.field_ref) {
                (Some(r), None, None) => key_ref(store, owner, "Secret", r)?,
                (None, Some(r), None) => key_ref(store, owner, "ConfigMap", r)?,
                (None, None, Some(f)) => Some(field(owner, &f.field_path, pod)?),
                _ => return Err(Error::Unsupported(format!("{owner}: valueFrom of {}", var.name))),
            },
            (value, None) => Some(value.clone().unwrap_or_default()),
        };
        if let Some(value) = value {
            set(var.name.clone(), value);
        }
    }
    Ok(env)
}

/// `secretKeyRef`/`configMapKeyRef`; `None` for a missing optional reference (the variable stays unset).
fn key_ref(store: &Store, owner: &str, kind: &str, r: &KeyRef) -> Result<Option<String>> {
    let data = match store.data(kind, &r.name)? {
        Some(data) => data,
        None if r.optional => return Ok(None),
        None => return Err(missing(owner, kind, &r.name)),
    };
    match data.get(&r.key) {
        Some(bytes) => utf8(owner, &r.key, bytes.clone()).map(Some),
        None if r.optional => Ok(None),
        None => Err(Error::Manifest(format!("{owner}: {kind} {} has no key {}", r.name, r.key))),
    }
}

pub(crate) fn field(owner: &str, path: &str, pod: &PodFields) -> Result<String> {
    match path {
        "metadata.name" => Ok(pod.name.to_owned()),
        "metadata.namespace" => Ok(pod.namespace.to_owned()),
        "status.podIP" => Ok(pod.ip.to_owned()),
        _ => Err(Error::Unsupported(format!("{owner}: fieldRef {path}"))),
    }
}

fn utf8(owner: &str, key: &str, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|_| Error::Manifest(format!("{owner}: value of {key} is not UTF-8")))
}

/// A pod that refers to a missing ConfigMap/Secret would stay in CreateContainerConfigError.
fn missing(owner: &str, kind: &str, name: &str) -> Error {
    Error::Manifest(format!("{owner} refers to {kind} {name}, which does not exist"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::podspec::PodSpec;
    use serde_json::{json, Value};

    fn container(env: Value) -> Result<Container> {
        let spec = json!({"containers": [{"name": "c", "env": env["env"], "envFrom": env["envFrom"]}]});
        Ok(PodSpec::from_value("test", &spec)?.containers.remove(0))
    }

    fn store() -> Result<Store> {
        let mut store = Store::default();
        store.put(&json!({"kind": "Secret", "metadata": {"name": "s"}, "data": {"pw": "c2VjcmV0", "user": "eA=="}, "stringData": {"user": "plain"}}))?;
        store.put(&json!({"kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"A": "from-cm", "B": "b"}}))?;
        Ok(store)
    }

    const POD: PodFields = PodFields { name: "p-0", namespace: "ns", ip: "10.0.0.2" };

    #[test]
    fn env_resolves_references_and_later_entries_win() -> Result<()> {
        let c = container(json!({
            "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "X_"}],
            "env": [
                {"name": "X_A", "value": "explicit"},
                {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
                {"name": "USER", "valueFrom": {"secretKeyRef": {"name": "s", "key": "user"}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "GONE", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": true}}},
            ],
        }))?;
        let env = container_env(&store()?, "test", &c, &POD)?;
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("X_A"), Some("explicit"));
        assert_eq!(get("X_B"), Some("b"));
        assert_eq!(get("PW"), Some("secret"));
        assert_eq!(get("USER"), Some("plain"), "stringData wins over data");
        assert_eq!(get("POD"), Some("p-0"));
        assert_eq!(get("GONE"), None);
        Ok(())
    }

    #[test]
    fn a_missing_secret_or_key_is_an_error_naming_it() -> Result<()> {
        let store = store()?;
        for (name, key) in [("absent", "pw"), ("s", "absent")] {
            let c =
                container(json!({"env": [{"name": "V", "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}]}))?;
            match container_env(&store, "pod x", &c, &POD) {
                Err(Error::Manifest(m)) => assert!(m.contains("absent"), "{m}"),
                other => panic!("expected an error for {name}/{key}, got {other:?}"),
            }
        }
        Ok(())
    }
}
