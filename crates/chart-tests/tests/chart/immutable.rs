//! The immutable-field check of the StatefulSets (review D16). It reads the live StatefulSet with `lookup`,
//! which answers nothing without a cluster, so these tests render a copy of the chart with one more template
//! that calls the check's helper (`citus.node.immutableErrors`) with a live object made here: the worker
//! StatefulSet that the chart rendered from other values, as the API server stores it (sizes canonical).

use std::path::Path;

use serde_json::{json, Value};

use crate::util::helm;

const CHECK: &str = r#"{{- $live := .Files.Get "live.json" | fromJson -}}
{{- $errors := include "citus.node.immutableErrors" (dict "ctx" $ "component" "worker" "live" $live) | fromYamlArray -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: immutable-check
data:
  errors: {{ toJson $errors | quote }}
"#;

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The worker StatefulSet rendered from `values`, with its claim size as the API server stores it.
fn live(values: &Value, stored_size: Option<&str>) -> Value {
    let docs = crate::util::render(values);
    let mut sts = docs
        .into_iter()
        .find(|d| d.kind() == "StatefulSet" && d.name() == "my-citus-worker")
        .map(|d| d.value)
        .unwrap_or_else(|| panic!("no worker StatefulSet rendered from {values}"));
    if let Some(size) = stored_size {
        sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] = json!(size);
    }
    sts
}

/// The problems the check finds when `values` are applied over `live`.
fn problems(live: &Value, values: &Value) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let chart = dir.path().join("citus");
    copy_dir(&chart_tests::chart_dir(), &chart).unwrap_or_else(|e| panic!("copying the chart: {e}"));
    std::fs::write(chart.join("live.json"), live.to_string()).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(chart.join("templates/zz-immutable-check.yaml"), CHECK).unwrap_or_else(|e| panic!("{e}"));
    let rendered = helm()
        .render(&chart, values, &chart_tests::options(chart_tests::KUBE_VERSIONS[1]))
        .and_then(|r| r.documents())
        .unwrap_or_else(|e| panic!("rendering with {values}: {e}"));
    let check = rendered
        .iter()
        .find(|d| d.kind() == "ConfigMap" && d.name() == "immutable-check")
        .unwrap_or_else(|| panic!("the check's ConfigMap is missing"));
    let errors = check.value["data"]["errors"].as_str().unwrap_or_else(|| panic!("no errors field"));
    serde_json::from_str(errors).unwrap_or_else(|e| panic!("errors {errors}: {e}"))
}

fn persistence(p: Value) -> Value {
    json!({"worker": {"persistence": p}})
}

#[test]
fn a_size_the_api_server_stored_in_canonical_form_is_not_a_change() {
    for (size, stored) in [("10240Mi", "10Gi"), ("1.5Gi", "1536Mi"), ("8Gi", "8Gi")] {
        let values = persistence(json!({"size": size}));
        let found = problems(&live(&values, Some(stored)), &values);
        assert!(found.is_empty(), "size {size} stored as {stored}: {found:?}");
    }
}

#[test]
fn every_change_of_the_claim_template_is_named() {
    let base = persistence(json!({"storageClass": "fast"}));
    let cases = [
        (json!({"storageClass": "fast", "size": "16Gi"}), "worker.persistence.size=16Gi but StatefulSet my-citus-worker was created with 10Gi"),
        (json!({"storageClass": "fast", "labels": {"tier": "db"}}), "worker.persistence.labels would change the claim template's labels"),
        (json!({"storageClass": "fast", "annotations": {"backup": "daily"}}), "worker.persistence.annotations would change the claim template's annotations"),
        (json!({"storageClass": "fast", "selector": {"matchLabels": {"disk": "ssd"}}}), "worker.persistence.selector={\"matchLabels\":{\"disk\":\"ssd\"}}"),
        (json!({"storageClass": ""}), "gives storage class none (the cluster's default class) but StatefulSet my-citus-worker was created with \"fast\""),
        (json!({"storageClass": "slow"}), "gives storage class \"slow\" but StatefulSet my-citus-worker was created with \"fast\""),
        (json!({"storageClass": "fast", "accessModes": ["ReadWriteOncePod"]}), "worker.persistence.accessModes=[\"ReadWriteOncePod\"]"),
        (json!({"storageClass": "fast", "enabled": false}), "would remove the volumeClaimTemplates"),
    ];
    let live = live(&base, None);
    assert!(problems(&live, &base).is_empty(), "unchanged values: {:?}", problems(&live, &base));
    for (p, expected) in cases {
        let found = problems(&live, &persistence(p.clone()));
        assert!(
            found.len() == 1 && found[0].contains(expected),
            "persistence {p}: expected one problem containing {expected:?}, found {found:?}"
        );
    }
}
