use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::error::{SchemaError, ValidationFailure, Violation};
use crate::{crd, semantic};

/// The environment variable naming the directory with `<version>/_definitions.json`.
pub const SCHEMAS_ENV: &str = "CITUS_K8S_SCHEMAS";
const DRAFT: &str = "https://json-schema.org/draft/2020-12/schema";

/// The schemas of one Kubernetes version plus the CRDs.
pub struct SchemaSet {
    version: String,
    definitions: Value,
    /// (apiVersion, kind) -> key in `definitions`.
    builtin: HashMap<(String, String), String>,
    /// (apiVersion, kind) -> strict CRD schema (its metadata refers to `definitions`).
    custom: HashMap<(String, String), Value>,
    compiled: Mutex<HashMap<(String, String), Arc<jsonschema::Validator>>>,
}

/// Where the schemas are: `$CITUS_K8S_SCHEMAS`, else `<workspace>/.tools/k8s-schemas`.
pub fn schema_dir() -> PathBuf {
    match std::env::var_os(SCHEMAS_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/k8s-schemas"),
    }
}

fn crd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crds")
}

/// The Kubernetes versions whose schemas are installed, e.g. `["1.23", "1.37"]`.
pub fn available_versions() -> Result<Vec<String>, SchemaError> {
    let dir = schema_dir();
    let entries = fs::read_dir(&dir).map_err(|source| SchemaError::Io { path: dir.clone(), source })?;
    let mut versions: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().join("_definitions.json").exists())
        .filter_map(|e| e.file_name().to_str().map(short_version))
        .collect();
    versions.sort_by_key(|v| v.split('.').map(|p| p.parse::<u32>().unwrap_or(0)).collect::<Vec<_>>());
    Ok(versions)
}

/// "v1.23.0" or "1.23" -> "1.23".
fn short_version(v: &str) -> String {
    let v = v.trim_start_matches('v');
    let mut parts = v.split('.');
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) => format!("{major}.{minor}"),
        _ => v.to_owned(),
    }
}

impl SchemaSet {
    /// Loads the schemas of `kube_version` ("1.23" or "v1.23.0") from [`schema_dir`] and the bundled CRDs.
    pub fn load(kube_version: &str) -> Result<SchemaSet, SchemaError> {
        SchemaSet::load_from(&schema_dir(), &crd_dir(), kube_version)
    }

    pub fn load_from(dir: &Path, crd_dir: &Path, kube_version: &str) -> Result<SchemaSet, SchemaError> {
        let version = short_version(kube_version);
        let file = dir.join(format!("v{version}.0/_definitions.json"));
        if !file.exists() {
            return Err(SchemaError::MissingSchemas { dir: dir.to_owned(), version });
        }
        let text = fs::read_to_string(&file).map_err(|source| SchemaError::Io { path: file.clone(), source })?;
        let mut root: Value = serde_json::from_str(&text)
            .map_err(|e| SchemaError::Parse { path: file.clone(), message: e.to_string() })?;
        let definitions = root.get_mut("$defs").map(Value::take).unwrap_or_default();
        let builtin = index_builtin(&definitions);
        let custom = crd::load_dir(crd_dir)?;
        Ok(SchemaSet { version, definitions, builtin, custom, compiled: Mutex::new(HashMap::new()) })
    }

    /// "1.23".
    pub fn kube_version(&self) -> &str {
        &self.version
    }

    /// Validates one manifest; every problem is reported.
    pub fn validate(&self, doc: &Value) -> Result<(), ValidationFailure> {
        let api_version = doc["apiVersion"].as_str().unwrap_or_default().to_owned();
        let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
        let name = doc["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        let failure = |unknown_kind, errors| ValidationFailure {
            api_version: api_version.clone(),
            kind: kind.clone(),
            name: name.clone(),
            unknown_kind,
            errors,
        };
        let validator = match self.validator(&api_version, &kind) {
            Ok(Some(v)) => v,
            Ok(None) => {
                let message =
                    format!("no schema for {api_version} {kind} in Kubernetes {} or the bundled CRDs", self.version);
                return Err(failure(true, vec![Violation { instance_path: String::new(), message }]));
            }
            Err(e) => {
                return Err(failure(false, vec![Violation { instance_path: String::new(), message: e.to_string() }]))
            }
        };
        let mut errors: Vec<Violation> = validator
            .iter_errors(doc)
            .map(|e| Violation { instance_path: e.instance_path.to_string(), message: e.to_string() })
            .collect();
        errors.extend(semantic::check(doc));
        if errors.is_empty() {
            Ok(())
        } else {
            Err(failure(false, errors))
        }
    }

    fn validator(&self, api_version: &str, kind: &str) -> Result<Option<Arc<jsonschema::Validator>>, SchemaError> {
        let key = (api_version.to_owned(), kind.to_owned());
        let mut compiled = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = compiled.get(&key) {
            return Ok(Some(Arc::clone(v)));
        }
        let schema = if let Some(def) = self.builtin.get(&key) {
            json!({"$schema": DRAFT, "$defs": self.definitions, "$ref": format!("#/$defs/{def}")})
        } else if let Some(crd) = self.custom.get(&key) {
            let mut schema = crd.clone();
            schema["$schema"] = json!(DRAFT);
            schema["$defs"] = self.definitions.clone();
            schema
        } else {
            return Ok(None);
        };
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&schema)
            .map_err(|e| SchemaError::Compile { kind: format!("{api_version} {kind}"), message: e.to_string() })?;
        let validator = Arc::new(validator);
        compiled.insert(key, Arc::clone(&validator));
        Ok(Some(validator))
    }
}

/// (apiVersion, kind) of every definition that is a top-level kind.
fn index_builtin(definitions: &Value) -> HashMap<(String, String), String> {
    let mut index = HashMap::new();
    let Some(defs) = definitions.as_object() else { return index };
    for (key, def) in defs {
        // Kinds shared by every group (DeleteOptions, WatchEvent, ...) list many groups; skip them.
        let Some(gvks) = def["x-kubernetes-group-version-kind"].as_array() else { continue };
        if gvks.len() != 1 || key.starts_with("io.k8s.apimachinery") {
            continue;
        }
        let gvk = &gvks[0];
        let (group, version, kind) = (
            gvk["group"].as_str().unwrap_or_default(),
            gvk["version"].as_str().unwrap_or_default(),
            gvk["kind"].as_str().unwrap_or_default(),
        );
        let api_version = if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") };
        index.insert((api_version, kind.to_owned()), key.clone());
    }
    index
}
