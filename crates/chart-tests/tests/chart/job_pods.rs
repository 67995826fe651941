//! The chart's Job, CronJob and test pods next to the node pods: the same user settings apply to them.

use serde_json::{json, Value};

use crate::util::render;

/// Review D13: every pod the chart renders follows the user's security and scheduling settings. With the
/// security contexts off the platform assigns the ids (OpenShift), so no Job or test pod may fix them; Job
/// pods run where the coordinator may run (tolerations, nodeSelector) and with its priority class.
#[test]
fn job_and_test_pods_follow_the_coordinators_security_and_scheduling_settings() {
    let docs = render(&json!({
        "backup": {"enabled": true},
        "coordinator": {
            "containerSecurityContext": {"enabled": false},
            "podSecurityContext": {"enabled": false},
            "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
            "nodeSelector": {"pool": "db"},
            "priorityClassName": "db-critical",
        },
    }));
    let pods: Vec<(String, &Value)> = docs
        .iter()
        .filter_map(|d| {
            let spec = match d.kind() {
                "Job" => &d.value["spec"]["template"]["spec"],
                "CronJob" => &d.value["spec"]["jobTemplate"]["spec"]["template"]["spec"],
                "Pod" => &d.value["spec"],
                _ => return None,
            };
            Some((format!("{} {}", d.kind(), d.name()), spec))
        })
        .collect();
    assert!(pods.len() >= 4, "Job, CronJob and test pods: {:?}", pods.iter().map(|p| &p.0).collect::<Vec<_>>());
    for (name, spec) in pods {
        let fixed_ids = [&spec["securityContext"]["fsGroup"], &spec["securityContext"]["runAsUser"]]
            .into_iter()
            .chain(
                spec["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|c| [&c["securityContext"]["runAsUser"], &c["securityContext"]["runAsGroup"]]),
            )
            .any(|v| !v.is_null());
        assert!(!fixed_ids, "{name} fixes ids although the security contexts are off: {spec}");
        assert_eq!(spec["tolerations"][0]["key"], "dedicated", "{name}: {spec}");
        assert_eq!(spec["nodeSelector"]["pool"], "db", "{name}: {spec}");
        assert_eq!(spec["priorityClassName"], "db-critical", "{name}: {spec}");
    }
}

/// `kubectl citus backup list` runs its listing in a Job made from the backup CronJob and reads the volume at
/// `$BACKUP_DIR`: that must be where the CronJob mounts the `backups` volume.
#[test]
fn the_backup_cronjob_says_where_it_mounts_the_backups() {
    let docs = render(&json!({"backup": {"enabled": true}}));
    let cron = docs.iter().find(|d| d.kind() == "CronJob").expect("backup CronJob");
    let container = &cron.value["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    let env =
        container["env"].as_array().and_then(|e| e.iter().find(|v| v["name"] == "BACKUP_DIR")).expect("BACKUP_DIR");
    let mount =
        container["volumeMounts"].as_array().and_then(|m| m.iter().find(|v| v["name"] == "backups")).expect("mount");
    assert_eq!(env["value"], mount["mountPath"], "{container}");
}
