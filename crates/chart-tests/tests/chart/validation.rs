//! Value combinations the schema cannot express fail with a message naming the values; the corpora
//! `tests/data/bad-values.yaml` (must fail, each for its own reason) and `tests/data/edge-values.yaml`
//! (must render valid manifests) pin down where the line between them runs.

use std::fs;

use chart_tests::{chart_dir, options, KUBE_VERSIONS};
use helm_engine::{Error, RenderOptions};
use k8s_schema::SchemaSet;
use serde_json::{json, Value};

use crate::util::{helm, render_error};

fn render_failure(values: serde_json::Value) -> String {
    match render_error(&values) {
        Error::Render { message } | Error::Values { message } => message,
        other => panic!("{values}: expected a values error, got {other}"),
    }
}

#[test]
fn invalid_combinations_fail_naming_the_values() {
    let cases = [
        (json!({"coordinator": {"pdb": {"minAvailable": 1, "maxUnavailable": 1}}}), "coordinator.pdb.minAvailable"),
        (json!({"worker": {"pdb": {"minAvailable": "", "maxUnavailable": ""}}}), "worker.pdb.create=true needs"),
        (
            json!({"metrics": {"serviceMonitor": {"enabled": true}}}),
            "metrics.serviceMonitor.enabled=true needs metrics.enabled",
        ),
        (
            json!({"metrics": {"enabled": true, "prometheusRule": {"enabled": true, "defaultRules": false}}}),
            "empty PrometheusRule",
        ),
        (
            json!({"worker": {"autoscaling": {"enabled": true, "minReplicas": 8, "maxReplicas": 4}}}),
            "worker.autoscaling.minReplicas=8",
        ),
        (
            json!({"worker": {"autoscaling": {"enabled": true, "targetCPU": ""}}}),
            "targetCPU or worker.autoscaling.targetMemory",
        ),
        (json!({"kubeVersion": "1.22.0"}), "Kubernetes 1.22.0 is not supported"),
        (json!({"auth": {"username": "postgres"}}), "auth.username=postgres"),
        (
            json!({"auth": {"enablePostgresUser": false, "username": ""}}),
            "auth.enablePostgresUser=false needs auth.username",
        ),
        (json!({"auth": {"existingSecret": "mine", "password": "x"}}), "auth.existingSecret"),
        (json!({"worker": {"service": {"type": "NodePort"}}}), "worker.service.type=NodePort cannot be headless"),
        (json!({"coordinator": {"persistence": {"enabled": false, "existingClaim": "c"}}}), "existingClaim"),
        (
            json!({"coordinator": {"nodeAffinityPreset": {"type": "hard"}}}),
            "coordinator.nodeAffinityPreset.type=hard needs",
        ),
        (json!({"ingress": {"enabled": true, "hostname": ""}}), "ingress.enabled=true needs"),
    ];
    for (values, text) in cases {
        let message = render_failure(values.clone());
        assert!(message.contains(text), "{values}: expected {text:?} in: {message}");
    }
}

#[test]
fn all_problems_are_reported_at_once() {
    let message = render_failure(json!({"kubeVersion": "1.22.0", "auth": {"username": "postgres"}}));
    assert!(message.contains("1.22.0") && message.contains("auth.username=postgres"), "{message}");
}

#[test]
fn coordinator_replicas_above_one_are_refused() {
    let message = render_failure(json!({"coordinator": {"replicaCount": 2}}));
    assert!(message.contains("/coordinator/replicaCount") || message.contains("coordinator.replicaCount"), "{message}");
}

#[test]
fn an_upgrade_never_generates_new_passwords() {
    let upgrade = helm_engine::RenderOptions { is_upgrade: true, ..options(KUBE_VERSIONS[1]) };
    let err = helm().render(&chart_dir(), &json!({}), &upgrade).expect_err("an upgrade without readable Secret fails");
    assert!(err.to_string().contains("never generates a new password"), "{err}");
    let values = json!({"auth": {"postgresPassword": "a", "password": "b"}});
    let docs =
        helm().render(&chart_dir(), &values, &upgrade).and_then(|r| r.documents()).unwrap_or_else(|e| panic!("{e}"));
    let secret = docs.iter().find(|d| d.kind() == "Secret").expect("Secret");
    assert_eq!(secret.value["data"]["postgres-password"], "YQ==");
    assert_eq!(secret.value["data"]["password"], "Yg==");
}

#[test]
fn generated_passwords_are_long_random_and_kept_on_uninstall() {
    let render = |_| {
        helm().render(&chart_dir(), &json!({}), &options(KUBE_VERSIONS[1])).and_then(|r| r.documents()).expect("render")
    };
    let first = render(0);
    let second = render(1);
    let secret =
        |docs: &[helm_engine::Document]| docs.iter().find(|d| d.kind() == "Secret").expect("Secret").value.clone();
    let (a, b) = (secret(&first), secret(&second));
    assert_ne!(
        a["data"]["postgres-password"], b["data"]["postgres-password"],
        "a fresh install gets a random password"
    );
    assert_eq!(a["metadata"]["annotations"]["helm.sh/resource-policy"], "keep");
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BadCase {
    name: String,
    values: Value,
    /// Fragments the error message must contain.
    expect: Vec<String>,
    /// Problems the chart's values error lists: the case fails for its own reason only.
    #[serde(default = "one")]
    errors: usize,
    /// Refused by values.schema.json rather than by the chart's templates.
    #[serde(default)]
    schema: bool,
    release: Option<String>,
    kube_version: Option<String>,
}

fn one() -> usize {
    1
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EdgeCase {
    name: String,
    values: Value,
    kube_versions: Option<Vec<String>>,
    /// Fragments NOTES.txt must contain.
    #[serde(default)]
    notes: Vec<String>,
}

fn corpus<T: serde::de::DeserializeOwned>(file: &str) -> Vec<T> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(file);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn case_options(release: Option<&str>, kube_version: &str) -> RenderOptions {
    let mut opts = options(kube_version);
    if let Some(release) = release {
        opts.release_name = release.to_owned();
    }
    opts
}

#[test]
fn every_bad_value_is_refused_for_its_own_reason() {
    let helm = helm();
    let cases: Vec<BadCase> = corpus("bad-values.yaml");
    assert!(cases.len() >= 100, "the corpus lost cases: {}", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let opts = case_options(case.release.as_deref(), case.kube_version.as_deref().unwrap_or(KUBE_VERSIONS[1]));
        let message = match helm.render(&chart_dir(), &case.values, &opts) {
            Ok(_) => {
                failures.push(format!("{}: rendered, but must be refused", case.name));
                continue;
            }
            Err(Error::Values { message }) if case.schema => message,
            Err(Error::Render { message }) if !case.schema => message,
            Err(other) => {
                failures.push(format!("{}: refused the wrong way (schema: {}): {other}", case.name, case.schema));
                continue;
            }
        };
        for fragment in &case.expect {
            if !message.contains(fragment.as_str()) {
                failures.push(format!("{}: {fragment:?} missing from: {message}", case.name));
            }
        }
        if !case.schema {
            let listed = message.matches("\n  - ").count();
            if listed != case.errors {
                failures
                    .push(format!("{}: {listed} problem(s) listed, {} expected: {message}", case.name, case.errors));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} case(s) wrong:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn every_edge_value_renders_valid_manifests() {
    let helm = helm();
    let cases: Vec<EdgeCase> = corpus("edge-values.yaml");
    assert!(cases.len() >= 40, "the corpus lost cases: {}", cases.len());
    let mut failures = Vec::new();
    for version in KUBE_VERSIONS {
        let schemas = SchemaSet::load(version).unwrap_or_else(|e| panic!("{e}"));
        for case in &cases {
            if case.kube_versions.as_ref().is_some_and(|v| !v.iter().any(|v| v == version)) {
                continue;
            }
            let rendered = match helm.render(&chart_dir(), &case.values, &options(version)) {
                Ok(rendered) => rendered,
                Err(e) => {
                    failures.push(format!("{} @ {version}: {e}", case.name));
                    continue;
                }
            };
            for fragment in &case.notes {
                if !rendered.notes().unwrap_or_default().contains(fragment.as_str()) {
                    failures.push(format!("{} @ {version}: NOTES lack {fragment:?}", case.name));
                }
            }
            match rendered.documents() {
                Ok(docs) => {
                    for doc in &docs {
                        if let Err(f) = schemas.validate(&doc.value) {
                            failures.push(format!("{} @ {version} ({}): {f}", case.name, doc.source));
                        }
                    }
                }
                Err(e) => failures.push(format!("{} @ {version}: {e}", case.name)),
            }
        }
    }
    assert!(failures.is_empty(), "{} problem(s):\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn the_default_notes_do_not_warn_about_shard_moves() {
    let rendered =
        helm().render(&chart_dir(), &json!({}), &options(KUBE_VERSIONS[1])).unwrap_or_else(|e| panic!("{e}"));
    assert!(!rendered.notes().unwrap_or_default().contains("WARNING: postgresql.walLevel"), "{:?}", rendered.notes());
}
