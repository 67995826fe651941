//! Credentials, on the control plane: TCP logins need SCRAM passwords, also over loopback; an existing Secret mounted as files, a worker whose password
//! differs from the one the registration Job uses, and a login role of the user's own, which runs multi-shard
//! queries once its password is in pg_dist_authinfo, as the README says (review D6).

use anyhow::{bail, ensure, Context as _};
use serde_json::json;

use crate::citus_cluster::{assert_registered, load_tables};
use crate::util::{self, Env, Login, APP_PASSWORD, COORDINATOR, COORDINATOR_SERVICE, POSTGRES_PASSWORD};
use testbed::{Space, NODES};

crate::scenarios!(Node: tcp_requires_scram_passwords_from_other_pods_and_from_loopback, existing_secret_as_password_files_forms_the_same_cluster, a_worker_with_another_password_fails_the_job_naming_it, a_role_of_the_users_own_runs_multi_shard_queries_once_its_password_is_in_pg_dist_authinfo);

fn tcp_requires_scram_passwords_from_other_pods_and_from_loopback(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "auth-scram", Some("restricted"))?;
    space.install(json!({"worker": {"replicaCount": 1}}))?;
    space.wait_ready(&NODES[..2], util::READY)?;
    space.wait_serving(util::SERVING)?;
    let coordinator = util::coordinator_host(&space.ns);
    // Another pod as the client.
    let client = "my-citus-worker-0";
    for host in [coordinator.as_str(), COORDINATOR_SERVICE] {
        let who = util::psql(&space, client, &util::tcp(host, "citus", APP_PASSWORD), "SELECT current_user")?;
        ensure!(who == "citus", "connected as {who} via {host}");
        let method = "SELECT auth_method FROM pg_hba_file_rules WHERE type = 'host' LIMIT 1";
        let rule = util::psql(&space, client, &util::tcp(host, "postgres", POSTGRES_PASSWORD), method)?;
        ensure!(rule == "scram-sha-256", "first host rule: {rule}");
    }
    let wrong = util::try_psql(&space, client, &util::tcp(&coordinator, "citus", "not-the-password"), "SELECT 1")?;
    let err = wrong.err().context("a wrong password was accepted")?;
    ensure!(err.contains("password authentication failed for user \"citus\""), "wrong password: {err}");
    let none = Login { host: &coordinator, user: "postgres", password: None, database: "citus" };
    let err = util::try_psql(&space, client, &none, "SELECT 1")?.err().context("TCP without password was accepted")?;
    ensure!(err.contains("no password supplied"), "no password: {err}");
    // Not even loopback TCP inside the node's own pod is trusted.
    let loopback = Login { host: "127.0.0.1", user: "postgres", password: None, database: "citus" };
    let err = util::try_psql(&space, COORDINATOR, &loopback, "SELECT 1")?.err().context("loopback TCP is trusted")?;
    ensure!(err.contains("no password supplied"), "loopback: {err}");
    Ok(())
}

fn existing_secret_as_password_files_forms_the_same_cluster(env: &Env) -> anyhow::Result<()> {
    let space = Space::create(env.postgres()?, "auth-existing-secret", Some("restricted"))?;
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
    let space = Space::create(env.postgres()?, "auth-other-password", None)?;
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
    let space = Space::create(env.postgres()?, "auth-own-role", None)?;
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
