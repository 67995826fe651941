//! CRD schemas, made strict: an object schema with properties rejects other properties unless the CRD
//! says it keeps unknown fields.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use serde_json::{json, Value};

use crate::error::SchemaError;

const OBJECT_META: &str = "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// (apiVersion, kind) -> strict schema of every served version of every CRD in `dir`.
pub(crate) fn load_dir(dir: &Path) -> Result<HashMap<(String, String), Value>, SchemaError> {
    let mut schemas = HashMap::new();
    let entries = fs::read_dir(dir).map_err(|source| SchemaError::Io { path: dir.to_owned(), source })?;
    let mut files: Vec<_> =
        entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "yaml")).collect();
    files.sort();
    for path in files {
        let text = fs::read_to_string(&path).map_err(|source| SchemaError::Io { path: path.clone(), source })?;
        let file = path.display().to_string();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let crd: Value = serde::Deserialize::deserialize(doc)
                .map_err(|e| SchemaError::Crd { file: file.clone(), message: e.to_string() })?;
            add_crd(&crd, &file, &mut schemas)?;
        }
    }
    Ok(schemas)
}

fn add_crd(crd: &Value, file: &str, out: &mut HashMap<(String, String), Value>) -> Result<(), SchemaError> {
    let err = |message: &str| SchemaError::Crd { file: file.to_owned(), message: message.to_owned() };
    let group = crd["spec"]["group"].as_str().ok_or_else(|| err("spec.group missing"))?;
    let kind = crd["spec"]["names"]["kind"].as_str().ok_or_else(|| err("spec.names.kind missing"))?;
    for version in crd["spec"]["versions"].as_array().ok_or_else(|| err("spec.versions missing"))? {
        if version["served"] != json!(true) {
            continue;
        }
        let name = version["name"].as_str().ok_or_else(|| err("version without name"))?;
        let mut schema = version["schema"]["openAPIV3Schema"].clone();
        if !schema.is_object() {
            return Err(err(&format!("{name}: no openAPIV3Schema")));
        }
        make_strict(&mut schema);
        // CRD schemas only say `metadata: {type: object}`; the API server checks it as ObjectMeta.
        schema["properties"]["metadata"] = json!({"$ref": OBJECT_META});
        out.insert((format!("{group}/{name}"), kind.to_owned()), schema);
    }
    Ok(())
}

fn make_strict(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else { return };
    let keeps_unknown = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
    if obj.contains_key("properties") && !obj.contains_key("additionalProperties") && !keeps_unknown {
        obj.insert("additionalProperties".into(), json!(false));
    }
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        props.values_mut().for_each(make_strict);
    }
    for key in ["items", "additionalProperties"] {
        if let Some(sub) = obj.get_mut(key) {
            make_strict(sub);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(subs)) = obj.get_mut(key) {
            subs.iter_mut().for_each(make_strict);
        }
    }
}
