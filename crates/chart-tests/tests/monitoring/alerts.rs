//! The chart's default alerts under `promtool test rules`: the PrometheusRule rendered by real Helm, its
//! groups written as a rules file next to the committed tests (tests/data/alerts/*-test.yaml), and every
//! default alert covered by at least one test that expects it to fire.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

use libtest_mimic::Failed;
use serde_json::{json, Value};

use crate::Outcome;

pub fn promtool_test_rules() -> Outcome {
    if Command::new("promtool").arg("--version").output().is_err() {
        return Ok(Err("promtool is not installed (apt-get install prometheus; cargo xtask setup does)".into()));
    }
    let groups = rendered_groups()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let rules = serde_yaml::to_string(&json!({"groups": groups})).map_err(|e| e.to_string())?;
    fs::write(dir.path().join("rules.yaml"), rules).map_err(|e| e.to_string())?;
    promtool(dir.path(), &["check", "rules", "rules.yaml"])?;

    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/alerts");
    let mut tests = Vec::new();
    let mut tested = BTreeSet::new();
    for entry in fs::read_dir(&data).map_err(|e| format!("{}: {e}", data.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).filter(|n| n.ends_with("-test.yaml")) else {
            continue;
        };
        let text = fs::read_to_string(&path).map_err(|e| e.to_string())?;
        tested.extend(alerts_expected_to_fire(&text)?);
        fs::write(dir.path().join(name), text).map_err(|e| e.to_string())?;
        tests.push(name.to_owned());
    }
    if tests.is_empty() {
        return Err(format!("no *-test.yaml in {}", data.display()).into());
    }
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    promtool(dir.path(), &args)?;

    let defined: BTreeSet<String> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["alert"].as_str().map(str::to_owned))
        .collect();
    let untested: Vec<_> = defined.difference(&tested).collect();
    if !untested.is_empty() {
        return Err(format!("alerts no promtool test expects to fire: {untested:?}").into());
    }
    Ok(Ok(()))
}

/// The groups of the PrometheusRule with every default alert (backups on, so their alerts render too).
fn rendered_groups() -> Result<Vec<Value>, Failed> {
    let helm = helm_engine::Helm::discover().map_err(|e| e.to_string())?;
    let values = json!({
        "metrics": {"enabled": true, "prometheusRule": {"enabled": true}},
        "backup": {"enabled": true},
    });
    let docs = chart_tests::render(&helm, &values, chart_tests::KUBE_VERSIONS[1]).map_err(|e| e.to_string())?;
    let rule = docs.iter().find(|d| d.kind() == "PrometheusRule").ok_or("no PrometheusRule rendered")?;
    Ok(rule.value["spec"]["groups"].as_array().ok_or("PrometheusRule without groups")?.clone())
}

/// Names of the alerts a promtool test file expects in a non-empty `exp_alerts`.
fn alerts_expected_to_fire(text: &str) -> Result<BTreeSet<String>, Failed> {
    let doc: Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    Ok(doc["tests"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["alert_rule_test"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["exp_alerts"].as_array().is_some_and(|e| !e.is_empty()))
        .filter_map(|a| a["alertname"].as_str().map(str::to_owned))
        .collect())
}

fn promtool(dir: &Path, args: &[&str]) -> Result<(), Failed> {
    let out = Command::new("promtool").args(args).current_dir(dir).output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "promtool {} failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into())
    }
}
