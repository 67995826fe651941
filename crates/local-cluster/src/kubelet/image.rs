//! The image contract we implement. Every pod of the chart runs `citusdata/citus` (FROM postgres); here the
//! host file system stands in for the image, and this module supplies what the image itself would:
//! - PATH with the PostgreSQL bin dir (the postgres image appends `/usr/lib/postgresql/<major>/bin`; here
//!   it comes first so that Debian's `/usr/bin/psql` wrapper never picks another version),
//! - `PGDATA=/var/lib/postgresql/data`, `LANG=C.UTF-8` (the image has en_US.utf8, which this host may lack),
//!   `HOME=/` (the uid of the pods has no passwd entry in the image), `HOSTNAME` = the pod name,
//! - the default user root (the image has no USER), and the stop signal SIGINT (STOPSIGNAL).
//!
//! The image's own `docker-entrypoint.sh` is never involved: the chart replaces the command.

use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::signal::Signal;

use crate::error::{Error, Result};

/// STOPSIGNAL of the image (PostgreSQL fast shutdown).
pub const STOP_SIGNAL: Signal = Signal::SIGINT;

/// uid the image runs as when the pod does not say (no USER in the Dockerfile).
pub const DEFAULT_UID: u32 = 0;

/// The PostgreSQL installation that plays the image's.
#[derive(Debug, Clone)]
pub struct Postgres {
    pub bindir: PathBuf,
    pub pkglibdir: PathBuf,
}

impl Postgres {
    /// Asks `pg_config` (e.g. `/usr/lib/postgresql/15/bin/pg_config`).
    pub fn from_pg_config(pg_config: &Path) -> Result<Self> {
        let output = Command::new(pg_config)
            .args(["--bindir", "--pkglibdir"])
            .output()
            .map_err(|e| Error::Command {
                command: format!("{} --bindir --pkglibdir", pg_config.display()),
                status: e.to_string(),
                stderr: String::new(),
            })?;
        let text = String::from_utf8_lossy(&output.stdout);
        let mut lines = text.lines();
        match (output.status.success(), lines.next(), lines.next()) {
            (true, Some(bin), Some(lib)) => Ok(Postgres {
                bindir: bin.into(),
                pkglibdir: lib.into(),
            }),
            _ => Err(Error::Command {
                command: format!("{} --bindir --pkglibdir", pg_config.display()),
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            }),
        }
    }

    /// Where Citus would be: `citus.so` in the package library dir.
    pub fn citus_library(&self) -> PathBuf {
        self.pkglibdir.join("citus.so")
    }

    /// The image's environment, before the container's own `env`.
    pub fn base_env(&self, hostname: &str) -> Vec<(String, String)> {
        let path = format!(
            "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            self.bindir.display()
        );
        [
            ("PATH", path.as_str()),
            ("PGDATA", "/var/lib/postgresql/data"),
            ("LANG", "C.UTF-8"),
            ("HOME", "/"),
            ("HOSTNAME", hostname),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}
