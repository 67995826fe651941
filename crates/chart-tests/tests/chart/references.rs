//! Every name a rendered object refers to resolves: to an object of the same render, or to an object the
//! values say the user brings (existing Secret, existing claims, extra env sources).

use std::collections::{BTreeMap, BTreeSet};

use chart_tests::{containers, profiles, selects};
use helm_engine::Document;
use serde_json::Value;

use crate::util::render;

/// Names the values declare as provided from outside the release.
fn external(values: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut add = |v: &Value| {
        if let Some(s) = v.as_str().filter(|s| !s.is_empty()) {
            names.insert(s.to_owned());
        }
    };
    add(&values["auth"]["existingSecret"]);
    for c in ["coordinator", "worker"] {
        add(&values[c]["extraEnvVarsCM"]);
        add(&values[c]["extraEnvVarsSecret"]);
        add(&values[c]["persistence"]["existingClaim"]);
    }
    add(&values["backup"]["persistence"]["existingClaim"]);
    add(&values["restore"]["existingClaim"]);
    names
}

fn data_keys(doc: &Document) -> BTreeSet<String> {
    ["data", "stringData"]
        .iter()
        .flat_map(|k| doc.value[*k].as_object().into_iter().flat_map(|m| m.keys().cloned()))
        .collect()
}

fn check_profile(name: &str, values: &Value) -> Vec<String> {
    let docs = render(values);
    let ext = external(values);
    let mut problems = Vec::new();
    let objects: BTreeMap<(String, String), BTreeSet<String>> =
        docs.iter().map(|d| ((d.kind().to_owned(), d.name().to_owned()), data_keys(d))).collect();
    let resolve = |kind: &str, obj: &str, key: Option<&str>, at: String| -> Option<String> {
        if ext.contains(obj) {
            return None;
        }
        match objects.get(&(kind.to_owned(), obj.to_owned())) {
            None => Some(format!("{name}: {at} refers to {kind} {obj}, which is not rendered")),
            Some(keys) => key
                .filter(|k| !keys.contains(*k))
                .map(|key| format!("{name}: {at} refers to key {key} of {kind} {obj}, which has {keys:?}")),
        }
    };
    let pods: Vec<(&Document, &Value, &Value)> =
        docs.iter().filter_map(|d| d.pod_template().map(|t| (d, t.spec(), t.labels()))).collect();
    for (doc, spec, _) in &pods {
        let at = format!("{} {}", doc.kind(), doc.name());
        for c in containers(spec) {
            for env in c["env"].as_array().into_iter().flatten() {
                for (field, kind) in [("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")] {
                    let r = &env["valueFrom"][field];
                    if let Some(obj) = r["name"].as_str() {
                        problems.extend(resolve(kind, obj, r["key"].as_str(), format!("{at} env {}", env["name"])));
                    }
                }
            }
            for from in c["envFrom"].as_array().into_iter().flatten() {
                for (field, kind) in [("secretRef", "Secret"), ("configMapRef", "ConfigMap")] {
                    if let Some(obj) = from[field]["name"].as_str() {
                        problems.extend(resolve(kind, obj, None, format!("{at} envFrom")));
                    }
                }
            }
        }
        for vol in spec["volumes"].as_array().into_iter().flatten() {
            let vat = format!("{at} volume {}", vol["name"]);
            if let Some(obj) = vol["configMap"]["name"].as_str() {
                problems.extend(resolve("ConfigMap", obj, None, vat.clone()));
            }
            if let Some(obj) = vol["secret"]["secretName"].as_str() {
                problems.extend(resolve("Secret", obj, None, vat.clone()));
            }
            if let Some(obj) = vol["persistentVolumeClaim"]["claimName"].as_str() {
                problems.extend(resolve("PersistentVolumeClaim", obj, None, vat));
            }
        }
        if let Some(sa) = spec["serviceAccountName"].as_str().filter(|sa| *sa != "default") {
            problems.extend(resolve("ServiceAccount", sa, None, format!("{at} serviceAccountName")));
        }
    }
    for doc in &docs {
        let at = format!("{} {}", doc.kind(), doc.name());
        match doc.kind() {
            "Service" => {
                let selected: Vec<_> =
                    pods.iter().filter(|(_, _, l)| selects(&doc.value["spec"]["selector"], l)).collect();
                if selected.is_empty() {
                    problems.push(format!("{name}: {at} selects no pod"));
                }
                for port in doc.value["spec"]["ports"].as_array().into_iter().flatten() {
                    let Some(target) = port["targetPort"].as_str() else { continue };
                    for (pod, spec, _) in &selected {
                        let found = containers(spec)
                            .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                            .any(|p| p["name"] == target);
                        if !found {
                            problems.push(format!(
                                "{name}: {at} targetPort {target} is no container port of {} {}",
                                pod.kind(),
                                pod.name()
                            ));
                        }
                    }
                }
            }
            "PodDisruptionBudget" | "NetworkPolicy" => {
                let selector = if doc.kind() == "NetworkPolicy" {
                    &doc.value["spec"]["podSelector"]
                } else {
                    &doc.value["spec"]["selector"]
                };
                if !pods.iter().any(|(_, _, l)| selects(&selector["matchLabels"], l)) {
                    problems.push(format!("{name}: {at} selects no pod"));
                }
            }
            "ServiceMonitor" => {
                let services = docs.iter().filter(|s| s.kind() == "Service");
                if !services
                    .into_iter()
                    .any(|s| selects(&doc.value["spec"]["selector"]["matchLabels"], &s.value["metadata"]["labels"]))
                {
                    problems.push(format!("{name}: {at} selects no Service"));
                }
            }
            "HorizontalPodAutoscaler" | "VerticalPodAutoscaler" => {
                let target = if doc.kind() == "VerticalPodAutoscaler" {
                    &doc.value["spec"]["targetRef"]
                } else {
                    &doc.value["spec"]["scaleTargetRef"]
                };
                problems.extend(resolve(
                    target["kind"].as_str().unwrap_or_default(),
                    target["name"].as_str().unwrap_or_default(),
                    None,
                    at,
                ));
            }
            _ => {}
        }
    }
    problems
}

#[test]
fn every_reference_resolves_in_every_profile() {
    let problems: Vec<String> =
        profiles().expect("profiles").iter().flat_map(|p| check_profile(&p.name, &p.values)).collect();
    assert!(problems.is_empty(), "{} dangling reference(s):\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn a_dangling_reference_is_detected() {
    // The check itself must be able to fail: a Secret the values do not declare as external.
    let values = serde_json::json!({"coordinator": {"extraVolumes": [{"name": "x", "secret": {"secretName": "nowhere"}}],
                                                    "extraVolumeMounts": [{"name": "x", "mountPath": "/x"}]}});
    let problems = check_profile("probe", &values);
    assert!(problems.iter().any(|p| p.contains("Secret nowhere")), "{problems:?}");
}
