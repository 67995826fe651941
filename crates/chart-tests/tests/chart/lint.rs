//! `helm lint --strict` finds nothing at either Kubernetes version.

use chart_tests::{chart_dir, profile, KUBE_VERSIONS};
use helm_engine::LintOptions;

use crate::util::helm;

#[test]
fn strict_lint_is_clean() {
    let helm = helm();
    let mut problems = Vec::new();
    for name in ["defaults", "all-enabled"] {
        let values = profile(name).expect("profile").values;
        for version in KUBE_VERSIONS {
            let options = LintOptions { strict: true, kube_version: Some(version.into()), namespace: "citus".into() };
            let report = helm.lint(&chart_dir(), &values, &options).unwrap_or_else(|e| panic!("{e}"));
            problems.extend(
                report
                    .errors()
                    .chain(report.warnings())
                    .map(|m| format!("{name} @ {version}: {:?} {} {}", m.severity, m.path, m.text)),
            );
        }
    }
    assert!(problems.is_empty(), "helm lint --strict:\n{}", problems.join("\n"));
}

#[test]
fn lint_reports_a_values_error() {
    let values = serde_json::json!({"worker": {"replicaCount": "three"}});
    let options = LintOptions::default();
    let report = helm().lint(&chart_dir(), &values, &options).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.errors().any(|m| m.text.contains("replicaCount")), "{report:?}");
}
