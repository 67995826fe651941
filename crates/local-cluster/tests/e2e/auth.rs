//! Credential variants, on the control plane: an existing Secret mounted as files, a worker whose password
//! differs from the one the registration Job uses, and a login role of the user's own, which runs multi-shard
//! queries once its password is in pg_dist_authinfo, as the README says (review D6).

use anyhow::{bail, ensure};
use serde_json::json;

use crate::citus_cluster::{assert_registered, load_tables};
use crate::node_agent::{Space, NODES};
use crate::util::{self, Env, APP_PASSWORD, POSTGRES_PASSWORD};

crate::scenarios!(Node: existing_secret_as_password_files_forms_the_same_cluster, a_worker_with_another_password_fails_the_job_naming_it, a_role_of_the_users_own_runs_multi_shard_queries_once_its_password_is_in_pg_dist_authinfo);

fn existing_secret_as_password_files_forms_the_same_cluster(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env, "auth-existing-secret", Some("restricted"))?;
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "citus-credentials"},
        "stringData": {"postgres-password": POSTGRES_PASSWORD, "password": APP_PASSWORD},
    });
    space.kubectl_with_input(&["apply", "-f", "-"], secret.to_string().as_bytes())?;
    space.install_values(&json!({"auth": {"existingSecret": "citus-credentials", "usePasswordFiles": true}}))?;
    let secrets = space.jsonpath("secrets", "{.items[*].metadata.name}")?;
    ensure!(!secrets.split_whitespace().any(|s| s == "my-citus-secret"), "the chart made its own Secret: {secrets}");
    space.wait_ready(&NODES, util::READY)?;
    space.wait_serving(util::SERVING)?;
    assert_registered(&space, 3)?;
    load_tables(&space)?;
    let files = space.kubectl(&["exec", util::COORDINATOR, "--", "ls", "/opt/citus/secrets"])?;
    ensure!(files.split_whitespace().eq(["password", "postgres-password"]), "secret files: {files}");
    space.helm.test("my-citus", Some(300))?;
    Ok(())
}

/// A worker's superuser password changed by hand (or a data directory from elsewhere): the next registration
/// fails on that worker only, names it and the reason, after the attempts `backoffLimit` allows.
fn a_worker_with_another_password_fails_the_job_naming_it(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env, "auth-other-password", None)?;
    let values = json!({"workerRegistration": {"backoffLimit": 1, "activeDeadlineSeconds": 180}});
    space.install(values.clone())?;
    space.sql_in(
        "my-citus-worker-2",
        "SET citus.enable_ddl_propagation = off; ALTER ROLE postgres PASSWORD 'an-older-password'",
    )?;
    let Err(failed) = space.upgrade(values) else {
        bail!("the registration succeeded against a worker with another password");
    };
    let job = "job/my-citus-register-workers";
    let attempts = space.jsonpath(job, "{.status.failed}")?;
    ensure!(attempts == "2", "backoffLimit 1 means two attempts, the Job made {attempts}: {failed:#}");
    let log = space.kubectl(&["logs", "-l", "batch.kubernetes.io/job-name=my-citus-register-workers", "--tail=-1"])?;
    let worker = util::worker_host(&space.ns, 2);
    ensure!(log.contains(&format!("cannot log in to worker {worker}:5432 as postgres")), "job log:\n{log}");
    ensure!(log.contains("password authentication failed"), "job log:\n{log}");
    for healthy in [0, 1] {
        let name = util::worker_host(&space.ns, healthy);
        ensure!(!log.contains(&format!("cannot log in to worker {name}")), "job log:\n{log}");
    }
    Ok(())
}

fn a_role_of_the_users_own_runs_multi_shard_queries_once_its_password_is_in_pg_dist_authinfo(
    env: &Env,
) -> anyhow::Result<()> {
    let space = Space::create(env, "auth-own-role", None)?;
    space.install(json!({"worker": {"replicaCount": 2}}))?;
    space.wait_ready(&NODES[..3], util::READY)?;
    space.wait_serving(util::SERVING)?;
    space.sql(
        "CREATE TABLE visits (id bigint PRIMARY KEY);\n\
         SELECT create_distributed_table('visits', 'id') \\g /dev/null\n\
         INSERT INTO visits SELECT generate_series(1, 1000);\n\
         CREATE ROLE reporting LOGIN PASSWORD 'report pw';\n\
         GRANT SELECT ON visits TO reporting;",
    )?;
    let reporting = util::tcp(util::COORDINATOR_SERVICE, "reporting", "report pw");
    let query = "SELECT count(*) FROM visits";
    // Citus connects to the workers as the session's role: without a password for it, it has none.
    match util::try_psql(&space, util::COORDINATOR, &reporting, query)? {
        Ok(out) => bail!("a multi-shard query as a role without node credentials returned {out}"),
        Err(e) => ensure!(e.contains("no password supplied"), "unexpected error: {e}"),
    }
    // The README's procedure for such roles.
    space.sql(
        "INSERT INTO pg_dist_authinfo (nodeid, rolename, authinfo) VALUES (0, 'reporting', 'password=''report pw''');",
    )?;
    let count = util::psql(&space, util::COORDINATOR, &reporting, query)?;
    ensure!(count == "1000", "count as reporting: {count}");
    Ok(())
}
