use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("values.yaml is not valid YAML: {0}")]
    Yaml(String),
    #[error("line {line}: malformed `{directive}` comment: {text}")]
    Malformed { line: usize, directive: &'static str, text: String },
    #[error("line {line}: @param {key} names no key of values.yaml")]
    UnknownKey { line: usize, key: String },
    #[error("line {line}: {key} is documented twice")]
    Duplicate { line: usize, key: String },
    #[error("{key} has no @param line (every leaf value must be documented)")]
    Undocumented { key: String },
    #[error("line {line}: @schema for {key} is not valid JSON: {message}")]
    SchemaJson { line: usize, key: String, message: String },
    #[error("README: {0}")]
    Readme(String),
}

/// One documented parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub key: String,
    pub description: String,
    pub default: Value,
}

/// values.yaml: its defaults, parameters and schema refinements.
#[derive(Debug, Clone)]
pub struct ValuesDoc {
    pub defaults: Value,
    pub params: Vec<Param>,
    /// Dotted key -> JSON schema that replaces the inferred one.
    pub schemas: BTreeMap<String, Value>,
}

impl ValuesDoc {
    pub fn parse(text: &str) -> Result<ValuesDoc, Error> {
        let defaults: Value = serde_yaml::from_str(text).map_err(|e| Error::Yaml(e.to_string()))?;
        let mut params = Vec::new();
        let mut schemas = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            let trimmed = line.trim_start();
            if let Some(rest) = trimmed.strip_prefix("## @param ") {
                let (key, description) = rest.split_once(' ').unwrap_or((rest, ""));
                let default = lookup(&defaults, key)
                    .ok_or_else(|| Error::UnknownKey { line: line_no, key: key.to_owned() })?
                    .clone();
                if !seen.insert(key.to_owned()) {
                    return Err(Error::Duplicate { line: line_no, key: key.to_owned() });
                }
                params.push(Param { key: key.to_owned(), description: description.trim().to_owned(), default });
            } else if let Some(rest) = trimmed.strip_prefix("## @schema ") {
                let (key, json) = rest.split_once(' ').ok_or_else(|| Error::Malformed {
                    line: line_no,
                    directive: "@schema",
                    text: rest.to_owned(),
                })?;
                if lookup(&defaults, key).is_none() {
                    return Err(Error::UnknownKey { line: line_no, key: key.to_owned() });
                }
                let schema = serde_json::from_str(json).map_err(|e| Error::SchemaJson {
                    line: line_no,
                    key: key.to_owned(),
                    message: e.to_string(),
                })?;
                schemas.insert(key.to_owned(), schema);
            }
        }
        let doc = ValuesDoc { defaults, params, schemas };
        doc.check_every_leaf_documented()?;
        Ok(doc)
    }

    pub fn param(&self, key: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.key == key)
    }

    /// A leaf is a scalar, a list, an empty map, or a map documented as a whole.
    fn check_every_leaf_documented(&self) -> Result<(), Error> {
        let documented: BTreeSet<&str> = self.params.iter().map(|p| p.key.as_str()).collect();
        let mut missing = Vec::new();
        walk(&self.defaults, String::new(), &documented, &mut missing);
        match missing.into_iter().next() {
            Some(key) => Err(Error::Undocumented { key }),
            None => Ok(()),
        }
    }
}

fn walk(value: &Value, prefix: String, documented: &BTreeSet<&str>, missing: &mut Vec<String>) {
    if !prefix.is_empty() && documented.contains(prefix.as_str()) {
        return;
    }
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                walk(child, path, documented, missing);
            }
        }
        _ => missing.push(prefix),
    }
}

/// The value at a dotted key.
pub(crate) fn lookup<'a>(root: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.').try_fold(root, |node, part| node.as_object()?.get(part))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_carry_their_defaults() {
        let doc = ValuesDoc::parse("a:\n  ## @param a.b The b\n  b: 3\n## @param c C\nc: {}\n").expect("doc");
        assert_eq!(doc.params.len(), 2);
        assert_eq!(doc.param("a.b").map(|p| p.default.clone()), Some(serde_json::json!(3)));
    }

    #[test]
    fn an_undocumented_leaf_is_an_error() {
        let err = ValuesDoc::parse("## @param a A\na: 1\nb: 2\n").expect_err("b is undocumented");
        assert!(matches!(err, Error::Undocumented { key } if key == "b"));
    }

    #[test]
    fn a_param_for_a_missing_key_is_an_error() {
        let err = ValuesDoc::parse("## @param a.c A\na:\n  b: 1\n").expect_err("a.c does not exist");
        assert!(matches!(err, Error::UnknownKey { key, .. } if key == "a.c"));
    }
}
