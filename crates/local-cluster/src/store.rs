//! The objects the node last read from the API server (Secrets, ConfigMaps, Services, EndpointSlices), and
//! the reads the kubelet makes of them (ConfigMap/Secret data, objects of a kind). Knows nothing of pods or
//! processes.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_objects::ObjectKey;
use serde_json::Value;

use crate::error::{Error, Result};

/// Objects by (kind, name).
#[derive(Debug, Default)]
pub struct Store {
    objects: BTreeMap<(String, String), Value>,
}

pub fn kind_and_name(v: &Value) -> Result<(String, String)> {
    let key = ObjectKey::of(v).map_err(|e| Error::Manifest(e.to_string()))?;
    Ok((key.kind, key.name))
}

impl Store {
    /// Adds an object, replacing the one of the same kind and name.
    pub fn put(&mut self, v: &Value) -> Result<()> {
        self.objects.insert(kind_and_name(v)?, v.clone());
        Ok(())
    }

    pub fn get(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(kind.to_owned(), name.to_owned()))
    }

    /// All objects of a kind.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects.iter().filter(move |((k, _), _)| k == kind).map(|(_, v)| v)
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

    #[test]
    fn string_data_wins_over_data_and_bad_base64_is_named() -> Result<()> {
        let mut store = Store::default();
        store.put(&json!({"kind": "Secret", "metadata": {"name": "s"}, "data": {"pw": "c2VjcmV0", "user": "eA=="}, "stringData": {"user": "plain"}}))?;
        let data = store.data("Secret", "s")?.unwrap_or_default();
        assert_eq!(data.get("pw"), Some(&b"secret".to_vec()));
        assert_eq!(data.get("user"), Some(&b"plain".to_vec()));
        assert!(store.data("Secret", "absent")?.is_none());
        store.put(&json!({"kind": "Secret", "metadata": {"name": "bad"}, "data": {"k": "%%"}}))?;
        let err = store.data("Secret", "bad").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("data.k is not base64"), "{err}");
        Ok(())
    }
}
