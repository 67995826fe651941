//! Value combinations the schema cannot express fail with a message naming the values.

use chart_tests::{chart_dir, options, KUBE_VERSIONS};
use helm_engine::Error;
use serde_json::json;

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
        (json!({"metrics": {"serviceMonitor": {"enabled": true}}}), "metrics.serviceMonitor.enabled=true needs metrics.enabled"),
        (json!({"metrics": {"enabled": true, "prometheusRule": {"enabled": true, "defaultRules": false}}}), "empty PrometheusRule"),
        (json!({"worker": {"autoscaling": {"enabled": true, "minReplicas": 8, "maxReplicas": 4}}}), "worker.autoscaling.minReplicas=8"),
        (json!({"worker": {"autoscaling": {"enabled": true, "targetCPU": ""}}}), "targetCPU or worker.autoscaling.targetMemory"),
        (json!({"kubeVersion": "1.22.0"}), "Kubernetes 1.22.0 is not supported"),
        (json!({"auth": {"username": "postgres"}}), "auth.username=postgres"),
        (json!({"auth": {"enablePostgresUser": false, "username": ""}}), "auth.enablePostgresUser=false needs auth.username"),
        (json!({"auth": {"existingSecret": "mine", "password": "x"}}), "auth.existingSecret"),
        (json!({"worker": {"service": {"type": "NodePort"}}}), "worker.service.type=NodePort cannot be headless"),
        (json!({"coordinator": {"persistence": {"enabled": false, "existingClaim": "c"}}}), "existingClaim"),
        (json!({"coordinator": {"nodeAffinityPreset": {"type": "hard"}}}), "coordinator.nodeAffinityPreset.type=hard needs"),
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
    let docs = helm().render(&chart_dir(), &values, &upgrade).and_then(|r| r.documents()).unwrap_or_else(|e| panic!("{e}"));
    let secret = docs.iter().find(|d| d.kind() == "Secret").expect("Secret");
    assert_eq!(secret.value["data"]["postgres-password"], "YQ==");
    assert_eq!(secret.value["data"]["password"], "Yg==");
}

#[test]
fn generated_passwords_are_long_random_and_kept_on_uninstall() {
    let render = |_| helm().render(&chart_dir(), &json!({}), &options(KUBE_VERSIONS[1])).and_then(|r| r.documents()).expect("render");
    let first = render(0);
    let second = render(1);
    let secret = |docs: &[helm_engine::Document]| docs.iter().find(|d| d.kind() == "Secret").expect("Secret").value.clone();
    let (a, b) = (secret(&first), secret(&second));
    assert_ne!(a["data"]["postgres-password"], b["data"]["postgres-password"], "a fresh install gets a random password");
    assert_eq!(a["metadata"]["annotations"]["helm.sh/resource-policy"], "keep");
}
