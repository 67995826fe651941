//! The harness's own Kubernetes behaviours on the chart's pods: the exporter sidecar with its HTTP probes,
//! the volumePermissions init container, the backup CronJob run as a Job (new top-level mount path),
//! two releases side by side, a StatefulSet scaled outside Helm, a liveness probe restarting a container,
//! a Pending pod and a network cut.

use std::time::Duration;

use anyhow::{ensure, Context as _};
use nix::sys::signal::{kill, Signal};
use serde_json::json;

use crate::citus_cluster::{assert_registered, load_tables};
use crate::util::{self, Env, SOCKET};

crate::scenarios!(Citus:
    metrics_sidecar_is_scraped_with_pg_up_on_every_node,
    volume_permissions_init_container_fixes_a_root_owned_claim,
    backup_cronjob_run_as_a_job_writes_a_backup,
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

fn metrics_sidecar_is_scraped_with_pg_up_on_every_node(env: &Env) -> anyhow::Result<()> {
    let mut cluster = util::cluster(env.postgres()?)?;
    // The stand-in for the exporter image is Debian's exporter 0.11.1: the tag says so, so that the chart
    // passes it the flags that version knows.
    let values = util::values(json!({"metrics": {"enabled": true, "image": {"tag": "v0.11.1"}}}));
    let manifest = cluster.install(&values)?;
    // Ready means both containers are: the exporter's httpGet readiness probe passed too.
    cluster.wait_all_ready(util::READY)?;
    for pod in ["my-citus-coordinator-0", "my-citus-worker-0", "my-citus-worker-1", "my-citus-worker-2"] {
        let (status, body) = cluster.http_get(pod, 9187, "/metrics")?;
        ensure!(status == 200, "{pod}: /metrics answered {status}");
        ensure!(
            body.lines().any(|l| l.trim() == "pg_up 1"),
            "{pod}: no `pg_up 1` in the exporter's metrics:\n{}",
            &body[..body.len().min(2000)]
        );
    }
    // Give every custom query something to report: tables, a finished rebalance job (worker-2 emptied
    // and given back), the cleanup records its moves leave.
    load_tables(&cluster)?;
    let w2 = util::worker_fqdn(2);
    util::psql(
        &cluster,
        util::COORDINATOR,
        &SOCKET,
        &format!(
            "SELECT citus_set_node_property('{w2}', 5432, 'shouldhaveshards', false); \
             SELECT citus_rebalance_start(shard_transfer_mode := 'block_writes') \\g /dev/null\n\
             SELECT citus_rebalance_wait(); \
             SELECT citus_set_node_property('{w2}', 5432, 'shouldhaveshards', true);"
        ),
    )?;
    let queries = manifest
        .get("ConfigMap", "my-citus-metrics-queries")
        .and_then(|cm| cm.pointer("/data/queries.yaml"))
        .and_then(|q| q.as_str())
        .context("no queries.yaml in ConfigMap my-citus-metrics-queries")?;
    let prefixes: Vec<&str> = queries
        .lines()
        .filter_map(|l| l.strip_suffix(':').filter(|k| !k.starts_with([' ', '#']) && !k.is_empty()))
        .collect();
    ensure!(prefixes.len() >= 10, "only {} custom queries found: {prefixes:?}", prefixes.len());
    let (_, body) = cluster.http_get("my-citus-coordinator-0", 9187, "/metrics")?;
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
    let no_fs_group = json!({"coordinator": {"podSecurityContext": {"enabled": false}}, "worker": {"replicaCount": 1, "podSecurityContext": {"enabled": false}}});
    {
        let mut cluster = util::cluster(env.postgres()?)?;
        let manifest = cluster.render(&util::values(no_fs_group.clone()), false)?;
        cluster.apply_objects(&manifest)?;
        let pod = cluster.start_statefulset_pod(&manifest, "my-citus-coordinator", 0, None)?;
        let failed = cluster.wait_ready(&pod, Duration::from_secs(60));
        ensure!(failed.is_err(), "PGDATA was created in a root-owned volume without fsGroup or volumePermissions");
    }
    let mut cluster = util::cluster(env.postgres()?)?;
    let mut values = no_fs_group;
    values["volumePermissions"] = json!({"enabled": true});
    cluster.install(&util::values(values))?;
    cluster.wait_all_ready(util::READY)?;
    let log = cluster.logs("my-citus-coordinator-0")?;
    ensure!(
        log.contains("container volume-permissions starts") && log.contains("as uid 0"),
        "the init container did not run as root first:\n{log}"
    );
    assert_registered(&cluster, 1)?;
    Ok(())
}

fn backup_cronjob_run_as_a_job_writes_a_backup(env: &Env) -> anyhow::Result<()> {
    let mut cluster = util::cluster(env.postgres()?)?;
    cluster.install(&util::values(json!({"backup": {"enabled": true}})))?;
    cluster.wait_all_ready(util::READY)?;
    load_tables(&cluster)?;
    let report = cluster.create_job_from_cronjob("my-citus-backup", "my-citus-backup-manual")?;
    ensure!(report.attempts == 1, "the backup Job needed {} attempts", report.attempts);
    let claims = cluster.dir().join("claims");
    let claim = std::fs::read_dir(&claims)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().contains("backup")))
        .with_context(|| format!("no backup claim in {}", claims.display()))?;
    let backups: Vec<_> = std::fs::read_dir(&claim)?
        .flatten()
        .filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    ensure!(backups.len() == 1, "expected one backup in {}, found {}", claim.display(), backups.len());
    let files = std::fs::read_dir(backups[0].path())?.count();
    ensure!(files >= 2, "the backup {} holds {files} file(s)", backups[0].path().display());
    Ok(())
}

fn two_releases_run_side_by_side(env: &Env) -> anyhow::Result<()> {
    let mut cluster = util::cluster(env.postgres()?)?;
    cluster.install(&util::values(small()))?;
    cluster.install_release("other", &util::values(small()))?;
    cluster.wait_all_ready(util::READY)?;
    util::psql(
        &cluster,
        "my-citus-coordinator-0",
        &SOCKET,
        "CREATE TABLE mine (id int); SELECT create_distributed_table('mine', 'id')",
    )?;
    for (coordinator, worker) in
        [("my-citus-coordinator-0", "my-citus-worker-0"), ("other-citus-coordinator-0", "other-citus-worker-0")]
    {
        let nodes = util::psql(&cluster, coordinator, &SOCKET, "SELECT string_agg(nodename, ',' ORDER BY nodeid) FROM pg_dist_node WHERE noderole = 'primary' AND groupid > 0")?;
        ensure!(nodes.starts_with(worker), "{coordinator} registered {nodes}, not its own {worker}");
    }
    let theirs = util::psql(
        &cluster,
        "other-citus-coordinator-0",
        &SOCKET,
        "SELECT count(*) FROM pg_class WHERE relname = 'mine'",
    )?;
    ensure!(theirs == "0", "a table of release my-citus appeared in release other");
    cluster.uninstall("other")?;
    ensure!(
        cluster.pod("other-citus-coordinator-0").is_err() && cluster.pod("my-citus-coordinator-0").is_ok(),
        "uninstall removed the wrong pods"
    );
    Ok(())
}

fn a_worker_scaled_outside_helm_gets_its_pod(env: &Env) -> anyhow::Result<()> {
    let mut cluster = util::cluster(env.postgres()?)?;
    cluster.install(&util::values(small()))?;
    cluster.wait_all_ready(util::READY)?;
    cluster.scale_statefulset("my-citus-worker", 2)?;
    cluster.wait_ready("my-citus-worker-1", util::READY)?;
    let lookup = cluster.exec("my-citus-coordinator-0", &["getent", "hosts", &util::worker_fqdn(1)], &[], None)?;
    ensure!(lookup.status.success(), "the new pod has no DNS name");
    ensure!(util::psql(&cluster, "my-citus-worker-1", &SOCKET, "SELECT 1")? == "1", "worker-1 does not answer");
    cluster.delete_pod("my-citus-worker-1")?;
    cluster.wait_for("the controller to recreate worker-1", util::READY, |c| Ok(c.pod("my-citus-worker-1").is_ok()))?;
    cluster.wait_ready("my-citus-worker-1", util::READY)?;
    Ok(())
}

fn a_failing_liveness_probe_restarts_the_container(env: &Env) -> anyhow::Result<()> {
    let mut cluster = util::cluster(env.postgres()?)?;
    // An impatient liveness probe, kept off the first start (initdb) by a startup probe, as it should be.
    let liveness = json!({"initialDelaySeconds": 1, "periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 2});
    let startup = json!({"enabled": true, "initialDelaySeconds": 1, "periodSeconds": 1, "failureThreshold": 300});
    cluster.install(&util::values(
        json!({"worker": {"replicaCount": 1, "livenessProbe": liveness, "startupProbe": startup}}),
    ))?;
    cluster.wait_all_ready(util::READY)?;
    // Freeze the postmaster: it stays alive but answers nothing, which only a liveness probe notices.
    let pod = "my-citus-worker-0";
    let postmaster = cluster
        .pod(pod)?
        .processes()
        .into_iter()
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.starts_with(b"postgres\0") && c.windows(11).any(|w| w == b"config_file"))
        })
        .context("no postmaster in the worker pod")?;
    kill(postmaster, Signal::SIGSTOP)?;
    cluster.wait_for("the kubelet to restart the frozen container", Duration::from_secs(60), |c| {
        Ok(c.pod(pod)?.restarts().get("postgresql").copied().unwrap_or(0) >= 1)
    })?;
    cluster.wait_ready(pod, util::READY)?;
    let out = util::psql(&cluster, pod, &SOCKET, "SELECT 1")?;
    ensure!(out == "1", "the restarted worker answers {out}");
    Ok(())
}

fn a_pending_pod_has_no_address_and_starts_when_released(env: &Env) -> anyhow::Result<()> {
    let mut cluster = util::cluster(env.postgres()?)?;
    cluster.install(&util::values(json!({"worker": {"replicaCount": 2}})))?;
    cluster.wait_all_ready(util::READY)?;
    cluster.hold_pending("my-citus-worker-1");
    cluster.delete_pod("my-citus-worker-1")?;
    cluster.tick()?;
    ensure!(cluster.pod("my-citus-worker-1").is_err(), "a Pending pod runs");
    let lookup = cluster.exec("my-citus-coordinator-0", &["getent", "hosts", &util::worker_fqdn(1)], &[], None)?;
    ensure!(!lookup.status.success(), "a Pending pod has a DNS name: {}", lookup.stdout);
    ensure!(
        cluster.wait_all_ready(Duration::from_secs(5)).is_err_and(|e| e.to_string().contains("Pending")),
        "waiting for all pods did not name the Pending one"
    );
    cluster.release_pending("my-citus-worker-1")?;
    cluster.wait_ready("my-citus-worker-1", util::READY)?;
    Ok(())
}

fn a_network_cut_stops_traffic_between_two_pods_until_healed(env: &Env) -> anyhow::Result<()> {
    let mut cluster = util::cluster(env.postgres()?)?;
    cluster.install(&util::values(json!({"worker": {"replicaCount": 2}})))?;
    cluster.wait_all_ready(util::READY)?;
    let reach = |cluster: &local_cluster::Cluster, worker: u32| -> anyhow::Result<bool> {
        let sql = format!(
            "SELECT result FROM run_command_on_workers('SELECT 1') WHERE nodename = '{}'",
            util::worker_fqdn(worker)
        );
        let login = util::tcp(util::COORDINATOR_FQDN, "postgres", util::POSTGRES_PASSWORD);
        Ok(util::try_psql(
            cluster,
            "my-citus-coordinator-0",
            &login,
            &format!("SET citus.node_connection_timeout = 2000; {sql}"),
        )?
        .is_ok_and(|out| out.ends_with('1')))
    };
    ensure!(reach(&cluster, 0)? && reach(&cluster, 1)?, "the coordinator cannot reach its workers before the cut");
    cluster.cut_network("my-citus-coordinator-0", "my-citus-worker-1")?;
    ensure!(!reach(&cluster, 1)?, "the coordinator still reaches worker-1 through the cut");
    ensure!(reach(&cluster, 0)?, "the cut also stopped traffic to worker-0");
    cluster.heal_network("my-citus-coordinator-0", "my-citus-worker-1")?;
    ensure!(reach(&cluster, 1)?, "worker-1 is unreachable after the cut healed");
    Ok(())
}

fn an_image_tag_maps_to_its_citus_build(env: &Env) -> anyhow::Result<()> {
    let tag = env.upgrade_tag.as_deref().context("no upgrade tag")?;
    let mut cluster = util::cluster(env.postgres()?)?;
    cluster.install(&util::values(json!({"worker": {"replicaCount": 1}, "image": {"tag": tag}})))?;
    cluster.wait_all_ready(util::READY)?;
    for pod in ["my-citus-coordinator-0", "my-citus-worker-0"] {
        let version = util::psql(&cluster, pod, &SOCKET, "SELECT citus_version()")?;
        ensure!(version.contains(&format!("Citus {tag}")), "{pod} runs {version}, not the build mapped to tag {tag}");
    }
    Ok(())
}
