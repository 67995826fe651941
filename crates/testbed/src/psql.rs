//! psql in a pod through the node agent's exec, as `kubectl exec` runs it.

use anyhow::bail;

use crate::Space;

/// How psql connects.
pub struct Login<'a> {
    pub host: &'a str,
    pub user: &'a str,
    pub password: Option<&'a str>,
    pub database: &'a str,
}

/// Local socket as postgres (trust inside the pod).
pub const SOCKET: Login = Login { host: "/var/run/postgresql", user: "postgres", password: None, database: "citus" };

pub fn tcp<'a>(host: &'a str, user: &'a str, password: &'a str) -> Login<'a> {
    Login { host, user, password: Some(password), database: "citus" }
}

/// psql reading SQL from stdin, never prompting for a password, stopping at the first error, rows unaligned.
pub fn psql_argv<'a>(login: &Login<'a>) -> [&'a str; 16] {
    let Login { host, user, database, .. } = *login;
    ["psql", "-X", "-w", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h", host, "-U", user, "-d", database, "-f", "-"]
}

/// Runs SQL with psql in `pod` (never prompting for a password); Ok(stdout) or Err(stderr) by exit status.
pub fn try_psql(space: &Space, pod: &str, login: &Login, sql: &str) -> anyhow::Result<Result<String, String>> {
    let argv = psql_argv(login);
    let mut env = vec![("PGCONNECT_TIMEOUT", "10")];
    if let Some(p) = login.password {
        env.push(("PGPASSWORD", p));
    }
    let out = space.run(pod, &argv, &env, Some(sql.as_bytes()))?;
    Ok(if out.status.success() { Ok(out.stdout.trim().to_owned()) } else { Err(out.stderr) })
}

/// [`try_psql`], failing with stderr, the SQL and what the cluster says of itself.
pub fn psql(space: &Space, pod: &str, login: &Login, sql: &str) -> anyhow::Result<String> {
    match try_psql(space, pod, login, sql)? {
        Ok(out) => Ok(out),
        Err(stderr) => bail!(
            "psql in {}/{pod} as {}@{} failed: {stderr}\nSQL: {sql}\n{}",
            space.ns,
            login.user,
            login.host,
            space.diagnose()
        ),
    }
}
