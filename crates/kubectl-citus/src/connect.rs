//! Where the coordinator is (cluster mode or direct) and connecting to it.

use std::time::Duration;

use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

use crate::cli::TargetArgs;
use crate::error::{pg_cause, Error, Result};
use crate::k8s::{self, Forwarder, Release};

/// Connection settings psql and tokio-postgres both understand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgParams {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
}

impl PgParams {
    pub fn config(&self, connect_timeout: Duration) -> Config {
        let mut c = Config::new();
        c.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name("kubectl-citus")
            .connect_timeout(connect_timeout);
        if let Some(p) = &self.password {
            c.password(p);
        }
        c
    }

    /// The environment for a psql child process.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![
            ("PGHOST", self.host.clone()),
            ("PGPORT", self.port.to_string()),
            ("PGUSER", self.user.clone()),
            ("PGDATABASE", self.dbname.clone()),
        ];
        if let Some(p) = &self.password {
            v.push(("PGPASSWORD", p.clone()));
        }
        v
    }

    pub fn display(&self) -> String {
        format!("{}@{}:{}/{}", self.user, self.host, self.port, self.dbname)
    }
}

/// Direct-mode settings: the PG* environment first, then whatever the DSN sets (libpq's precedence).
pub fn direct_params(dsn: &str, env: impl Fn(&str) -> Option<String>) -> Result<PgParams> {
    let bad = |problem: String| {
        Error::usage(problem, "give --dsn as 'postgresql://user:password@host:port/db' or 'host=... port=... user=...'")
    };
    let user_default = env("PGUSER").or_else(|| env("USER")).unwrap_or_else(|| "postgres".into());
    let mut p = PgParams {
        host: env("PGHOST").unwrap_or_else(|| "localhost".into()),
        port: match env("PGPORT") {
            Some(s) => s.parse().map_err(|_| bad(format!("PGPORT={s} is not a port number")))?,
            None => 5432,
        },
        dbname: env("PGDATABASE").unwrap_or_else(|| user_default.clone()),
        user: user_default,
        password: env("PGPASSWORD"),
    };
    if dsn.trim().is_empty() {
        return Ok(p);
    }
    let c: Config = dsn.parse().map_err(|e| bad(format!("--dsn could not be parsed: {e}")))?;
    if let Some(h) = c.get_hosts().first() {
        p.host = match h {
            Host::Tcp(h) => h.clone(),
            Host::Unix(path) => path.display().to_string(),
        };
    }
    if let Some(port) = c.get_ports().first() {
        p.port = *port;
    }
    if let Some(u) = c.get_user() {
        p.user = u.to_owned();
        if c.get_dbname().is_none() && env("PGDATABASE").is_none() {
            p.dbname = u.to_owned();
        }
    }
    if let Some(d) = c.get_dbname() {
        p.dbname = d.to_owned();
    }
    if let Some(pw) = c.get_password() {
        p.password = Some(String::from_utf8_lossy(pw).into_owned());
    }
    Ok(p)
}

/// How to reach the Kubernetes side of the release.
pub struct KubeTarget {
    pub client: kube::Client,
    pub release: Release,
}

/// The resolved target: the Kubernetes release (cluster mode) and/or direct PostgreSQL settings.
pub struct Target {
    pub kube: Option<KubeTarget>,
    direct: Option<PgParams>,
    args: TargetArgs,
}

/// An open connection to the coordinator (and the port-forward it runs over, in cluster mode).
pub struct Session {
    pub client: Client,
    pub params: PgParams,
    pub kube: Option<KubeTarget>,
    _forward: Option<Forwarder>,
}

impl Target {
    /// Direct mode when --dsn is given, or when PGHOST is set and no Kubernetes flag is; cluster mode otherwise.
    pub async fn resolve(args: &TargetArgs) -> Result<Target> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let direct_mode = args.dsn.is_some() || (!args.has_kube_flags() && env("PGHOST").is_some());
        if direct_mode {
            let params = direct_params(args.dsn.as_deref().unwrap_or(""), env)?;
            return Ok(Target { kube: None, direct: Some(params), args: args.clone() });
        }
        let Some(release) = args.release.as_deref() else {
            return Err(Error::usage(
                "no target: cluster mode needs the Helm release name",
                "pass --release NAME (and -n NAMESPACE), or connect directly with --dsn 'host=... user=...'",
            ));
        };
        let (client, default_ns) = k8s::client(args.kubeconfig.as_deref(), args.context.as_deref()).await?;
        let ns = args.namespace.clone().unwrap_or(default_ns);
        Ok(Target {
            kube: Some(KubeTarget { client, release: Release::new(release, &ns, args.fullname.as_deref()) }),
            direct: None,
            args: args.clone(),
        })
    }

    pub fn require_kube(&self, what: &str) -> Result<&KubeTarget> {
        self.kube.as_ref().ok_or_else(|| {
            Error::usage(
                format!("{what} needs the Kubernetes release, but this is a direct connection (--dsn or PGHOST)"),
                "use --release NAME -n NAMESPACE instead of --dsn",
            )
        })
    }

    /// Where to connect: the direct settings, or a port-forward to `<fullname>-coordinator-0`'s postgresql port with the
    /// superuser's password from the release's Secret.
    pub async fn endpoint(self) -> Result<Endpoint> {
        let (params, forward, how) = match (&self.kube, &self.direct) {
            (_, Some(p)) => (
                p.clone(),
                None,
                "check that the address in --dsn / PG* is right and that the server runs and accepts this user \
                 (pg_hba.conf, password)"
                    .to_owned(),
            ),
            (Some(k), None) => {
                let r = &k.release;
                let secret = self.args.secret.clone().unwrap_or_else(|| r.secret());
                let password = k8s::read_password(&k.client, &r.namespace, &secret, &self.args.secret_key).await?;
                let fwd = k8s::port_forward(&k.client, &r.namespace, &r.coordinator_pod(), "postgresql").await?;
                let p = PgParams {
                    host: "127.0.0.1".into(),
                    port: fwd.local_port,
                    user: self.args.user.clone(),
                    password: Some(password),
                    dbname: self.args.database.clone(),
                };
                let how = format!(
                    "check that pod {}/{} is ready and that --user/--database match the release \
                     (auth.database; --secret-key for another user)",
                    r.namespace,
                    r.coordinator_pod()
                );
                (p, Some(fwd), how)
            }
            (None, None) => {
                return Err(Error::usage("no target", "pass --release NAME or --dsn"));
            }
        };
        let timeout = Duration::from_secs(self.args.connect_timeout);
        Ok(Endpoint { params, forward, kube: self.kube, fix: how, timeout })
    }

    pub async fn connect(self) -> Result<Session> {
        self.endpoint().await?.connect().await
    }
}

/// Connection settings, and the port-forward they need (kept open as long as this lives).
pub struct Endpoint {
    pub params: PgParams,
    forward: Option<Forwarder>,
    kube: Option<KubeTarget>,
    fix: String,
    timeout: Duration,
}

impl Endpoint {
    pub async fn connect(self) -> Result<Session> {
        let (client, connection) = self.params.config(self.timeout).connect(NoTls).await.map_err(|e| {
            Error::Connect { target: self.params.display(), cause: pg_cause(&e), fix: self.fix.clone(), source: e }
        })?;
        tokio::spawn(async move {
            // The connection ends when the client is dropped; a broken one shows up as a query error.
            let _ = connection.await;
        });
        Ok(Session { client, params: self.params, kube: self.kube, _forward: self.forward })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn dsn_overrides_environment() {
        let p = direct_params(
            "host=10.1.1.1 port=6432 user=alice dbname=app",
            env(&[("PGHOST", "h"), ("PGPASSWORD", "pw"), ("PGUSER", "bob")]),
        )
        .unwrap();
        assert_eq!(
            p,
            PgParams {
                host: "10.1.1.1".into(),
                port: 6432,
                user: "alice".into(),
                password: Some("pw".into()),
                dbname: "app".into()
            }
        );
    }

    #[test]
    fn url_and_environment_only() {
        let p = direct_params("postgresql://u:secret@db.example:5433/citus", env(&[])).unwrap();
        assert_eq!((p.host.as_str(), p.port, p.user.as_str(), p.dbname.as_str()), ("db.example", 5433, "u", "citus"));
        assert_eq!(p.password.as_deref(), Some("secret"));
        let p = direct_params("", env(&[("PGHOST", "x"), ("PGPORT", "7000"), ("PGUSER", "me")])).unwrap();
        assert_eq!((p.host.as_str(), p.port, p.dbname.as_str()), ("x", 7000, "me"));
        assert!(direct_params("", env(&[("PGPORT", "abc")])).unwrap_err().to_string().contains("PGPORT=abc"));
        assert!(direct_params("host=a port=notaport", env(&[])).is_err());
    }

    #[test]
    fn psql_environment() {
        let p = PgParams {
            host: "127.0.0.1".into(),
            port: 40000,
            user: "postgres".into(),
            password: Some("x".into()),
            dbname: "citus".into(),
        };
        let e = p.env();
        assert!(e.contains(&("PGPORT", "40000".into())) && e.contains(&("PGPASSWORD", "x".into())));
    }
}
