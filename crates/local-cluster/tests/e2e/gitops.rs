//! GitOps and passwords: a first Argo CD-style sync (pre-upgrade hooks before any object exists), renders
//! that keep the Secret stable, and a password rotation through the Secret alone.

use anyhow::{ensure, Context as _};
use local_cluster::HookEvent;
use serde_json::json;

use crate::scaling::job_logs;
use crate::util::Env;
use crate::util::{self, COORDINATOR, COORDINATOR_SERVICE, SOCKET};

crate::scenarios!(Citus: first_argo_sync_runs_the_pre_upgrade_hooks_before_the_secret_exists, password_rotation_through_the_secret_leaves_a_working_cluster; Postgres: renders_without_cluster_access_keep_given_passwords);

fn first_argo_sync_runs_the_pre_upgrade_hooks_before_the_secret_exists(env: &Env) -> anyhow::Result<()> {
    let postgres = env.postgres()?;
    let mut cluster = util::cluster(postgres)?;
    let values = util::values(json!({}));
    // Argo CD runs pre-install and pre-upgrade hooks alike as PreSync, before it applies anything.
    let manifest = cluster.render(&values, true)?;
    let started = std::time::Instant::now();
    cluster.run_hooks(&manifest, HookEvent::PreUpgrade).context("the drain hook of a first sync failed")?;
    ensure!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "the drain hook of a first sync took {:?}",
        started.elapsed()
    );
    let log = job_logs(&cluster, "my-citus-drain-workers-r")?;
    ensure!(
        log.contains("no password Secret and no coordinator yet"),
        "the drain hook did not recognise a first sync:\n{log}"
    );

    // The same release then installs and registers, and a later sync's drain hook removes nothing.
    cluster.install(&values)?;
    cluster.wait_all_ready(util::READY)?;
    crate::citus_cluster::assert_registered(&cluster, 3)?;
    cluster.upgrade(&values)?;
    let log = job_logs(&cluster, "my-citus-drain-workers-r")?;
    ensure!(log.contains("no registered worker at ordinal 3 or above: nothing to drain"), "{log}");
    crate::citus_cluster::assert_registered(&cluster, 3)?;
    Ok(())
}

fn renders_without_cluster_access_keep_given_passwords(env: &Env) -> anyhow::Result<()> {
    let postgres = env.postgres()?;
    let mut cluster = util::cluster(postgres)?;
    let secret_data =
        |m: &local_cluster::Manifest| m.get("Secret", "my-citus-secret").and_then(|s| s.get("data")).cloned();
    // Explicit passwords: every render (as Argo CD makes at every sync) carries the same Secret.
    let values = util::values(json!({}));
    let first = secret_data(&cluster.render(&values, false)?).context("no Secret")?;
    let again = secret_data(&cluster.render(&values, true)?).context("no Secret")?;
    ensure!(first == again, "the Secret changed between renders");
    // existingSecret: the chart renders no Secret at all, every pod and hook reads the named one.
    let existing = json!({"auth": {"existingSecret": "vault-synced", "postgresPassword": "", "password": ""}});
    let manifest = cluster.render(&util::values(existing), true)?;
    ensure!(secret_data(&manifest).is_none(), "a Secret is rendered although auth.existingSecret is set");
    let text = serde_json::to_string(manifest.documents())?;
    ensure!(text.contains("\"vault-synced\""), "nothing refers to the existing Secret");
    Ok(())
}

fn password_rotation_through_the_secret_leaves_a_working_cluster(env: &Env) -> anyhow::Result<()> {
    let postgres = env.postgres()?;
    let mut cluster = util::cluster(postgres)?;
    cluster.install(&util::values(json!({})))?;
    cluster.wait_all_ready(util::READY)?;
    crate::citus_cluster::load_tables(&cluster)?;

    let (new_super, new_app) = ("rotated:super\\2", "rotated app 'pw'");
    cluster.set_secret_value("my-citus-secret", "postgres-password", new_super)?;
    cluster.set_secret_value("my-citus-secret", "password", new_app)?;
    // Here the Secret reaches a node when it starts (the harness writes Secret volumes per start); on
    // Kubernetes the kubelet updates the volume in place and the entrypoint's watcher applies it.
    for pod in cluster.pod_names() {
        cluster.restart_pod(&pod)?;
    }
    cluster.wait_all_ready(util::READY)?;

    for pod in cluster.pod_names() {
        let host = if pod == COORDINATOR {
            util::COORDINATOR_FQDN.to_owned()
        } else {
            let n: u32 = pod.trim_start_matches("my-citus-worker-").parse()?;
            util::worker_fqdn(n)
        };
        for (user, new, old) in
            [("postgres", new_super, util::POSTGRES_PASSWORD), ("citus", new_app, util::APP_PASSWORD)]
        {
            util::psql(&cluster, COORDINATOR, &util::tcp(&host, user, new), "SELECT 1")
                .with_context(|| format!("{user} with the new password on {pod}"))?;
            let refused = util::try_psql(&cluster, COORDINATOR, &util::tcp(&host, user, old), "SELECT 1")?;
            ensure!(refused.is_err(), "{user} still logs in to {pod} with the old password");
        }
    }
    // Distributed queries and metadata changes need the nodes' own connections to each other.
    let app = util::tcp(COORDINATOR_SERVICE, "citus", new_app);
    let got = util::psql(&cluster, COORDINATOR, &app, "SELECT count(*) FROM events JOIN kinds USING (kind)")?;
    ensure!(got == crate::citus_cluster::ROWS.to_string(), "join after rotation: {got}");
    util::psql(
        &cluster,
        COORDINATOR,
        &app,
        "CREATE TABLE after_rotation (id bigint PRIMARY KEY);\n\
         SELECT create_distributed_table('after_rotation', 'id') \\g /dev/null\n\
         INSERT INTO after_rotation SELECT generate_series(1, 100);",
    )?;
    let spread = util::psql(
        &cluster,
        COORDINATOR,
        &SOCKET,
        "SELECT count(DISTINCT nodename) FROM citus_shards WHERE table_name = 'after_rotation'::regclass",
    )?;
    ensure!(spread == "3", "after_rotation on {spread} workers");
    // The chart's own Jobs read the rotated Secret.
    let manifest = cluster.render(&util::values(json!({})), true)?;
    cluster.run_hooks(&manifest, HookEvent::PostUpgrade)?;
    Ok(())
}
