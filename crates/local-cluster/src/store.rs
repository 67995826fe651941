//! The API server's part: the ConfigMaps, Secrets and Services that exist right now, and the lookups pods
//! make into them (env `valueFrom`, `envFrom`, configMap/secret volumes, Service selectors).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::podspec::{Container, KeyRef};

/// Objects by (kind, name), in three layers that live differently: the release's own objects (replaced on
/// every install/upgrade), hook objects (created and deleted by hooks) and objects the caller supplies
/// (e.g. an `auth.existingSecret`), which survive everything.
#[derive(Debug, Default)]
pub struct Objects {
    release: BTreeMap<(String, String), Value>,
    hooks: BTreeMap<(String, String), Value>,
    extra: BTreeMap<(String, String), Value>,
}

/// What a pod's env may refer to besides ConfigMaps and Secrets (`fieldRef`).
pub struct PodFields<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub ip: &'a str,
}

pub fn kind_and_name(v: &Value) -> Result<(String, String)> {
    let kind = v.get("kind").and_then(Value::as_str);
    let name = v.pointer("/metadata/name").and_then(Value::as_str);
    match (kind, name) {
        (Some(k), Some(n)) => Ok((k.to_owned(), n.to_owned())),
        _ => Err(Error::Manifest(format!(
            "object without kind or metadata.name: {v}"
        ))),
    }
}

impl Objects {
    /// Replaces the release's objects (what `helm install/upgrade` applies).
    pub fn set_release(&mut self, objects: &[Value]) -> Result<()> {
        self.release = objects
            .iter()
            .map(|v| Ok((kind_and_name(v)?, v.clone())))
            .collect::<Result<_>>()?;
        Ok(())
    }

    pub fn put_hook(&mut self, v: &Value) -> Result<()> {
        self.hooks.insert(kind_and_name(v)?, v.clone());
        Ok(())
    }

    pub fn delete_hook(&mut self, kind: &str, name: &str) {
        self.hooks.remove(&(kind.to_owned(), name.to_owned()));
    }

    pub fn put_extra(&mut self, v: &Value) -> Result<()> {
        self.extra.insert(kind_and_name(v)?, v.clone());
        Ok(())
    }

    pub fn get(&self, kind: &str, name: &str) -> Option<&Value> {
        let key = (kind.to_owned(), name.to_owned());
        self.extra
            .get(&key)
            .or_else(|| self.hooks.get(&key))
            .or_else(|| self.release.get(&key))
    }

    fn get_mut(&mut self, kind: &str, name: &str) -> Option<&mut Value> {
        let key = (kind.to_owned(), name.to_owned());
        [&mut self.extra, &mut self.hooks, &mut self.release]
            .into_iter()
            .find_map(|m| m.get_mut(&key))
    }

    /// All objects of a kind (every layer).
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        [&self.release, &self.hooks, &self.extra]
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(move |((k, _), _)| k == kind)
            .map(|(_, v)| v)
    }

    /// `kubectl patch secret`: sets one key of an existing Secret (pods started afterwards see it).
    pub fn set_secret_value(&mut self, name: &str, key: &str, value: &str) -> Result<()> {
        let secret = self
            .get_mut("Secret", name)
            .ok_or_else(|| Error::Manifest(format!("Secret {name} does not exist")))?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(value);
        match secret.as_object_mut() {
            Some(obj) => {
                // stringData wins over data (the API server merges it in), so the key must leave it.
                if let Some(plain) = obj.get_mut("stringData").and_then(Value::as_object_mut) {
                    plain.remove(key);
                }
                let data = obj
                    .entry("data")
                    .or_insert_with(|| Value::Object(Default::default()));
                match data.as_object_mut() {
                    Some(data) => {
                        data.insert(key.to_owned(), Value::String(encoded));
                        Ok(())
                    }
                    None => Err(Error::Manifest(format!("Secret {name}: data is not a map"))),
                }
            }
            None => Err(Error::Manifest(format!("Secret {name} is not an object"))),
        }
    }

    /// The key -> bytes content of a ConfigMap (`data` and `binaryData`) or Secret (`data`, `stringData`).
    /// `None` when the object does not exist.
    pub fn data(&self, kind: &str, name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>> {
        let Some(obj) = self.get(kind, name) else {
            return Ok(None);
        };
        let mut out = BTreeMap::new();
        let (plain, encoded) = match kind {
            "ConfigMap" => ("data", "binaryData"),
            "Secret" => ("stringData", "data"),
            _ => return Err(Error::Manifest(format!("{kind} {name} holds no data"))),
        };
        for (key, v) in obj
            .get(plain)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let s = v.as_str().ok_or_else(|| {
                Error::Manifest(format!("{kind} {name}: {plain}.{key} is not a string"))
            })?;
            out.insert(key.clone(), s.as_bytes().to_vec());
        }
        for (key, v) in obj
            .get(encoded)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let bytes = v
                .as_str()
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                .ok_or_else(|| {
                    Error::Manifest(format!("{kind} {name}: {encoded}.{key} is not base64"))
                })?;
            out.entry(key.clone()).or_insert(bytes);
        }
        Ok(Some(out))
    }

    /// A container's environment as the kubelet builds it: `envFrom` first, then `env` (later entries win).
    pub fn container_env(
        &self,
        owner: &str,
        c: &Container,
        pod: &PodFields,
    ) -> Result<Vec<(String, String)>> {
        let mut env: Vec<(String, String)> = Vec::new();
        let mut set = |name: String, value: String| match env.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => env.push((name, value)),
        };
        for from in &c.env_from {
            let (kind, r) = match (&from.config_map_ref, &from.secret_ref) {
                (Some(r), None) => ("ConfigMap", r),
                (None, Some(r)) => ("Secret", r),
                _ => {
                    return Err(Error::Manifest(format!(
                        "{owner}: envFrom needs exactly one of configMapRef, secretRef"
                    )))
                }
            };
            match self.data(kind, &r.name)? {
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
                (_, Some(src)) => {
                    match (&src.secret_key_ref, &src.config_map_key_ref, &src.field_ref) {
                        (Some(r), None, None) => self.key_ref(owner, "Secret", r)?,
                        (None, Some(r), None) => self.key_ref(owner, "ConfigMap", r)?,
                        (None, None, Some(f)) => Some(field(owner, &f.field_path, pod)?),
                        _ => {
                            return Err(Error::Unsupported(format!(
                                "{owner}: valueFrom of {}",
                                var.name
                            )))
                        }
                    }
                }
                (value, None) => Some(value.clone().unwrap_or_default()),
            };
            if let Some(value) = value {
                set(var.name.clone(), value);
            }
        }
        Ok(env)
    }

    /// `secretKeyRef`/`configMapKeyRef`; `None` for a missing optional reference (the variable stays unset).
    fn key_ref(&self, owner: &str, kind: &str, r: &KeyRef) -> Result<Option<String>> {
        let data = match self.data(kind, &r.name)? {
            Some(data) => data,
            None if r.optional => return Ok(None),
            None => return Err(missing(owner, kind, &r.name)),
        };
        match data.get(&r.key) {
            Some(bytes) => utf8(owner, &r.key, bytes.clone()).map(Some),
            None if r.optional => Ok(None),
            None => Err(Error::Manifest(format!(
                "{owner}: {kind} {} has no key {}",
                r.name, r.key
            ))),
        }
    }
}

fn field(owner: &str, path: &str, pod: &PodFields) -> Result<String> {
    match path {
        "metadata.name" => Ok(pod.name.to_owned()),
        "metadata.namespace" => Ok(pod.namespace.to_owned()),
        "status.podIP" => Ok(pod.ip.to_owned()),
        _ => Err(Error::Unsupported(format!("{owner}: fieldRef {path}"))),
    }
}

fn utf8(owner: &str, key: &str, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes)
        .map_err(|_| Error::Manifest(format!("{owner}: value of {key} is not UTF-8")))
}

/// A pod that refers to a missing ConfigMap/Secret would stay in CreateContainerConfigError.
fn missing(owner: &str, kind: &str, name: &str) -> Error {
    Error::Manifest(format!(
        "{owner} refers to {kind} {name}, which does not exist"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podspec::PodSpec;
    use serde_json::json;

    fn container(env: Value) -> Result<Container> {
        let spec =
            json!({"containers": [{"name": "c", "env": env["env"], "envFrom": env["envFrom"]}]});
        Ok(PodSpec::from_value("test", &spec)?.container)
    }

    fn objects() -> Result<Objects> {
        let mut objects = Objects::default();
        objects.set_release(&[
            json!({"kind": "Secret", "metadata": {"name": "s"}, "data": {"pw": "c2VjcmV0", "user": "eA=="}, "stringData": {"user": "plain"}}),
            json!({"kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"A": "from-cm", "B": "b"}}),
        ])?;
        Ok(objects)
    }

    const POD: PodFields = PodFields {
        name: "p-0",
        namespace: "ns",
        ip: "10.0.0.2",
    };

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
        let env = objects()?.container_env("test", &c, &POD)?;
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
        let objects = objects()?;
        for (name, key) in [("absent", "pw"), ("s", "absent")] {
            let c = container(
                json!({"env": [{"name": "V", "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}]}),
            )?;
            match objects.container_env("pod x", &c, &POD) {
                Err(Error::Manifest(m)) => assert!(m.contains("absent"), "{m}"),
                other => panic!("expected an error for {name}/{key}, got {other:?}"),
            }
        }
        Ok(())
    }

    #[test]
    fn patching_a_secret_replaces_the_string_data_value() -> Result<()> {
        let mut objects = objects()?;
        objects.set_secret_value("s", "user", "patched")?;
        assert_eq!(
            objects
                .data("Secret", "s")?
                .and_then(|d| d.get("user").cloned()),
            Some(b"patched".to_vec())
        );
        assert!(objects.set_secret_value("absent", "k", "v").is_err());
        Ok(())
    }
}
