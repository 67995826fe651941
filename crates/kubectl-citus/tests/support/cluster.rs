//! A small real Citus cluster on 127.0.0.1 for tests and the benchmark: a coordinator and workers, each its
//! own PostgreSQL server (initdb, shared_preload_libraries=citus, wal_level=logical) on a free port, run as
//! `nobody` when we are root (initdb refuses root). Servers are stopped when the Cluster is dropped.

#![allow(dead_code)]

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NOBODY: u32 = 65534;

fn pg_config(arg: &str) -> Option<PathBuf> {
    let out = Command::new("pg_config").arg(arg).output().ok()?;
    out.status.success().then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Why Citus tests cannot run here, or None when citus.so is installed.
pub fn citus_missing() -> Option<String> {
    let Some(lib) = pg_config("--pkglibdir") else {
        return Some("pg_config not found (install postgresql-server-dev or the PostgreSQL client)".into());
    };
    let so = lib.join("citus.so");
    (!so.exists()).then(|| format!("Citus is not installed: {} does not exist", so.display()))
}

fn am_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

pub struct Server {
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
}

pub struct Cluster {
    pub coordinator: Server,
    /// Registered workers first; `spare` servers are running but not in pg_dist_node.
    pub workers: Vec<Server>,
    _tmp: tempfile::TempDir,
    bindir: PathBuf,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    l.local_addr().expect("local address").port()
}

fn as_postgres_user(cmd: &mut Command) -> &mut Command {
    if am_root() {
        cmd.uid(NOBODY).gid(NOBODY);
    }
    cmd
}

impl Server {
    fn start(bindir: &Path, root: &Path, name: &str) -> Result<Server, String> {
        let dir = root.join(name);
        let port = free_port();
        let out = as_postgres_user(Command::new(bindir.join("initdb")).args(["-D"]).arg(&dir).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        ]))
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!("initdb {name}: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             shared_preload_libraries = 'citus'\nwal_level = logical\nmax_wal_senders = 20\n\
             max_replication_slots = 20\nmax_worker_processes = 32\nfsync = off\nsynchronous_commit = off\n\
             full_page_writes = off\nshared_buffers = 32MB\nmax_connections = 100\n\
             citus.node_conninfo = 'sslmode=prefer'\ncitus.defer_shard_delete_interval = 1000\n",
            dir.display()
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("postgresql.conf"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, conf.as_bytes()))
            .map_err(|e| format!("postgresql.conf: {e}"))?;
        let log = std::fs::File::create(root.join(format!("{name}.log"))).map_err(|e| e.to_string())?;
        if am_root() {
            std::os::unix::fs::chown(root.join(format!("{name}.log")), Some(NOBODY), Some(NOBODY)).ok();
        }
        let child = as_postgres_user(Command::new(bindir.join("postgres")).arg("-D").arg(&dir))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("postgres: {e}"))?;
        let s = Server { port, dir, child };
        let start = Instant::now();
        while s.try_sql("SELECT 1").is_err() {
            if start.elapsed() > Duration::from_secs(30) {
                let log = std::fs::read_to_string(root.join(format!("{name}.log"))).unwrap_or_default();
                return Err(format!("{name} did not start within 30s: {log}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        s.sql("CREATE EXTENSION citus");
        Ok(s)
    }

    pub fn dsn(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname=postgres", self.port)
    }

    pub fn try_sql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-p", &self.port.to_string(), "-c", sql])
            .env_remove("PGPASSWORD")
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Run SQL; panics with the server's message on failure (tests only).
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGINT = fast shutdown; then reap.
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Cluster {
    /// A coordinator, `workers` registered workers and `spare` running but unregistered servers.
    pub fn start(workers: usize, spare: usize) -> Result<Cluster, String> {
        let bindir = pg_config("--bindir").ok_or("pg_config --bindir failed")?;
        let tmp = tempfile::Builder::new().prefix("kubectl-citus-").tempdir().map_err(|e| e.to_string())?;
        if am_root() {
            std::os::unix::fs::chown(tmp.path(), Some(NOBODY), Some(NOBODY)).map_err(|e| e.to_string())?;
        }
        let coordinator = Server::start(&bindir, tmp.path(), "coordinator")?;
        let mut ws = Vec::new();
        for i in 0..workers + spare {
            ws.push(Server::start(&bindir, tmp.path(), &format!("worker{i}"))?);
        }
        coordinator.sql(&format!("SELECT citus_set_coordinator_host('127.0.0.1', {})", coordinator.port));
        for w in &ws[..workers] {
            coordinator.sql(&format!("SELECT citus_add_node('127.0.0.1', {})", w.port));
        }
        Ok(Cluster { coordinator, workers: ws, _tmp: tmp, bindir })
    }

    pub fn dsn(&self) -> String {
        self.coordinator.dsn()
    }
}
