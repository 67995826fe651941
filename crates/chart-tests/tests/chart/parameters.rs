//! Every parameter of the README takes effect: for each, `tests/data/parameter-effects.yaml` gives a
//! non-default value and where the render must show it. The expectation must NOT hold with the
//! defaults (so it can fail), and must hold with the value set.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use chart_values::ReadmeTables;
use helm_engine::{Document, Error, Rendered};
use serde_json::{json, Value};

use crate::util::helm;

#[derive(Debug, serde::Deserialize)]
struct Effect {
    key: String,
    set: Value,
    /// Companion values the parameter needs to matter (merged under the parameter).
    #[serde(default)]
    with: Value,
    expect: Vec<Expectation>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Expectation {
    kind: Option<String>,
    name: Option<String>,
    path: Option<String>,
    equals: Option<Value>,
    contains: Option<String>,
    #[serde(default)]
    absent: bool,
    notes_contains: Option<String>,
    fails_with: Option<String>,
}

/// Set `value` at dotted `key` in `values`.
fn set(values: &mut Value, key: &str, value: Value) {
    let mut node = values;
    let parts: Vec<&str> = key.split('.').collect();
    for part in &parts[..parts.len() - 1] {
        if !node[*part].is_object() {
            node[*part] = json!({});
        }
        node = &mut node[*part];
    }
    node[parts[parts.len() - 1]] = value;
}

fn merge(base: &mut Value, layer: &Value) {
    match (base, layer) {
        (Value::Object(b), Value::Object(l)) => {
            for (k, v) in l {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, l) => *b = l.clone(),
    }
}

/// Resolve a path like `/spec/template/spec/containers[name=postgresql]/env/*/name` to every value it reaches.
fn resolve<'a>(root: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut current = vec![root];
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        let mut next = Vec::new();
        for node in current {
            if segment == "*" {
                next.extend(node.as_array().into_iter().flatten());
            } else if let Some((field, rest)) = segment.split_once('[') {
                let (k, v) = rest.trim_end_matches(']').split_once('=').unwrap_or(("name", rest.trim_end_matches(']')));
                next.extend(node[field].as_array().into_iter().flatten().filter(|item| item[k] == v));
            } else if let Ok(index) =
                segment.parse::<usize>().map_err(|_| ()).and_then(|i| if node.is_array() { Ok(i) } else { Err(()) })
            {
                next.extend(node.get(index));
            } else if let Some(child) = node.get(segment.replace("~1", "/")) {
                next.push(child);
            }
        }
        current = next;
    }
    current.into_iter().filter(|v| !v.is_null()).collect()
}

enum Outcome {
    Rendered(Rendered, Vec<Document>),
    Failed(Error),
}

fn render(values: &Value) -> Outcome {
    let options = chart_tests::options(chart_tests::KUBE_VERSIONS[1]);
    match helm().render(&chart_tests::chart_dir(), values, &options) {
        Ok(r) => match r.documents() {
            Ok(docs) => Outcome::Rendered(r, docs),
            Err(e) => Outcome::Failed(e),
        },
        Err(e) => Outcome::Failed(e),
    }
}

fn holds(e: &Expectation, outcome: &Outcome) -> bool {
    let (rendered, docs) = match outcome {
        Outcome::Failed(err) => return e.fails_with.as_ref().is_some_and(|t| err.to_string().contains(t.as_str())),
        Outcome::Rendered(r, d) => (r, d),
    };
    if e.fails_with.is_some() {
        return false;
    }
    if let Some(text) = &e.notes_contains {
        return rendered.notes().is_some_and(|n| n.contains(text.as_str()));
    }
    let doc = docs.iter().find(|d| Some(d.kind()) == e.kind.as_deref() && Some(d.name()) == e.name.as_deref());
    let values = doc.map(|d| resolve(&d.value, e.path.as_deref().unwrap_or(""))).unwrap_or_default();
    if e.absent {
        return values.is_empty();
    }
    if let Some(expected) = &e.equals {
        return values.contains(&expected);
    }
    if let Some(text) = &e.contains {
        return values.iter().any(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned).contains(text.as_str()));
    }
    !values.is_empty()
}

#[test]
fn every_readme_parameter_takes_effect_where_described() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/parameter-effects.yaml");
    let effects: Vec<Effect> =
        serde_yaml::from_str(&fs::read_to_string(&data).expect("parameter-effects.yaml")).expect("parse");
    let readme = fs::read_to_string(chart_tests::chart_dir().join("README.md")).expect("README.md");
    let keys: BTreeSet<String> = ReadmeTables::parse(&readme).expect("tables").into_iter().map(|r| r.key).collect();
    let covered: BTreeSet<String> = effects.iter().map(|e| e.key.clone()).collect();
    let missing: Vec<&String> = keys.difference(&covered).collect();
    assert!(missing.is_empty(), "parameters without an effect check: {missing:?}");

    let baseline = render(&json!({}));
    let mut problems = Vec::new();
    for effect in &effects {
        let mut values = json!({});
        merge(&mut values, &effect.with);
        set(&mut values, &effect.key, effect.set.clone());
        let mut default_values = effect.with.clone();
        if default_values.is_null() {
            default_values = json!({});
        }
        let with_default = if effect.with.is_null() { None } else { Some(render(&default_values)) };
        let outcome = render(&values);
        for e in &effect.expect {
            if holds(e, with_default.as_ref().unwrap_or(&baseline)) {
                problems.push(format!("{}: already holds without setting it: {e:?}", effect.key));
            }
            if !holds(e, &outcome) {
                let why = match &outcome {
                    Outcome::Failed(err) => format!("render failed: {err}"),
                    Outcome::Rendered(..) => "not found".into(),
                };
                problems.push(format!("{} = {}: {why}: {e:?}", effect.key, effect.set));
            }
        }
    }
    assert!(problems.is_empty(), "{} parameter check(s) failed:\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn paths_resolve_through_lists_by_name_and_wildcards() {
    let doc =
        json!({"spec": {"containers": [{"name": "a", "env": [{"name": "X"}]}, {"name": "b", "env": [{"name": "Y"}]}]}});
    assert_eq!(resolve(&doc, "/spec/containers[name=b]/env/*/name"), vec![&json!("Y")]);
    assert_eq!(resolve(&doc, "/spec/containers/*/env/0/name").len(), 2);
    assert!(resolve(&doc, "/spec/containers[name=c]").is_empty());
}
