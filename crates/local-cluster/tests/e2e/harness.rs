//! What the node does with the chart's pods, on the control plane: the exporter sidecar with its HTTP probes,
//! the volumePermissions init container, two releases side by side, a StatefulSet scaled outside Helm, a
//! liveness probe restarting a container, a Pending pod, a network cut, and an image tag mapped to another
//! Citus build.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use helm_engine::ReleaseOptions;
use nix::sys::signal::{kill, Signal};
use serde_json::json;

use crate::citus_cluster::{assert_registered, load_tables};
use crate::util::{self, Env, SOCKET};
use testbed::{Space, NODES};

crate::scenarios!(Node:
    metrics_sidecar_is_scraped_with_pg_up_on_every_node,
    volume_permissions_init_container_fixes_a_root_owned_claim,
    two_releases_run_side_by_side,
    a_worker_scaled_outside_helm_gets_its_pod,
    a_failing_liveness_probe_restarts_the_container,
    a_pending_pod_has_no_address_and_starts_when_released,
    a_network_cut_stops_traffic_between_two_pods_until_healed;
    TwoCitus: an_image_tag_maps_to_its_citus_build);

/// One coordinator and one worker.
fn small() -> serde_json::Value {
    json!({"worker": {"replicaCount": 1}})
}

/// The value of the `postgresql` container's restart count of `pod`.
fn restarts(space: &Space, pod: &str) -> anyhow::Result<u32> {
    let path = "{.status.containerStatuses[?(@.name==\"postgresql\")].restartCount}";
    Ok(space.jsonpath(&format!("pod/{pod}"), path)?.parse()?)
}

fn metrics_sidecar_is_scraped_with_pg_up_on_every_node(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "node-metrics", Some("restricted"))?;
    // The stand-in for the exporter image is Debian's exporter 0.11.1: the tag says so, so that the chart
    // passes it the flags that version knows.
    space.install(json!({"metrics": {"enabled": true, "image": {"tag": "v0.11.1"}}}))?;
    // Ready means both containers are: the exporter's httpGet readiness probe passed too.
    space.wait_ready(&NODES, util::READY)?;
    space.wait_serving(util::SERVING)?;
    for pod in NODES {
        let body = space.http_get(pod, 9187, "/metrics")?;
        ensure!(
            body.lines().any(|l| l.trim() == "pg_up 1"),
            "{pod}: no `pg_up 1` in the exporter's metrics:\n{}",
            &body[..body.len().min(2000)]
        );
    }
    // Give every custom query something to report: tables, a finished rebalance job (worker-2 emptied
    // and given back), the cleanup records its moves leave.
    load_tables(&space)?;
    let w2 = util::worker_host(&space.ns, 2);
    space.sql(&format!(
        "SELECT citus_set_node_property('{w2}', 5432, 'shouldhaveshards', false); \
         SELECT citus_rebalance_start(shard_transfer_mode := 'block_writes') \\g /dev/null\n\
         SELECT citus_rebalance_wait(); \
         SELECT citus_set_node_property('{w2}', 5432, 'shouldhaveshards', true);"
    ))?;
    let queries = space.jsonpath("configmap/my-citus-metrics-queries", "{.data.queries\\.yaml}")?;
    let prefixes: Vec<&str> = queries
        .lines()
        .filter_map(|l| l.strip_suffix(':').filter(|k| !k.starts_with([' ', '#']) && !k.is_empty()))
        .collect();
    ensure!(prefixes.len() >= 10, "only {} custom queries found: {prefixes:?}", prefixes.len());
    let body = space.http_get(util::COORDINATOR, 9187, "/metrics")?;
    let missing: Vec<&&str> =
        prefixes.iter().filter(|p| !body.lines().any(|l| l.starts_with(&format!("{p}_")))).collect();
    ensure!(missing.is_empty(), "custom queries without series on the coordinator: {missing:?}");
    ensure!(
        body.lines().any(|l| l.starts_with("pg_exporter_last_scrape_error") && l.ends_with(" 0")),
        "the coordinator's scrape reported an error"
    );
    println!("{} custom queries answer on the coordinator: {}", prefixes.len(), prefixes.join(", "));
    Ok(())
}

fn volume_permissions_init_container_fixes_a_root_owned_claim(env: &Env) -> anyhow::Result<()> {
    // Without fsGroup nothing changes the new (root:root 0755) volume: uid 1001 cannot create PGDATA in it.
    let no_fs_group = json!({
        "coordinator": {"podSecurityContext": {"enabled": false}},
        "worker": {"replicaCount": 1, "podSecurityContext": {"enabled": false}},
        "workerRegistration": {"backoffLimit": 0, "activeDeadlineSeconds": 30},
    });
    {
        let space = Space::create(env.postgres()?, "node-no-fsgroup", None)?;
        if space.install(no_fs_group.clone()).is_ok() {
            bail!("the release installed although PGDATA cannot be created in a root-owned volume");
        }
        let ready = space
            .jsonpath(&format!("pod/{}", util::COORDINATOR), "{.status.conditions[?(@.type==\"Ready\")].status}")?;
        ensure!(ready != "True", "PGDATA was created in a root-owned volume without fsGroup or volumePermissions");
    }
    let space = Space::create(env.postgres()?, "node-volume-permissions", None)?;
    let mut values = no_fs_group;
    values["volumePermissions"] = json!({"enabled": true});
    space.install(values)?;
    space.wait_ready(&NODES[..2], util::READY)?;
    let log = space.agent.log(&space.ns, util::COORDINATOR)?;
    ensure!(
        log.contains("container volume-permissions starts") && log.contains("as uid 0"),
        "the init container did not run as root first:\n{log}"
    );
    assert_registered(&space, 1)?;
    Ok(())
}

fn two_releases_run_side_by_side(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "node-two-releases", None)?;
    space.install(small())?;
    let options = ReleaseOptions { timeout_seconds: Some(600), ..ReleaseOptions::default() };
    space
        .helm
        .install(&util::chart_dir(), "other", &util::values(small()), &options)
        .with_context(|| space.diagnose())?;
    let (mine, theirs) = ("my-citus-coordinator-0", "other-citus-coordinator-0");
    space.wait_ready(&[mine, "my-citus-worker-0", theirs, "other-citus-worker-0"], util::READY)?;
    util::psql(&space, mine, &SOCKET, "CREATE TABLE mine (id int); SELECT create_distributed_table('mine', 'id')")?;
    for (coordinator, worker) in [(mine, "my-citus-worker-0"), (theirs, "other-citus-worker-0")] {
        let nodes = util::psql(&space, coordinator, &SOCKET, "SELECT string_agg(nodename, ',' ORDER BY nodeid) FROM pg_dist_node WHERE noderole = 'primary' AND groupid > 0")?;
        ensure!(nodes.starts_with(worker), "{coordinator} registered {nodes}, not its own {worker}");
    }
    let found = util::psql(&space, theirs, &SOCKET, "SELECT count(*) FROM pg_class WHERE relname = 'mine'")?;
    ensure!(found == "0", "a table of release my-citus appeared in release other");
    space.helm.uninstall("other")?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let pods = space.jsonpath("pods", "{.items[*].metadata.name}")?;
        let left: Vec<&str> =
            pods.split_whitespace().filter(|p| p.starts_with("other-citus-") && !p.contains("register")).collect();
        if left.is_empty() {
            ensure!(pods.split_whitespace().any(|p| p == mine), "uninstalling release other removed {mine}");
            break;
        }
        ensure!(Instant::now() < deadline, "pods of release other left 120 s after its uninstall: {left:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

fn a_worker_scaled_outside_helm_gets_its_pod(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "node-scaled", None)?;
    space.install(small())?;
    space.kubectl(&["scale", "statefulset", "my-citus-worker", "--replicas=2"])?;
    space.kubectl(&["rollout", "status", "statefulset/my-citus-worker", "--timeout=180s"])?;
    let name = util::worker_host(&space.ns, 1);
    space
        .kubectl(&["exec", util::COORDINATOR, "--", "getent", "hosts", &name])
        .context("the new pod has no DNS name")?;
    ensure!(space.sql_in("my-citus-worker-1", "SELECT 1")? == "1", "worker-1 does not answer");
    let old = space.jsonpath("pod/my-citus-worker-1", "{.metadata.uid}")?;
    space.kubectl(&["delete", "pod", "my-citus-worker-1", "--wait=true"])?;
    space.wait_recreated("my-citus-worker-1", &old, util::READY)?;
    Ok(())
}

fn a_failing_liveness_probe_restarts_the_container(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "node-liveness", None)?;
    // An impatient liveness probe, kept off the first start (initdb) by a startup probe, as it should be.
    let liveness = json!({"initialDelaySeconds": 1, "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 2});
    let startup = json!({"enabled": true, "initialDelaySeconds": 1, "periodSeconds": 1, "failureThreshold": 300});
    space.install(json!({"worker": {"replicaCount": 1, "livenessProbe": liveness, "startupProbe": startup}}))?;
    // Freeze the postmaster: it stays alive but answers nothing, which only a liveness probe notices.
    let pod = "my-citus-worker-0";
    space.wait_ready(&[pod], util::READY)?;
    let postmaster = space
        .agent
        .processes(&space.ns, pod)?
        .into_iter()
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.starts_with(b"postgres\0") && c.windows(11).any(|w| w == b"config_file"))
        })
        .context("no postmaster in the worker pod")?;
    let before = restarts(&space, pod)?;
    kill(postmaster, Signal::SIGSTOP)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while restarts(&space, pod)? == before {
        ensure!(Instant::now() < deadline, "the node did not restart the frozen container in 60 s");
        std::thread::sleep(Duration::from_millis(500));
    }
    space.wait_ready(&[pod], util::READY)?;
    let out = space.sql_in(pod, "SELECT 1")?;
    ensure!(out == "1", "the restarted worker answers {out}");
    Ok(())
}

fn a_pending_pod_has_no_address_and_starts_when_released(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "node-pending", None)?;
    space.install(json!({"worker": {"replicaCount": 2}}))?;
    let pod = "my-citus-worker-1";
    space.agent.hold_pending(&space.ns, pod);
    let old = space.jsonpath(&format!("pod/{pod}"), "{.metadata.uid}")?;
    space.kubectl(&["delete", "pod", pod, "--wait=true"])?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let address = loop {
        let state = space.jsonpath(&format!("pod/{pod}"), "{.metadata.uid} {.status.phase} {.status.podIP}");
        if let Ok(state) = state {
            let words: Vec<&str> = state.split_whitespace().collect();
            if words.first() != Some(&old.as_str()) && words.get(1) == Some(&"Pending") {
                break words.get(2).map(|a| (*a).to_owned());
            }
        }
        ensure!(Instant::now() < deadline, "the recreated {pod} is not Pending after 30 s");
        std::thread::sleep(Duration::from_millis(200));
    };
    ensure!(address.is_none(), "a Pending pod has an address: {address:?}");
    let name = util::worker_host(&space.ns, 1);
    let lookup = space.run(util::COORDINATOR, &["getent", "hosts", &name], &[], None)?;
    ensure!(!lookup.status.success(), "a Pending pod has a DNS name: {}", lookup.stdout);
    let waited = space.wait_ready(&[pod], Duration::from_secs(5));
    ensure!(waited.is_err(), "a Pending pod reported Ready");
    space.agent.release_pending(&space.ns, pod);
    space.wait_ready(&[pod], util::READY)?;
    Ok(())
}

fn a_network_cut_stops_traffic_between_two_pods_until_healed(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "node-network-cut", None)?;
    space.install(json!({"worker": {"replicaCount": 2}}))?;
    let coordinator = util::coordinator_host(&space.ns);
    let reach = |worker: u32| -> anyhow::Result<bool> {
        let sql = format!(
            "SELECT result FROM run_command_on_workers('SELECT 1') WHERE nodename = '{}'",
            util::worker_host(&space.ns, worker)
        );
        let login = util::tcp(&coordinator, "postgres", util::POSTGRES_PASSWORD);
        Ok(util::try_psql(
            &space,
            util::COORDINATOR,
            &login,
            &format!("SET citus.node_connection_timeout = 2000; {sql}"),
        )?
        .is_ok_and(|out| out.ends_with('1')))
    };
    ensure!(reach(0)? && reach(1)?, "the coordinator cannot reach its workers before the cut");
    space.agent.cut(&space.ns, util::COORDINATOR, "my-citus-worker-1")?;
    ensure!(!reach(1)?, "the coordinator still reaches worker-1 through the cut");
    ensure!(reach(0)?, "the cut also stopped traffic to worker-0");
    space.agent.heal(&space.ns, util::COORDINATOR, "my-citus-worker-1")?;
    ensure!(reach(1)?, "worker-1 is unreachable after the cut healed");
    Ok(())
}

fn an_image_tag_maps_to_its_citus_build(env: &Env) -> anyhow::Result<()> {
    let tag = env.upgrade_tag.as_deref().context("no upgrade tag")?;
    let space = Space::create(env.postgres()?, "node-image-tag", None)?;
    space.install(json!({"worker": {"replicaCount": 1}, "image": {"tag": tag}}))?;
    for pod in &NODES[..2] {
        let version = space.sql_in(pod, "SELECT citus_version()")?;
        ensure!(version.contains(&format!("Citus {tag}")), "{pod} runs {version}, not the build mapped to tag {tag}");
    }
    Ok(())
}
