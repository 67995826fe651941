//! Selectors are immutable on StatefulSets: commonLabels and podLabels must never reach them.

use serde_json::json;

use crate::util::render;

#[test]
fn selectors_do_not_change_with_common_or_pod_labels() {
    let plain = render(&json!({}));
    let labelled = render(&json!({
        "commonLabels": {"team": "data", "app.kubernetes.io/name": "overridden"},
        "coordinator": {"podLabels": {"tier": "db", "app.kubernetes.io/component": "x"}},
        "worker": {"podLabels": {"tier": "db"}}
    }));
    let selector = |doc: &serde_json::Value| match doc["kind"].as_str().unwrap_or_default() {
        "StatefulSet" | "PodDisruptionBudget" => Some(doc["spec"]["selector"].clone()),
        "Service" => Some(doc["spec"]["selector"].clone()),
        _ => None,
    };
    let mut compared = 0;
    for doc in &plain {
        let Some(expected) = selector(&doc.value) else { continue };
        let other = labelled.iter().find(|d| d.kind() == doc.kind() && d.name() == doc.name()).expect("same objects");
        assert_eq!(selector(&other.value), Some(expected), "{} {} selector changed", doc.kind(), doc.name());
        compared += 1;
    }
    assert!(compared >= 8, "only {compared} selectors compared");
    for doc in labelled.iter().filter(|d| d.kind() == "StatefulSet") {
        let labels = doc.pod_template().expect("pod labels").labels();
        assert_eq!(labels["team"], "data", "{}: commonLabels on the pod template", doc.name());
        assert_eq!(labels["tier"], "db", "{}: podLabels on the pod template", doc.name());
        assert_eq!(labels["app.kubernetes.io/name"], "citus", "{}: selector labels win over commonLabels", doc.name());
        assert_eq!(doc.value["metadata"]["labels"]["team"], "data");
    }
}
