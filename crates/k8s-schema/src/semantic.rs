//! Checks the API server makes that the OpenAPI schema cannot express.

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use k8s_objects::PodTemplate;

use crate::error::Violation;

static DNS1123_SUBDOMAIN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$").expect("regex"));
static DNS1123_LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").expect("regex"));
static DNS1035_LABEL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z]([-a-z0-9]*[a-z0-9])?$").expect("regex"));
static LABEL_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$").expect("regex"));
static QUANTITY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$").expect("regex")
});

pub(crate) fn check(doc: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    let kind = doc["kind"].as_str().unwrap_or_default();
    check_name(doc, kind, &mut out);
    check_labels(&doc["metadata"]["labels"], "/metadata/labels", &mut out);
    if let Some(template) = PodTemplate::of(doc) {
        let path = template.pointer;
        check_labels(template.labels(), &format!("{path}/metadata/labels"), &mut out);
        let claim_templates: Vec<&str> = doc["spec"]["volumeClaimTemplates"]
            .as_array()
            .map(|t| t.iter().filter_map(|c| c["metadata"]["name"].as_str()).collect())
            .unwrap_or_default();
        check_pod_spec(template.spec(), &template.spec_pointer(), &claim_templates, &mut out);
    }
    out
}

fn violation(out: &mut Vec<Violation>, path: String, message: String) {
    out.push(Violation { instance_path: path, message });
}

fn check_name(doc: &Value, kind: &str, out: &mut Vec<Violation>) {
    let Some(name) = doc["metadata"]["name"].as_str() else {
        violation(out, "/metadata/name".into(), "metadata.name is required".into());
        return;
    };
    let (ok, rule, max) = if kind == "Service" {
        (DNS1035_LABEL.is_match(name), "a DNS-1035 label", 63)
    } else {
        (DNS1123_SUBDOMAIN.is_match(name), "a DNS-1123 subdomain", 253)
    };
    if !ok || name.len() > max {
        violation(out, "/metadata/name".into(), format!("{name:?} is not {rule} of at most {max} characters"));
    }
}

fn check_labels(labels: &Value, path: &str, out: &mut Vec<Violation>) {
    let Some(labels) = labels.as_object() else { return };
    for (key, value) in labels {
        let (prefix, name) = key.rsplit_once('/').map_or((None, key.as_str()), |(p, n)| (Some(p), n));
        let prefix_ok = prefix.is_none_or(|p| p.len() <= 253 && DNS1123_SUBDOMAIN.is_match(p));
        if !prefix_ok || name.len() > 63 || !LABEL_NAME.is_match(name) {
            violation(out, format!("{path}/{key}"), format!("label key {key:?} is not valid"));
        }
        match value.as_str() {
            Some(v) if v.is_empty() || (v.len() <= 63 && LABEL_NAME.is_match(v)) => {}
            _ => violation(out, format!("{path}/{key}"), format!("label value {value} is not a valid label value")),
        }
    }
}

fn check_pod_spec(spec: &Value, path: &str, claim_templates: &[&str], out: &mut Vec<Violation>) {
    let mut volumes = HashSet::new();
    for (i, volume) in spec["volumes"].as_array().into_iter().flatten().enumerate() {
        let name = volume["name"].as_str().unwrap_or_default();
        if !volumes.insert(name) {
            violation(out, format!("{path}/volumes/{i}/name"), format!("duplicate volume name {name:?}"));
        }
    }
    let mut containers = HashSet::new();
    for list in ["initContainers", "containers"] {
        for (i, c) in spec[list].as_array().into_iter().flatten().enumerate() {
            let cpath = format!("{path}/{list}/{i}");
            let name = c["name"].as_str().unwrap_or_default();
            if !DNS1123_LABEL.is_match(name) || name.len() > 63 {
                violation(out, format!("{cpath}/name"), format!("container name {name:?} is not a DNS-1123 label"));
            }
            if !containers.insert(name) {
                violation(out, format!("{cpath}/name"), format!("duplicate container name {name:?}"));
            }
            let mut ports = HashSet::new();
            for (j, port) in c["ports"].as_array().into_iter().flatten().enumerate() {
                if let Some(pname) = port["name"].as_str() {
                    if pname.len() > 15 || !ports.insert(pname) {
                        violation(
                            out,
                            format!("{cpath}/ports/{j}/name"),
                            format!("port name {pname:?} is longer than 15 characters or repeated"),
                        );
                    }
                }
            }
            for (j, mount) in c["volumeMounts"].as_array().into_iter().flatten().enumerate() {
                let mname = mount["name"].as_str().unwrap_or_default();
                if !volumes.contains(mname) && !claim_templates.contains(&mname) {
                    violation(
                        out,
                        format!("{cpath}/volumeMounts/{j}/name"),
                        format!("volumeMount {mname:?} refers to no volume"),
                    );
                }
            }
            for section in ["limits", "requests"] {
                for (res, qty) in c["resources"][section].as_object().into_iter().flatten() {
                    let ok = qty.is_number() || qty.as_str().is_some_and(|q| QUANTITY.is_match(q));
                    if !ok {
                        violation(
                            out,
                            format!("{cpath}/resources/{section}/{res}"),
                            format!("{qty} is not a quantity"),
                        );
                    }
                }
            }
        }
    }
}
