//! Every custom query of the chart's exporter, run by Debian's postgres-exporter against a throwaway Citus
//! cluster (a coordinator and two workers on loopback ports), logged in as the monitoring role that the
//! rendered monitoring-role.sh created, with the exporter arguments the chart renders.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::Failed;
use serde_json::{json, Value};

use crate::Outcome;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const EXPORTER: &str = "prometheus-postgres-exporter";
const MONITOR: &str = "citus_monitor";
/// Characters that need escaping in a URL, in pg_dist_authinfo and in the exporter's password file.
const MONITOR_PASSWORD: &str = "mon:pass@word#1/% 'q' \\b";
const DB: &str = "citus";

pub fn custom_queries_answer_on_real_citus() -> Outcome {
    let pkglibdir = match Command::new(format!("{PG_BIN}/pg_config")).arg("--pkglibdir").output() {
        Ok(out) if out.status.success() => PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
        _ => return Ok(Err(format!("PostgreSQL is not installed (no {PG_BIN}/pg_config)"))),
    };
    if !pkglibdir.join("citus.so").exists() {
        return Ok(Err(format!("Citus is not installed (no citus.so in {})", pkglibdir.display())));
    }
    let Some(exporter_version) = exporter_version() else {
        return Ok(Err(format!("{EXPORTER} is not installed (apt-get install {EXPORTER})")));
    };
    run(&exporter_version).map(Ok)
}

/// `0.11.1` from `postgres_exporter, version 0.11.1 (branch: ...)`.
fn exporter_version() -> Option<String> {
    let out = Command::new(EXPORTER).arg("--version").output().ok()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let rest = text.split("version ").nth(1)?;
    Some(rest.split_whitespace().next()?.to_owned())
}

struct Chart {
    queries: String,
    scripts: BTreeMap<String, String>,
    exporter_args: Vec<String>,
    exporter_user: String,
}

/// What the chart renders for the exporter, with the tag of the exporter that runs here.
fn render_chart(exporter_version: &str) -> Result<Chart, Failed> {
    let helm = helm_engine::Helm::discover().map_err(|e| e.to_string())?;
    let values = json!({
        "metrics": {"enabled": true, "password": MONITOR_PASSWORD, "image": {"tag": format!("v{exporter_version}")}},
    });
    let docs = chart_tests::render(&helm, &values, chart_tests::KUBE_VERSIONS[1]).map_err(|e| e.to_string())?;
    let find =
        |kind: &str, name: &str| docs.iter().find(|d| d.kind() == kind && d.name() == name).map(|d| d.value.clone());
    let queries_cm = find("ConfigMap", "my-citus-metrics-queries").ok_or("no ConfigMap my-citus-metrics-queries")?;
    let scripts_cm = find("ConfigMap", "my-citus-scripts").ok_or("no ConfigMap my-citus-scripts")?;
    let sts = find("StatefulSet", "my-citus-coordinator").ok_or("no StatefulSet my-citus-coordinator")?;
    let container = sts["spec"]["template"]["spec"]["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "metrics"))
        .ok_or("no metrics container")?
        .clone();
    let env = |name: &str| {
        container["env"].as_array().and_then(|e| e.iter().find(|v| v["name"] == name)).map(|v| v["value"].clone())
    };
    let scripts = scripts_cm["data"]
        .as_object()
        .ok_or("scripts ConfigMap without data")?
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    Ok(Chart {
        queries: queries_cm["data"]["queries.yaml"].as_str().ok_or("no queries.yaml")?.to_owned(),
        scripts,
        exporter_args: container["args"]
            .as_array()
            .ok_or("metrics container without args")?
            .iter()
            .map(|a| a.as_str().unwrap_or_default().to_owned())
            .collect(),
        exporter_user: env("DATA_SOURCE_USER")
            .and_then(|v| v.as_str().map(str::to_owned))
            .ok_or("no DATA_SOURCE_USER")?,
    })
}

/// Metric names the queries file defines (`<query>_<column>` of every non-label column), per query.
fn defined_metrics(queries: &str) -> Result<BTreeMap<String, Vec<String>>, Failed> {
    let doc: Value = serde_yaml::from_str(queries).map_err(|e| format!("queries.yaml: {e}"))?;
    let mut out = BTreeMap::new();
    for (query, spec) in doc.as_object().ok_or("queries.yaml is not a map")? {
        let mut names = Vec::new();
        for column in spec["metrics"].as_array().ok_or_else(|| format!("{query}: no metrics"))? {
            let (name, def) =
                column.as_object().and_then(|m| m.iter().next()).ok_or_else(|| format!("{query}: bad column"))?;
            if def["usage"] != "LABEL" {
                names.push(format!("{query}_{name}"));
            }
        }
        out.insert(query.clone(), names);
    }
    Ok(out)
}

fn run(exporter_version: &str) -> Result<(), Failed> {
    let chart = render_chart(exporter_version)?;
    assert_eq!(chart.exporter_user, MONITOR, "the exporter logs in as the monitoring role");
    let metrics = defined_metrics(&chart.queries)?;
    let dir = tempfile::Builder::new().prefix("citus-mon-").tempdir().map_err(|e| e.to_string())?;
    let scripts = dir.path().join("scripts");
    fs::create_dir(&scripts).map_err(|e| e.to_string())?;
    for (name, text) in &chart.scripts {
        fs::write(scripts.join(name), text).map_err(|e| e.to_string())?;
    }
    let queries = dir.path().join("queries.yaml");
    fs::write(&queries, &chart.queries).map_err(|e| e.to_string())?;
    let user = RunAs::detect()?;
    user.own(dir.path())?;

    let mut nodes = Vec::new();
    for name in ["coordinator", "worker-0", "worker-1"] {
        nodes.push(Node::init(&user, dir.path(), name)?);
    }
    for node in &nodes {
        node.start()?;
        node.psql("postgres", &format!("CREATE DATABASE {DB}"))?;
        node.psql(DB, "CREATE EXTENSION citus")?;
    }
    let c = &nodes[0];
    c.psql(DB, &format!("SELECT citus_set_coordinator_host('127.0.0.1', {})", c.port))?;
    for w in &nodes[1..] {
        c.psql(DB, &format!("SELECT citus_add_node('127.0.0.1', {})", w.port))?;
    }
    // What a pod does at every start: the role script on a stopped server, then the server.
    for node in &nodes {
        node.stop()?;
        node.run_script(&scripts.join("monitoring-role.sh"))?;
        node.start()?;
    }
    // Data, then a real rebalance: worker-1 may no longer hold shards, so every shard moves to worker-0,
    // leaving the old copies to deferred cleanup.
    c.psql(DB, "CREATE TABLE events (id bigint PRIMARY KEY, payload text)")?;
    c.psql(DB, "SELECT create_distributed_table('events', 'id')")?;
    c.psql(DB, "INSERT INTO events SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g")?;
    c.psql(DB, "CREATE TABLE countries (code text PRIMARY KEY)")?;
    c.psql(DB, "SELECT create_reference_table('countries')")?;
    c.psql(DB, &format!("SELECT citus_set_node_property('127.0.0.1', {}, 'shouldhaveshards', false)", nodes[2].port))?;
    c.psql(DB, "SELECT citus_rebalance_start(shard_transfer_mode => 'block_writes')")?;
    c.psql(DB, "SELECT citus_rebalance_wait()")?;
    // The statement the backup job runs after a successful backup (see the chart README, monitoring).
    c.psql(DB, "UPDATE citus_chart.backup_status SET last_success = now(), last_backup = '20260101T000000Z'")?;

    let coordinator = Exporter::start(&chart.exporter_args, &queries, c)?;
    let worker = Exporter::start(&chart.exporter_args, &queries, &nodes[1])?;
    let cm = coordinator.scrape_ready()?;
    let wm = worker.scrape_ready()?;

    let mut problems = Vec::new();
    for scrape in [&cm, &wm] {
        for (name, want) in [("pg_exporter_last_scrape_error", 0.0), ("pg_up", 1.0)] {
            if scrape.value(name, &[]) != Some(want) {
                problems.push(format!("{}: {name} = {:?}, want {want}", scrape.node, scrape.value(name, &[])));
            }
        }
        if scrape.values("pg_exporter_user_queries_load_error").iter().any(|v| *v != 0.0) {
            problems.push(format!("{}: the queries file did not load", scrape.node));
        }
    }
    for (query, names) in &metrics {
        for name in names {
            if cm.values(name).is_empty() {
                problems.push(format!("coordinator: no {name} (query {query})"));
            }
        }
    }
    // On a worker only the node's own metrics: the cluster-wide queries return nothing, and fail nothing.
    let per_node: BTreeSet<&str> = ["citus_connections", "citus_shared_pool", "citus_version"].into();
    for (query, names) in &metrics {
        let present = names.iter().any(|n| !wm.values(n).is_empty());
        if per_node.contains(query.as_str()) != present {
            problems.push(format!(
                "worker: query {query} {}",
                if present { "answers (coordinator only)" } else { "is missing" }
            ));
        }
    }
    let expect = |problems: &mut Vec<String>, what: &str, ok: bool| {
        if !ok {
            problems.push(what.to_owned());
        }
    };
    expect(&mut problems, "three active nodes", cm.values("citus_node_active") == [1.0, 1.0, 1.0]);
    expect(
        &mut problems,
        "every node reachable with the role's pg_dist_authinfo",
        cm.values("citus_node_connection_reachable") == [1.0, 1.0, 1.0],
    );
    let port = |n: &Node| n.port.to_string();
    expect(
        &mut problems,
        "worker-1 no longer should have shards",
        cm.value("citus_node_should_have_shards", &[("nodeport", &port(&nodes[2]))]) == Some(0.0),
    );
    let bytes0 = cm.value("citus_node_shards_bytes", &[("nodeport", &port(&nodes[1]))]).unwrap_or(0.0);
    expect(
        &mut problems,
        "worker-0 holds the shards' bytes (sizes read from the worker as the role)",
        bytes0 > 1_000_000.0,
    );
    let placements0 = cm.value("citus_node_shards_placements", &[("nodeport", &port(&nodes[1]))]);
    expect(&mut problems, "worker-0 holds 32 shards and the reference table", placements0 == Some(33.0));
    let tasks = cm.value("citus_rebalance_tasks", &[]).unwrap_or(0.0);
    expect(&mut problems, "the rebalance moved shards", tasks > 0.0);
    expect(&mut problems, "every move done", cm.value("citus_rebalance_tasks_done", &[]) == Some(tasks));
    expect(&mut problems, "rebalance not failed", cm.value("citus_rebalance_failed", &[]) == Some(0.0));
    expect(
        &mut problems,
        "one finished job",
        cm.value("citus_background_jobs_jobs", &[("state", "finished")]) == Some(1.0),
    );
    expect(&mut problems, "the backup recorded", cm.value("citus_backup_succeeded_once", &[]) == Some(1.0));
    expect(&mut problems, "versions agree", cm.values("citus_version_mismatch") == [0.0]);
    expect(
        &mut problems,
        "shared pool = max_connections (50)",
        cm.value("citus_shared_pool_max_size", &[]) == Some(50.0),
    );
    expect(&mut problems, "connections to the workers counted", !cm.values("citus_connections_to_node").is_empty());

    // The state an image upgrade without ALTER EXTENSION citus UPDATE leaves: Citus itself refuses to work,
    // and the version query still answers.
    nodes[1].psql(DB, "UPDATE pg_extension SET extversion = '12.1-1' WHERE extname = 'citus'")?;
    let mismatch = worker.scrape()?;
    expect(&mut problems, "worker-0 reports the mismatch", mismatch.values("citus_version_mismatch") == [1.0]);

    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("coordinator scrape:\n{}\nproblems:\n{}", cm.text, problems.join("\n")).into())
    }
}

/// Runs PostgreSQL as `nobody` when the tests run as root (initdb refuses root).
struct RunAs {
    uid: Option<u32>,
}

impl RunAs {
    fn detect() -> Result<RunAs, Failed> {
        let out = Command::new("id").arg("-u").output().map_err(|e| e.to_string())?;
        if String::from_utf8_lossy(&out.stdout).trim() != "0" {
            return Ok(RunAs { uid: None });
        }
        let out = Command::new("id").args(["-u", "nobody"]).output().map_err(|e| e.to_string())?;
        let uid = String::from_utf8_lossy(&out.stdout).trim().parse().map_err(|_| "no user nobody")?;
        Ok(RunAs { uid: Some(uid) })
    }

    fn own(&self, path: &Path) -> Result<(), Failed> {
        let Some(uid) = self.uid else { return Ok(()) };
        for entry in [path.to_path_buf()]
            .into_iter()
            .chain(fs::read_dir(path).map_err(|e| e.to_string())?.flatten().map(|e| e.path()))
        {
            std::os::unix::fs::chown(&entry, Some(uid), None).map_err(|e| format!("chown {}: {e}", entry.display()))?;
        }
        Ok(())
    }

    fn command(&self, program: &str) -> Command {
        match self.uid {
            Some(_) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", "nobody", "--", program]);
                cmd
            }
            None => Command::new(program),
        }
    }
}

struct Node<'a> {
    user: &'a RunAs,
    name: String,
    data: PathBuf,
    socket: PathBuf,
    port: u16,
}

impl<'a> Node<'a> {
    fn init(user: &'a RunAs, dir: &Path, name: &str) -> Result<Node<'a>, Failed> {
        let data = dir.join(name);
        let socket = dir.to_path_buf();
        let port = free_port()?;
        exec(user.command(&format!("{PG_BIN}/initdb")).args(["-D"]).arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
        ]))?;
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             shared_preload_libraries = 'citus'\nwal_level = logical\nmax_connections = 50\n",
            socket.display()
        );
        append(&data.join("postgresql.conf"), &conf)?;
        // As in the pods: the monitoring role authenticates with its password over TCP (the chart's pg_hba
        // asks every TCP client for one); the superuser is trusted here so that Citus needs no password file.
        let hba = format!(
            "local all all trust\nhost all {MONITOR} 127.0.0.1/32 scram-sha-256\nhost all all 127.0.0.1/32 trust\n"
        );
        fs::write(data.join("pg_hba.conf"), hba).map_err(|e| e.to_string())?;
        Ok(Node { user, name: name.to_owned(), data, socket, port })
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), Failed> {
        let log = self.data.with_extension("log");
        exec(self.user.command(&format!("{PG_BIN}/pg_ctl")).arg("-D").arg(&self.data).arg("-l").arg(&log).args(args))
    }

    fn start(&self) -> Result<(), Failed> {
        self.pg_ctl(&["-w", "start"])
    }

    fn stop(&self) -> Result<(), Failed> {
        self.pg_ctl(&["-w", "-m", "fast", "stop"])
    }

    fn psql(&self, db: &str, sql: &str) -> Result<(), Failed> {
        exec(
            Command::new(format!("{PG_BIN}/psql"))
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-c", sql])
                .arg("-p")
                .arg(self.port.to_string()),
        )
        .map_err(|e| format!("{}: {}", self.name, e.message().unwrap_or_default()).into())
    }

    fn state_dir(&self) -> PathBuf {
        self.data.with_extension("state")
    }

    /// The password file the role script writes for the exporter (a volume of the pod in the chart).
    fn exporter_pgpass(&self) -> PathBuf {
        self.state_dir().join("exporter-pgpass")
    }

    /// A chart script with the environment the PostgreSQL container gives it.
    fn run_script(&self, script: &Path) -> Result<(), Failed> {
        let path = format!("{PG_BIN}:{}", std::env::var("PATH").unwrap_or_default());
        exec(
            self.user
                .command("env")
                .arg(format!("PATH={path}"))
                .arg(format!("PGDATA={}", self.data.display()))
                .arg(format!("PGPORT={}", self.port))
                .arg("POSTGRES_USER=postgres")
                .arg(format!("POSTGRES_DB={DB}"))
                .arg("CITUS_APP_USER=citus")
                .arg(format!("CITUS_MONITORING_USER={MONITOR}"))
                .arg(format!("CITUS_MONITORING_PASSWORD={MONITOR_PASSWORD}"))
                .arg(format!("CITUS_MONITORING_PGPASSFILE={}", self.exporter_pgpass().display()))
                .arg(format!("CITUS_CONF_FILE={}", self.data.join("postgresql.conf").display()))
                .arg(format!("CITUS_SOCKET_DIR={}", self.socket.display()))
                .arg(format!("CITUS_STATE_DIR={}", self.state_dir().display()))
                .arg("sh")
                .arg(script),
        )
    }
}

/// A failed test leaves no server behind either.
impl Drop for Node<'_> {
    fn drop(&mut self) {
        if self.data.join("postmaster.pid").exists() {
            let _ = self.stop();
        }
    }
}

struct Exporter {
    child: Child,
    port: u16,
    node: String,
    log: PathBuf,
}

impl Exporter {
    /// The rendered arguments, with this machine's listen port and queries file.
    fn start(args: &[String], queries: &Path, node: &Node) -> Result<Exporter, Failed> {
        let port = free_port()?;
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                if a.starts_with("--web.listen-address=") {
                    format!("--web.listen-address=127.0.0.1:{port}")
                } else if a.starts_with("--extend.query-path=") {
                    format!("--extend.query-path={}", queries.display())
                } else {
                    a.clone()
                }
            })
            .collect();
        let log_path = queries.with_file_name(format!("exporter-{}.log", node.name));
        let log = fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let child = Command::new(EXPORTER)
            .args(&args)
            .env("DATA_SOURCE_URI", format!("127.0.0.1:{}/{DB}?sslmode=disable", node.port))
            .env("DATA_SOURCE_USER", MONITOR)
            .env("PGPASSFILE", node.exporter_pgpass())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {EXPORTER} {args:?}: {e}"))?;
        Ok(Exporter { child, port, node: node.name.clone(), log: log_path })
    }

    fn scrape(&self) -> Result<Scrape, Failed> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
        stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(|e| e.to_string())?;
        let mut response = String::new();
        stream.read_to_string(&mut response).map_err(|e| e.to_string())?;
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
        Ok(Scrape { node: self.node.clone(), text: body.to_owned() })
    }

    /// The first scrape once the exporter listens and reaches PostgreSQL.
    fn scrape_ready(&self) -> Result<Scrape, Failed> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.scrape() {
                Ok(s) if s.value("pg_up", &[]) == Some(1.0) => return Ok(s),
                result if Instant::now() > deadline => {
                    let text = result.map(|s| s.text).unwrap_or_else(|e| e.message().unwrap_or_default().to_owned());
                    let log = fs::read_to_string(&self.log).unwrap_or_default();
                    return Err(format!(
                        "{}: the exporter never reported pg_up 1:\n{text}\nits log:\n{log}",
                        self.node
                    )
                    .into());
                }
                _ => std::thread::sleep(Duration::from_millis(300)),
            }
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One scrape in the Prometheus text format.
struct Scrape {
    node: String,
    text: String,
}

impl Scrape {
    /// Values of every series of `name`, in the order scraped.
    fn values(&self, name: &str) -> Vec<f64> {
        self.series(name).map(|(_, v)| v).collect()
    }

    /// The value of the one series of `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut matching =
            self.series(name).filter(|(l, _)| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))));
        let first = matching.next()?;
        matching.next().is_none().then_some(first.1)
    }

    fn series<'s>(&'s self, name: &'s str) -> impl Iterator<Item = (&'s str, f64)> + 's {
        self.text.lines().filter(|l| !l.starts_with('#')).filter_map(move |line| {
            let (series, value) = line.rsplit_once(' ')?;
            let labels = match series.strip_prefix(name)? {
                "" => "",
                rest if rest.starts_with('{') => rest,
                _ => return None,
            };
            Some((labels, value.parse().ok()?))
        })
    }
}

fn free_port() -> Result<u16, Failed> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

fn append(path: &Path, text: &str) -> Result<(), Failed> {
    let mut f = fs::OpenOptions::new().append(true).open(path).map_err(|e| e.to_string())?;
    f.write_all(text.as_bytes()).map_err(|e| e.to_string().into())
}

fn exec(cmd: &mut Command) -> Result<(), Failed> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into())
    }
}
