//! Credential variants: an existing Secret mounted as files, a worker whose data directory was initialised
//! with another password than the one the registration Job uses, and a login role of the user's own, which
//! runs multi-shard queries once its password is in pg_dist_authinfo, as the README says (review D6).

use anyhow::{ensure, Context as _};
use local_cluster::HookEvent;
use serde_json::json;

use crate::citus_cluster::{assert_registered, load_tables};
use crate::util::Env;
use crate::util::{self, APP_PASSWORD, POSTGRES_PASSWORD};

crate::scenarios!(Citus: existing_secret_as_password_files_forms_the_same_cluster, a_worker_with_another_password_fails_the_job_naming_it, a_role_of_the_users_own_runs_multi_shard_queries_once_its_password_is_in_pg_dist_authinfo);

fn existing_secret_as_password_files_forms_the_same_cluster(env: &Env) -> anyhow::Result<()> {
    let postgres = env.postgres()?;
    let mut cluster = util::cluster(postgres)?;
    cluster.add_object(&json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "citus-credentials", "namespace": "citus"},
        "stringData": {"postgres-password": POSTGRES_PASSWORD, "password": APP_PASSWORD},
    }))?;
    let values = json!({"auth": {"existingSecret": "citus-credentials", "usePasswordFiles": true}});
    let manifest = cluster.install(&values)?;
    ensure!(manifest.get("Secret", "my-citus-secret").is_none(), "the chart rendered its own Secret");
    cluster.wait_all_ready(util::READY)?;
    assert_registered(&cluster, 3)?;
    load_tables(&cluster)?;
    let files = cluster.exec(util::COORDINATOR, &["ls", "/opt/citus/secrets"], &[], None)?;
    ensure!(files.stdout.split_whitespace().eq(["password", "postgres-password"]), "secret files: {}", files.stdout);
    cluster.helm_test(&manifest)?;
    Ok(())
}

fn a_worker_with_another_password_fails_the_job_naming_it(env: &Env) -> anyhow::Result<()> {
    let postgres = env.postgres()?;
    let mut cluster = util::cluster(postgres)?;
    let values = util::values(json!({"workerRegistration": {"backoffLimit": 1, "activeDeadlineSeconds": 120}}));
    let manifest = cluster.render(&values, false)?;
    // worker-2's first start sees another Secret value, which initdb bakes into its data directory...
    cluster.apply_objects(&manifest)?;
    cluster.set_secret_values("my-citus-secret", &[("postgres-password", "an-older-password")])?;
    cluster.start_statefulset_pod(&manifest, "my-citus-worker", 2, None)?;
    cluster.wait_ready("my-citus-worker-2", util::READY)?;
    // ...then the release's Secret is back for everything else, including the Job.
    cluster.apply(&manifest)?;
    let err = cluster.run_hooks(&manifest, HookEvent::PostInstall).err().context("registration succeeded")?;
    let message = format!("{:#}", anyhow::Error::from(err));
    let worker = util::worker_fqdn(2);
    ensure!(message.contains(&format!("cannot log in to worker {worker}:5432 as postgres")), "job error:\n{message}");
    ensure!(message.contains("password authentication failed"), "job error:\n{message}");
    ensure!(message.contains("after 2 attempt(s)"), "backoffLimit 1 means two attempts:\n{message}");
    for healthy in [0, 1] {
        ensure!(!message.contains(&format!("cannot log in to worker {}", util::worker_fqdn(healthy))), "{message}");
    }
    Ok(())
}

fn a_role_of_the_users_own_runs_multi_shard_queries_once_its_password_is_in_pg_dist_authinfo(
    env: &Env,
) -> anyhow::Result<()> {
    let mut cluster = util::cluster(env.postgres()?)?;
    cluster.install(&util::values(json!({"worker": {"replicaCount": 2}})))?;
    cluster.wait_all_ready(util::READY)?;
    let admin = util::SOCKET;
    util::psql(
        &cluster,
        util::COORDINATOR,
        &admin,
        "CREATE TABLE visits (id bigint PRIMARY KEY);\n\
         SELECT create_distributed_table('visits', 'id') \\g /dev/null\n\
         INSERT INTO visits SELECT generate_series(1, 1000);\n\
         CREATE ROLE reporting LOGIN PASSWORD 'report pw';\n\
         GRANT SELECT ON visits TO reporting;",
    )?;
    let reporting = util::tcp(util::COORDINATOR_SERVICE, "reporting", "report pw");
    let query = "SELECT count(*) FROM visits";
    // Citus connects to the workers as the session's role: without a password for it, it has none.
    match util::try_psql(&cluster, util::COORDINATOR, &reporting, query)? {
        Ok(out) => anyhow::bail!("a multi-shard query as a role without node credentials returned {out}"),
        Err(e) => ensure!(e.contains("no password supplied"), "unexpected error: {e}"),
    }
    // The README's procedure for such roles.
    util::psql(
        &cluster,
        util::COORDINATOR,
        &admin,
        "INSERT INTO pg_dist_authinfo (nodeid, rolename, authinfo) VALUES (0, 'reporting', 'password=''report pw''');",
    )?;
    let count = util::psql(&cluster, util::COORDINATOR, &reporting, query)?;
    ensure!(count == "1000", "count as reporting: {count}");
    Ok(())
}
