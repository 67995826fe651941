//! How the monitoring values render: the exporter's bgwriter switch per tag, the monitoring role's wiring,
//! the default node architecture, a dashboard and alerts that use only metrics the exporter exports, the
//! NOTES, and Chart.yaml's image list.

use std::collections::BTreeSet;

use helm_engine::Document;
use libtest_mimic::{Failed, Trial};
use serde_json::{json, Value};

pub fn trials() -> Vec<Trial> {
    vec![
        Trial::test("render::bgwriter_collector_off_only_where_it_fails", bgwriter_collector_off_only_where_it_fails),
        Trial::test("render::exporter_logs_in_as_the_monitoring_role", exporter_logs_in_as_the_monitoring_role),
        Trial::test("render::citus_images_default_to_amd64_nodes", citus_images_default_to_amd64_nodes),
        Trial::test("render::dashboard_and_alerts_use_exported_metrics", dashboard_and_alerts_use_exported_metrics),
        Trial::test("render::notes_tell_what_ingress_and_nodes_can_do", notes_tell_what_ingress_and_nodes_can_do),
        Trial::test("render::artifacthub_images_are_the_rendered_images", artifacthub_images_are_the_rendered_images),
        Trial::test("render::backup_age_allowed_by_the_schedule", backup_age_allowed_by_the_schedule),
    ]
}

fn render(values: &Value) -> Result<Vec<Document>, Failed> {
    let helm = helm_engine::Helm::discover().map_err(|e| e.to_string())?;
    chart_tests::render(&helm, values, chart_tests::KUBE_VERSIONS[1]).map_err(|e| e.to_string().into())
}

fn find<'d>(docs: &'d [Document], kind: &str, name: &str) -> Result<&'d Value, Failed> {
    docs.iter()
        .find(|d| d.kind() == kind && d.name() == name)
        .map(|d| &d.value)
        .ok_or_else(|| format!("no {kind} {name}").into())
}

fn container<'v>(sts: &'v Value, name: &str) -> Result<&'v Value, Failed> {
    sts["spec"]["template"]["spec"]["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .ok_or_else(|| format!("no container {name}").into())
}

fn check(problems: &mut Vec<String>, ok: bool, what: String) {
    if !ok {
        problems.push(what);
    }
}

fn verdict(problems: Vec<String>) -> Result<(), Failed> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n").into())
    }
}

fn bgwriter_collector_off_only_where_it_fails() -> Result<(), Failed> {
    let mut problems = Vec::new();
    for (tag, flag) in [
        ("v0.11.1", Some("--no-collector.bgwriter")),
        ("v0.15.0", Some("--no-collector.stat_bgwriter")),
        ("0.16.1", Some("--no-collector.stat_bgwriter")),
        ("v0.17.0", None),
        ("v0.18.1", None),
        ("latest", None),
    ] {
        let docs = render(&json!({"metrics": {"enabled": true, "image": {"tag": tag}}}))?;
        let args = container(find(&docs, "StatefulSet", "my-citus-worker")?, "metrics")?["args"].clone();
        let bgwriter: Vec<&str> = args
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|a| a.contains("bgwriter"))
            .collect();
        check(
            &mut problems,
            bgwriter == flag.into_iter().collect::<Vec<_>>(),
            format!("tag {tag}: {bgwriter:?}, want {flag:?}"),
        );
    }
    verdict(problems)
}

fn exporter_logs_in_as_the_monitoring_role() -> Result<(), Failed> {
    let mut problems = Vec::new();
    let docs = render(
        &json!({"metrics": {"enabled": true, "username": "prom"}, "auth": {"secretKeys": {"monitoringPasswordKey": "mon"}}}),
    )?;
    let secret = find(&docs, "Secret", "my-citus-secret")?;
    check(
        &mut problems,
        secret["data"]["mon"].as_str().is_some_and(|p| p.len() >= 24),
        "the Secret holds a generated monitoring password".into(),
    );
    let sts = find(&docs, "StatefulSet", "my-citus-coordinator")?;
    let env = |c: &Value, name: &str| c["env"].as_array().and_then(|e| e.iter().find(|v| v["name"] == name)).cloned();
    let metrics = container(sts, "metrics")?;
    check(
        &mut problems,
        env(metrics, "DATA_SOURCE_USER").is_some_and(|v| v["value"] == "prom"),
        "exporter user".into(),
    );
    // The exporter reads its password from the file the PostgreSQL container writes (at every new connection,
    // so a rotated password needs no restart), never from the Secret.
    check(
        &mut problems,
        env(metrics, "DATA_SOURCE_PASS").is_none() && env(metrics, "DATA_SOURCE_PASS_FILE").is_none(),
        "no exporter password from the Secret".into(),
    );
    let pg = container(sts, "postgresql")?;
    let pgpass = env(metrics, "PGPASSFILE").and_then(|v| v["value"].as_str().map(str::to_owned));
    check(
        &mut problems,
        pgpass.is_some()
            && env(pg, "CITUS_MONITORING_PGPASSFILE").and_then(|v| v["value"].as_str().map(str::to_owned)) == pgpass,
        "the exporter's PGPASSFILE is the file the role script writes".into(),
    );
    let mount =
        |c: &Value| c["volumeMounts"].as_array().and_then(|m| m.iter().find(|m| m["name"] == "exporter-auth")).cloned();
    check(
        &mut problems,
        mount(metrics).is_some_and(|m| m["readOnly"] == true) && mount(pg).is_some_and(|m| m["readOnly"] != true),
        "the password file's volume: written by postgresql, read-only in the exporter".into(),
    );
    check(
        &mut problems,
        env(pg, "CITUS_WATCH_MONITORING_PASSWORD_FILE").is_some_and(|v| v["value"] == "/opt/citus/secrets/mon"),
        "the password watcher reads the monitoring key".into(),
    );
    check(
        &mut problems,
        env(pg, "CITUS_MONITORING_USER").is_some_and(|v| v["value"] == "prom"),
        "role script user".into(),
    );
    check(
        &mut problems,
        env(pg, "CITUS_MONITORING_PASSWORD").is_some_and(|v| v["valueFrom"]["secretKeyRef"]["key"] == "mon"),
        "role script password".into(),
    );
    find(&docs, "ConfigMap", "my-citus-metrics-queries")?;

    // An upgrade whose Secret cannot be read may renew the monitoring password (set at every node start)...
    let helm = helm_engine::Helm::discover().map_err(|e| e.to_string())?;
    let mut upgrade = chart_tests::options(chart_tests::KUBE_VERSIONS[1]);
    upgrade.is_upgrade = true;
    let values = json!({"metrics": {"enabled": true}, "auth": {"postgresPassword": "a", "password": "b"}});
    let rendered = helm.render(&chart_tests::chart_dir(), &values, &upgrade).map_err(|e| e.to_string())?;
    check(&mut problems, rendered.documents().is_ok(), "upgrade renders with a new monitoring password".into());
    // ...never the superuser's.
    let values = json!({"metrics": {"enabled": true}, "auth": {"password": "b"}});
    check(
        &mut problems,
        helm.render(&chart_tests::chart_dir(), &values, &upgrade).is_err(),
        "upgrade keeps refusing a new postgres password".into(),
    );

    let without = render(&json!({}))?;
    let pg = container(find(&without, "StatefulSet", "my-citus-coordinator")?, "postgresql")?;
    check(&mut problems, env(pg, "CITUS_MONITORING_USER").is_none(), "no monitoring role without metrics".into());
    for values in [
        json!({"metrics": {"enabled": true, "username": "postgres"}}),
        json!({"metrics": {"enabled": true, "username": "citus"}}),
    ] {
        check(
            &mut problems,
            render(&values).is_err_and(|e| format!("{e:?}").contains("metrics.username")),
            format!("{values} is refused"),
        );
    }
    verdict(problems)
}

fn citus_images_default_to_amd64_nodes() -> Result<(), Failed> {
    let mut problems = Vec::new();
    let arch = |docs: &[Document], kind: &str, name: &str| -> Result<Value, Failed> {
        let doc = find(docs, kind, name)?;
        let spec = chart_tests::PodTemplate::of(doc).map(|t| t.spec().clone()).unwrap_or_default();
        Ok(spec["nodeSelector"]["kubernetes.io/arch"].clone())
    };
    let docs = render(&json!({"backup": {"enabled": true}}))?;
    for (kind, name) in [
        ("StatefulSet", "my-citus-coordinator"),
        ("StatefulSet", "my-citus-worker"),
        ("Job", "my-citus-register-workers"),
    ] {
        check(&mut problems, arch(&docs, kind, name)? == "amd64", format!("{kind} {name} on amd64 by default"));
    }
    check(
        &mut problems,
        arch(&docs, "CronJob", "my-citus-backup")?.is_null(),
        "the multi-arch backup image anywhere".into(),
    );
    let docs = render(&json!({"image": {"nodeArchitecture": "any"}, "worker": {"nodeSelector": {"disk": "ssd"}}}))?;
    let worker = find(&docs, "StatefulSet", "my-citus-worker")?;
    check(
        &mut problems,
        worker["spec"]["template"]["spec"]["nodeSelector"] == json!({"disk": "ssd"}),
        "nodeArchitecture any: only the user's selector".into(),
    );
    let docs = render(&json!({"worker": {"nodeSelector": {"kubernetes.io/arch": "arm64"}}}))?;
    check(
        &mut problems,
        arch(&docs, "StatefulSet", "my-citus-worker")? == "arm64",
        "the user's kubernetes.io/arch wins".into(),
    );
    let docs = render(&json!({"image": {"repository": "example/citus"}}))?;
    check(
        &mut problems,
        arch(&docs, "StatefulSet", "my-citus-worker")?.is_null(),
        "other repositories: no constraint".into(),
    );
    verdict(problems)
}

/// Every `citus_*` metric the dashboard and the alerts query is one the queries file defines.
fn dashboard_and_alerts_use_exported_metrics() -> Result<(), Failed> {
    let docs = render(&json!({
        "metrics": {"enabled": true, "prometheusRule": {"enabled": true}, "grafanaDashboard": {"enabled": true}},
        "backup": {"enabled": true},
    }))?;
    let queries: Value = serde_yaml::from_str(
        find(&docs, "ConfigMap", "my-citus-metrics-queries")?["data"]["queries.yaml"].as_str().unwrap_or_default(),
    )
    .map_err(|e| e.to_string())?;
    let mut defined = BTreeSet::new();
    for (query, spec) in queries.as_object().into_iter().flatten() {
        for column in spec["metrics"].as_array().into_iter().flatten() {
            if let Some((name, def)) = column.as_object().and_then(|m| m.iter().next()) {
                if def["usage"] != "LABEL" {
                    defined.insert(format!("{query}_{name}"));
                }
            }
        }
    }
    let dashboard = find(&docs, "ConfigMap", "my-citus-grafana-dashboard")?["data"]["citus.json"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let dashboard: Value = serde_json::from_str(&dashboard).map_err(|e| format!("dashboard JSON: {e}"))?;
    let mut exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect();
    let rule = docs.iter().find(|d| d.kind() == "PrometheusRule").ok_or("no PrometheusRule")?;
    exprs.extend(
        rule.value["spec"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .filter_map(|r| r["expr"].as_str().map(str::to_owned)),
    );
    let mut used = BTreeSet::new();
    for expr in &exprs {
        let mut rest = expr.as_str();
        while let Some(i) = rest.find("citus_") {
            let name: String = rest[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            rest = &rest[i + name.len()..];
            used.insert(name);
        }
    }
    let unknown: Vec<_> = used.difference(&defined).collect();
    if used.len() < 10 || !unknown.is_empty() {
        return Err(format!("metrics used {used:?}; not exported: {unknown:?}").into());
    }
    Ok(())
}

fn notes_tell_what_ingress_and_nodes_can_do() -> Result<(), Failed> {
    let helm = helm_engine::Helm::discover().map_err(|e| e.to_string())?;
    let options = chart_tests::options(chart_tests::KUBE_VERSIONS[1]);
    let notes = |values: Value| -> Result<String, Failed> {
        let rendered = helm.render(&chart_tests::chart_dir(), &values, &options).map_err(|e| e.to_string())?;
        Ok(rendered.notes().unwrap_or_default().to_owned())
    };
    let mut problems = Vec::new();
    let with = notes(json!({"ingress": {"enabled": true}, "metrics": {"enabled": true}}))?;
    check(&mut problems, with.contains("an Ingress carries HTTP only"), "Ingress note".into());
    check(&mut problems, with.contains("run on amd64 nodes only"), "architecture note".into());
    check(&mut problems, with.contains("scraped as role citus_monitor"), "monitoring role note".into());
    let without = notes(json!({"image": {"nodeArchitecture": "any"}}))?;
    check(
        &mut problems,
        !without.contains("Ingress carries") && !without.contains("nodes only"),
        format!("notes without both:\n{without}"),
    );
    verdict(problems)
}

/// `artifacthub.io/images` of Chart.yaml lists exactly the images the chart runs with every component on.
fn artifacthub_images_are_the_rendered_images() -> Result<(), Failed> {
    let chart_yaml = std::fs::read_to_string(chart_tests::chart_dir().join("Chart.yaml")).map_err(|e| e.to_string())?;
    let chart: Value = serde_yaml::from_str(&chart_yaml).map_err(|e| e.to_string())?;
    let listed: Value =
        serde_yaml::from_str(chart["annotations"]["artifacthub.io/images"].as_str().ok_or("no artifacthub.io/images")?)
            .map_err(|e| e.to_string())?;
    let listed: BTreeSet<String> =
        listed.as_array().into_iter().flatten().filter_map(|i| i["image"].as_str().map(str::to_owned)).collect();
    let docs = render(
        &json!({"metrics": {"enabled": true}, "backup": {"enabled": true}, "volumePermissions": {"enabled": true}}),
    )?;
    let rendered: BTreeSet<String> = docs
        .iter()
        .filter_map(|d| d.pod_template().map(|t| t.spec().clone()))
        .flat_map(|spec| {
            chart_tests::containers(&spec).filter_map(|c| c["image"].as_str().map(str::to_owned)).collect::<Vec<_>>()
        })
        .collect();
    if listed != rendered {
        return Err(format!("Chart.yaml lists {listed:?}, the chart renders {rendered:?}").into());
    }
    Ok(())
}

/// The age CitusBackupTooOld allows: the longest gap of backup.schedule plus an hour, or the explicit value.
fn backup_age_allowed_by_the_schedule() -> Result<(), Failed> {
    let mut problems = Vec::new();
    for (schedule, explicit, seconds) in [
        ("0 2 * * *", 0, 90_000),
        ("0 */6 * * *", 0, 25_200),
        ("*/15 * * * *", 0, 7_200),
        ("30 3 * * 0", 0, 608_400),
        ("0 1 1 * *", 0, 2_682_000),
        ("@hourly", 0, 7_200),
        ("@weekly", 0, 608_400),
        ("0 2 * * *", 3_600, 3_600),
    ] {
        let docs = render(&json!({
            "metrics": {"enabled": true, "prometheusRule": {"enabled": true, "backupMaxAgeSeconds": explicit}},
            "backup": {"enabled": true, "schedule": schedule},
        }))?;
        let rule = docs.iter().find(|d| d.kind() == "PrometheusRule").ok_or("no PrometheusRule")?;
        let expr = rule.value["spec"]["groups"][0]["rules"]
            .as_array()
            .and_then(|rules| rules.iter().find(|r| r["alert"] == "CitusBackupTooOld"))
            .and_then(|r| r["expr"].as_str())
            .unwrap_or_default()
            .to_owned();
        check(&mut problems, expr.ends_with(&format!("> {seconds}")), format!("{schedule:?} / {explicit}: {expr}"));
    }
    let without_backups = render(&json!({"metrics": {"enabled": true, "prometheusRule": {"enabled": true}}}))?;
    let rule = without_backups.iter().find(|d| d.kind() == "PrometheusRule").ok_or("no PrometheusRule")?;
    check(&mut problems, !rule.value.to_string().contains("CitusBackup"), "no backup alerts without backups".into());
    verdict(problems)
}
