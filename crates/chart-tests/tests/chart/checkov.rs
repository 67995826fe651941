//! checkov on the default render: no failed check; every waiver is an annotation with a reason.

use std::process::Command;

use serde_json::{json, Value};

use crate::util::helm;

fn checkov() -> String {
    std::env::var("CITUS_CHECKOV").unwrap_or_else(|_| {
        let default = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/checkov/bin/checkov");
        default.to_string_lossy().into_owned()
    })
}

#[test]
fn the_default_render_passes_checkov() {
    let bin = checkov();
    assert!(std::path::Path::new(&bin).exists(), "checkov not found at {bin}: run `cargo xtask setup --only checkov`");
    let rendered = helm()
        .render(&chart_tests::chart_dir(), &json!({}), &chart_tests::options(chart_tests::KUBE_VERSIONS[1]))
        .expect("render");
    let docs = rendered.documents().expect("documents");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("default.yaml");
    std::fs::write(&file, rendered.to_yaml_stream()).expect("write render");
    let output = Command::new(&bin)
        .args(["--framework", "kubernetes", "--skip-download", "--quiet", "-o", "json", "-f"])
        .arg(&file)
        .output()
        .expect("run checkov");
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("checkov output is not JSON ({e}): {}", String::from_utf8_lossy(&output.stderr)));
    let report = if report.is_array() { report[0].clone() } else { report };
    let summary = &report["summary"];
    eprintln!("checkov: {} passed, {} failed, {} skipped", summary["passed"], summary["failed"], summary["skipped"]);
    let failed: Vec<String> = report["results"]["failed_checks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| format!("{} {} {}", f["check_id"], f["resource"], f["check_name"]))
        .collect();
    assert!(failed.is_empty(), "checkov failed checks:\n{}", failed.join("\n"));
    assert!(summary["passed"].as_u64().unwrap_or(0) > 100, "checkov checked almost nothing: {summary}");
    for doc in &docs {
        for (key, value) in doc.value["metadata"]["annotations"].as_object().into_iter().flatten() {
            if key.starts_with("checkov.io/skip") {
                let reason = value.as_str().and_then(|v| v.split_once('=')).map(|(_, r)| r.trim()).unwrap_or_default();
                assert!(reason.len() > 20, "{} {}: waiver {key} without a reason: {value}", doc.kind(), doc.name());
            }
        }
    }
}
