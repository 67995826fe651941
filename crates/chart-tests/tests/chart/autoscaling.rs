//! Under autoscaling the HPA owns the worker count and only adds workers, so no render may shrink the workers
//! that run. These renders have no cluster access (as `helm template` and Argo CD): `lookup` sees no live
//! StatefulSet, so the workers kept are the larger of minReplicas and replicaCount, and the upgrade's drain
//! hook keeps every ordinal below maxReplicas. A rollback applies its revision's replicas: its own drain hook
//! drains down to them (review D2).

use helm_engine::Document;
use serde_json::{json, Value};

use crate::util::render;

/// What a render does with the workers.
#[derive(Debug, PartialEq, Eq)]
struct Workers {
    /// spec.replicas of the worker StatefulSet.
    replicas: u64,
    /// Workers the registration Job registers.
    registered: usize,
    /// The drain hook removes the registered workers at this ordinal and above.
    drain_target: String,
    /// The same for a `helm rollback` to this revision, where it differs (its own Job).
    rollback_target: Option<String>,
}

fn object<'a>(docs: &'a [Document], kind: &str, name: &str) -> &'a Value {
    &docs.iter().find(|d| d.kind() == kind && d.name() == name).unwrap_or_else(|| panic!("no {kind} {name}")).value
}

fn env<'a>(job: &'a Value, var: &str) -> &'a str {
    job["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .and_then(|env| env.iter().find(|e| e["name"] == var))
        .and_then(|e| e["value"].as_str())
        .unwrap_or_else(|| panic!("no env {var}"))
}

fn workers(docs: &[Document]) -> Workers {
    let register = object(docs, "Job", "my-citus-register-workers");
    let drain = object(docs, "Job", "my-citus-drain-workers-r1");
    let rollback = docs.iter().find(|d| d.kind() == "Job" && d.name() == "my-citus-drain-workers-rollback-r1");
    let hooks = |job: &Value| job["metadata"]["annotations"]["helm.sh/hook"].as_str().unwrap_or_default().to_owned();
    match rollback {
        Some(r) => assert_eq!((hooks(drain), hooks(&r.value)), ("pre-upgrade".into(), "pre-rollback".into())),
        None => assert_eq!(hooks(drain), "pre-upgrade,pre-rollback"),
    }
    Workers {
        replicas: object(docs, "StatefulSet", "my-citus-worker")["spec"]["replicas"].as_u64().expect("replicas"),
        registered: env(register, "CITUS_WORKER_HOSTS").split_whitespace().count(),
        drain_target: env(drain, "CITUS_WORKER_TARGET").to_owned(),
        rollback_target: rollback.map(|r| env(&r.value, "CITUS_WORKER_TARGET").to_owned()),
    }
}

#[test]
fn under_autoscaling_the_workers_never_render_below_replica_count_or_min_replicas() {
    // (replicaCount, minReplicas, maxReplicas, StatefulSet replicas)
    let cases = [(4, 2, 6, 4), (1, 3, 6, 3), (6, 6, 6, 6), (0, 2, 6, 2), (3, 1, 10, 3)];
    for (count, min, max, kept) in cases {
        let values = json!({"worker": {"replicaCount": count,
            "autoscaling": {"enabled": true, "minReplicas": min, "maxReplicas": max}}});
        let docs = render(&values);
        let got = workers(&docs);
        let want = Workers {
            replicas: kept,
            registered: kept as usize,
            drain_target: max.to_string(),
            rollback_target: Some(kept.to_string()),
        };
        assert_eq!(got, want, "{values}");
        let hpa = &object(&docs, "HorizontalPodAutoscaler", "my-citus-worker")["spec"];
        assert_eq!((hpa["minReplicas"].clone(), hpa["maxReplicas"].clone()), (json!(min), json!(max)), "{values}");
        assert_eq!(hpa["behavior"]["scaleDown"]["selectPolicy"], "Disabled", "the HPA must never scale in");
    }
}

#[test]
fn without_autoscaling_replica_count_is_the_count_and_the_drain_target() {
    let docs = render(&json!({"worker": {"replicaCount": 4, "autoscaling": {"minReplicas": 6, "maxReplicas": 8}}}));
    assert_eq!(workers(&docs), Workers { replicas: 4, registered: 4, drain_target: "4".into(), rollback_target: None });
    assert!(!docs.iter().any(|d| d.kind() == "HorizontalPodAutoscaler"), "an HPA without autoscaling");
}
