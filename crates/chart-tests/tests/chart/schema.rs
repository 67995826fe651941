//! values.schema.json: typos, wrong types and bad enum values fail and Helm names the path; free-form
//! maps stay free.

use helm_engine::Error;
use serde_json::json;

use crate::util::{render, render_error};

fn schema_error(values: serde_json::Value) -> String {
    match render_error(&values) {
        Error::Values { message } => message,
        other => panic!("{values}: expected a schema error, got {other}"),
    }
}

#[test]
fn an_unknown_key_fails_naming_it() {
    let message = schema_error(json!({"worker": {"replicaCont": 3}}));
    assert!(message.contains("/worker") && message.contains("replicaCont"), "{message}");
    let message = schema_error(json!({"metrics": {"serviceMonitor": {"intervall": "10s"}}}));
    assert!(message.contains("intervall"), "{message}");
}

#[test]
fn wrong_types_and_enum_values_fail_naming_the_path() {
    let cases = [
        (json!({"worker": {"replicaCount": "three"}}), "/worker/replicaCount"),
        (json!({"coordinator": {"service": {"type": "Foo"}}}), "/coordinator/service/type"),
        (json!({"worker": {"resourcesPreset": "huge"}}), "/worker/resourcesPreset"),
        (json!({"coordinator": {"vpa": {"updateMode": "Sometimes"}}}), "/coordinator/vpa/updateMode"),
        (json!({"ingress": {"pathType": "Any"}}), "/ingress/pathType"),
        (json!({"image": {"pullPolicy": "Sometimes"}}), "/image/pullPolicy"),
        (json!({"postgresql": {"walLevel": "archive"}}), "/postgresql/walLevel"),
        (json!({"coordinator": {"podAntiAffinityPreset": "medium"}}), "/coordinator/podAntiAffinityPreset"),
        (json!({"worker": {"autoscaling": {"targetCPU": 0}}}), "/worker/autoscaling/targetCPU"),
        (json!({"coordinator": {"containerPorts": {"postgresql": 70000}}}), "/coordinator/containerPorts/postgresql"),
        (json!({"auth": {"usePasswordFiles": "yes"}}), "/auth/usePasswordFiles"),
        (
            json!({"coordinator": {"containerSecurityContext": {"runAsUsr": 5}}}),
            "/coordinator/containerSecurityContext",
        ),
    ];
    for (values, path) in cases {
        let message = schema_error(values.clone());
        assert!(message.contains(path), "{values}: the error must name {path}: {message}");
    }
}

#[test]
fn free_form_maps_accept_any_keys() {
    render(&json!({
        "commonLabels": {"any/label": "x"},
        "coordinator": {
            "podLabels": {"anything": "goes"},
            "nodeSelector": {"disk": "ssd"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "Exists"}]}]}}},
            "resources": {"requests": {"cpu": 1, "memory": "2Gi", "ephemeral-storage": "1Gi"}, "limits": {"memory": "4Gi"}},
            "containerSecurityContext": {"seLinuxOptions": {"level": "s0:c1"}}
        },
        "global": {"postgresql": {"fromAParentChart": true}}
    }));
}
