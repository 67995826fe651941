#![forbid(unsafe_code)]
use std::path::Path;

use k8s_schema::{SchemaSet, ValidationFailure};
use serde_json::{json, Value};

const VERSIONS: [&str; 2] = ["1.23", "1.37"];

/// A change to a valid document, where the error must be reported, and a word of its message.
type Case = (fn(&mut Value), &'static str, &'static str);

fn load(version: &str) -> SchemaSet {
    SchemaSet::load(version).unwrap_or_else(|e| panic!("{e}"))
}

fn fixture(name: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name);
    let text = std::fs::read_to_string(&path).expect("fixture");
    serde_yaml::Deserializer::from_str(&text).map(|d| serde::Deserialize::deserialize(d).expect("yaml")).collect()
}

fn statefulset() -> Value {
    fixture("statefulset.yaml").remove(0)
}

fn failure(set: &SchemaSet, doc: &Value) -> ValidationFailure {
    set.validate(doc).expect_err("the document must be rejected")
}

fn has_error_at(f: &ValidationFailure, path: &str, text: &str) -> bool {
    f.errors.iter().any(|v| v.instance_path.starts_with(path) && v.message.contains(text))
}

#[test]
fn a_valid_statefulset_passes_at_both_versions() {
    for v in VERSIONS {
        load(v).validate(&statefulset()).unwrap_or_else(|f| panic!("{v}: {f}"));
    }
}

#[test]
fn unknown_fields_wrong_types_and_missing_required_fields_fail_with_paths() {
    let set = load("1.37");
    let mut doc = statefulset();
    doc["spec"]["replicaCont"] = json!(3);
    doc["spec"]["replicas"] = json!("3");
    doc["spec"]["template"]["spec"]["containers"][0].as_object_mut().expect("container").remove("name");
    let f = failure(&set, &doc);
    assert!(has_error_at(&f, "/spec", "replicaCont"), "{f}");
    assert!(has_error_at(&f, "/spec/replicas", ""), "{f}");
    assert!(has_error_at(&f, "/spec/template/spec/containers/0", "name"), "{f}");
}

#[test]
fn a_kind_without_schema_is_an_error() {
    let doc = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
    let f = failure(&load("1.23"), &doc);
    assert!(f.unknown_kind, "{f}");
}

#[test]
fn api_versions_are_those_of_the_kubernetes_version() {
    let pdb = json!({"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget", "metadata": {"name": "p"},
                     "spec": {"maxUnavailable": 1}});
    assert!(load("1.23").validate(&pdb).is_ok());
    assert!(failure(&load("1.37"), &pdb).unknown_kind);
    let hpa = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
                     "spec": {"scaleTargetRef": {"kind": "StatefulSet", "name": "s"}, "maxReplicas": 3}});
    for v in VERSIONS {
        load(v).validate(&hpa).unwrap_or_else(|f| panic!("{v}: {f}"));
    }
}

#[test]
fn crd_kinds_validate_strictly() {
    for v in VERSIONS {
        let set = load(v);
        for doc in fixture("monitoring.yaml") {
            set.validate(&doc).unwrap_or_else(|f| panic!("{v}: {f}"));
        }
    }
    let set = load("1.37");
    let mut sm = fixture("monitoring.yaml").remove(0);
    sm["spec"]["endpoints"][0]["intervall"] = json!("30s");
    assert!(has_error_at(&failure(&set, &sm), "/spec/endpoints/0", "intervall"));
    let mut vpa = fixture("monitoring.yaml").remove(2);
    vpa["metadata"]["labelz"] = json!({});
    assert!(has_error_at(&failure(&set, &vpa), "/metadata", "labelz"));
}

#[test]
fn api_server_rules_beyond_the_schema() {
    let set = load("1.37");
    let cases: Vec<Case> = vec![
        (|d| d["metadata"]["name"] = json!("Bad_Name"), "/metadata/name", "DNS-1123"),
        (|d| d["metadata"]["labels"]["x"] = json!("a".repeat(64)), "/metadata/labels/x", "label value"),
        (
            |d| d["spec"]["template"]["spec"]["containers"][0]["name"] = json!("Postgres"),
            "/spec/template/spec/containers/0/name",
            "DNS-1123",
        ),
        (
            |d| d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"] = json!("a-very-long-port-name"),
            "/spec/template/spec/containers/0/ports/0/name",
            "15",
        ),
        (
            |d| d["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][1]["name"] = json!("nowhere"),
            "/spec/template/spec/containers/0/volumeMounts/1/name",
            "no volume",
        ),
        (
            |d| d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = json!("4 GB"),
            "/spec/template/spec/containers/0/resources/limits/memory",
            "quantity",
        ),
    ];
    for (mutate, path, text) in cases {
        let mut doc = statefulset();
        mutate(&mut doc);
        let f = failure(&set, &doc);
        assert!(has_error_at(&f, path, text), "expected {text:?} at {path}: {f}");
    }
    let svc =
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "1svc"}, "spec": {"ports": [{"port": 1}]}});
    assert!(has_error_at(&failure(&set, &svc), "/metadata/name", "DNS-1035"));
}

#[test]
fn missing_schemas_name_the_setup_command() {
    let err = SchemaSet::load_from(Path::new("/nonexistent"), Path::new("crds"), "1.23").err().expect("error");
    assert!(err.to_string().contains("cargo xtask setup"), "{err}");
}
