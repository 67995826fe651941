//! The API server's storage: the objects that exist right now, by release, and the reads the kubelet and
//! the controllers make (ConfigMap/Secret data, objects of a kind). Knows nothing of pods or processes.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_objects::ObjectKey;
use serde_json::Value;

use crate::error::{Error, Result};

/// Objects by (kind, name), in layers that live differently: each release's own objects (replaced on every
/// install/upgrade of that release), hook objects (created and deleted by hooks) and objects the caller
/// supplies (e.g. an `auth.existingSecret`), which survive everything.
#[derive(Debug, Default)]
pub struct Store {
    releases: BTreeMap<String, BTreeMap<(String, String), Value>>,
    hooks: BTreeMap<(String, String), Value>,
    extra: BTreeMap<(String, String), Value>,
}

pub fn kind_and_name(v: &Value) -> Result<(String, String)> {
    let key = ObjectKey::of(v).map_err(|e| Error::Manifest(e.to_string()))?;
    Ok((key.kind, key.name))
}

impl Store {
    /// Replaces a release's objects (what `helm install/upgrade` applies); an object another release owns
    /// is refused, as Helm refuses to adopt it.
    pub fn set_release(&mut self, release: &str, objects: &[Value]) -> Result<()> {
        let objects: BTreeMap<_, _> =
            objects.iter().map(|v| Ok((kind_and_name(v)?, v.clone()))).collect::<Result<_>>()?;
        for (other, owned) in self.releases.iter().filter(|(r, _)| r.as_str() != release) {
            if let Some((kind, name)) = objects.keys().find(|k| owned.contains_key(*k)) {
                return Err(Error::Manifest(format!(
                    "{kind} {name} exists and belongs to release {other}: it cannot be imported into release {release}"
                )));
            }
        }
        self.releases.insert(release.to_owned(), objects);
        Ok(())
    }

    /// Removes a release's objects except those `keep` names (`helm.sh/resource-policy: keep`), which
    /// become ownerless objects that outlive it.
    pub fn remove_release(&mut self, release: &str) {
        for (key, value) in self.releases.remove(release).unwrap_or_default() {
            let keep =
                value.pointer("/metadata/annotations/helm.sh~1resource-policy").and_then(Value::as_str) == Some("keep");
            if keep {
                self.extra.insert(key, value);
            }
        }
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
            .or_else(|| self.releases.values().find_map(|r| r.get(&key)))
    }

    pub fn get_mut(&mut self, kind: &str, name: &str) -> Option<&mut Value> {
        let key = (kind.to_owned(), name.to_owned());
        [&mut self.extra, &mut self.hooks].into_iter().chain(self.releases.values_mut()).find_map(|m| m.get_mut(&key))
    }

    /// All objects of a kind (every layer, every release).
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.releases
            .values()
            .chain([&self.hooks, &self.extra])
            .flat_map(|m| m.iter())
            .filter(move |((k, _), _)| k == kind)
            .map(|(_, v)| v)
    }

    /// `kubectl patch secret`: sets one key of an existing Secret (pods started afterwards see it).
    pub fn set_secret_value(&mut self, name: &str, key: &str, value: &str) -> Result<()> {
        let secret =
            self.get_mut("Secret", name).ok_or_else(|| Error::Manifest(format!("Secret {name} does not exist")))?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(value);
        match secret.as_object_mut() {
            Some(obj) => {
                // stringData wins over data (the API server merges it in), so the key must leave it.
                if let Some(plain) = obj.get_mut("stringData").and_then(Value::as_object_mut) {
                    plain.remove(key);
                }
                let data = obj.entry("data").or_insert_with(|| Value::Object(Default::default()));
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
        for (key, v) in obj.get(plain).and_then(Value::as_object).into_iter().flatten() {
            let s =
                v.as_str().ok_or_else(|| Error::Manifest(format!("{kind} {name}: {plain}.{key} is not a string")))?;
            out.insert(key.clone(), s.as_bytes().to_vec());
        }
        for (key, v) in obj.get(encoded).and_then(Value::as_object).into_iter().flatten() {
            let bytes = v
                .as_str()
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                .ok_or_else(|| Error::Manifest(format!("{kind} {name}: {encoded}.{key} is not base64")))?;
            out.entry(key.clone()).or_insert(bytes);
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store() -> Result<Store> {
        let mut store = Store::default();
        store.set_release("r", &[
            json!({"kind": "Secret", "metadata": {"name": "s"}, "data": {"pw": "c2VjcmV0", "user": "eA=="}, "stringData": {"user": "plain"}}),
        ])?;
        Ok(store)
    }

    #[test]
    fn patching_a_secret_replaces_the_string_data_value() -> Result<()> {
        let mut store = store()?;
        store.set_secret_value("s", "user", "patched")?;
        assert_eq!(store.data("Secret", "s")?.and_then(|d| d.get("user").cloned()), Some(b"patched".to_vec()));
        assert!(store.set_secret_value("absent", "k", "v").is_err());
        Ok(())
    }
}
