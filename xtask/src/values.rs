//! Values from files and `--set`, merged the way helm merges them.

use std::fs;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};

pub fn load(files: &[PathBuf], sets: &[String]) -> Result<Value> {
    let mut values = Value::Object(Map::new());
    for file in files {
        let text = fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let layer: Value = serde_yaml::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
        match layer {
            Value::Null => {}
            Value::Object(_) => merge(&mut values, layer),
            _ => bail!("{} is not a map of values", file.display()),
        }
    }
    for set in sets {
        let (key, raw) = set.split_once('=').with_context(|| format!("--set {set}: expected key=value"))?;
        let mut layer = parse_scalar(raw);
        for part in key.rsplit('.') {
            if part.is_empty() {
                bail!("--set {set}: empty key segment");
            }
            let mut map = Map::new();
            map.insert(part.to_owned(), layer);
            layer = Value::Object(map);
        }
        merge(&mut values, layer);
    }
    Ok(values)
}

/// Maps merge key by key; anything else replaces.
fn merge(base: &mut Value, layer: Value) {
    match (base, layer) {
        (Value::Object(base), Value::Object(layer)) => {
            for (key, value) in layer {
                match base.get_mut(&key) {
                    Some(existing) if existing.is_object() && value.is_object() => merge(existing, value),
                    _ => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, layer) => *base = layer,
    }
}

/// helm --set typing: integers, booleans, null, `{}`/`[]`; anything else is a string.
fn parse_scalar(raw: &str) -> Value {
    match raw {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "null" => Value::Null,
        "{}" => Value::Object(Map::new()),
        "[]" => Value::Array(Vec::new()),
        _ => raw.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::String(raw.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_builds_nested_keys_and_types_scalars() {
        let v = load(&[], &["worker.replicaCount=5".into(), "auth.username=app".into(), "metrics.enabled=true".into()])
            .expect("values");
        assert_eq!(
            v,
            json!({"worker": {"replicaCount": 5}, "auth": {"username": "app"}, "metrics": {"enabled": true}})
        );
    }

    #[test]
    fn maps_merge_and_scalars_replace() {
        let mut base = json!({"a": {"b": 1, "c": 2}, "d": [1]});
        merge(&mut base, json!({"a": {"c": 3}, "d": [2]}));
        assert_eq!(base, json!({"a": {"b": 1, "c": 3}, "d": [2]}));
    }

    #[test]
    fn a_set_without_equals_is_an_error() {
        assert!(load(&[], &["worker.replicaCount".into()]).is_err());
    }
}
