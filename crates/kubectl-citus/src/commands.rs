//! One function per command: gather (sql, k8s), decide, return a struct; `run` renders it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cli::{BackupAction, Cli, Command, DrainArgs, PsqlArgs, RebalanceAction, RebalanceArgs};
use crate::connect::{Session, Target};
use crate::doctor;
use crate::error::{Error, Result};
use crate::follow::{self, Ending};
use crate::k8s;
use crate::model::*;
use crate::render::{render, Human};
use crate::report;
use crate::sql;

/// How the process should end (main maps it to an exit code; errors are 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success,
    /// doctor found hazards.
    HazardsFound,
    /// The user stopped a rebalance with Ctrl-C.
    Interrupted,
    /// psql's own exit code.
    Code(i32),
}

const POLL: Duration = Duration::from_millis(500);
/// How long `drain --wait` retries the cleanup of the drained node's old shard copies.
const CLEANUP_WAIT: Duration = Duration::from_secs(60);

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn print<T: serde::Serialize + Human>(cli: &Cli, v: &T) -> Result<()> {
    let text = render(v, cli.output)?;
    crate::write_stdout(&text);
    Ok(())
}

pub async fn run(cli: Cli) -> Result<Exit> {
    let target = Target::resolve(&cli.target).await?;
    match &cli.command {
        Command::Status => {
            let s = status(target.connect().await?).await?;
            print(&cli, &s)?;
            Ok(Exit::Success)
        }
        Command::Doctor(a) => {
            let session = target.connect().await?;
            let (cleanup, s) = (sql::cleanup_records(&session.client).await?, status(session).await?);
            let r = doctor::analyse(&s, &cleanup, a.skew_threshold);
            print(&cli, &r)?;
            Ok(if r.hazards.is_empty() { Exit::Success } else { Exit::HazardsFound })
        }
        Command::Rebalance(a) => {
            let session = target.connect().await?;
            let (report, exit) = rebalance(&session, a).await?;
            print(&cli, &report)?;
            Ok(exit)
        }
        Command::Drain(a) => {
            let session = target.connect().await?;
            let (report, exit) = drain(&session, a).await?;
            print(&cli, &report)?;
            Ok(exit)
        }
        Command::Psql(a) => psql(target, a).await,
        Command::Backup(b) => {
            let k = target.require_kube("backup")?;
            match b.action {
                BackupAction::Now { wait, timeout } => {
                    let r = &k.release;
                    let job = k8s::start_backup(&k.client, r, unix_now()).await?;
                    let mut out = BackupStarted {
                        api_version: API_VERSION,
                        kind: "BackupStarted",
                        job: job.clone(),
                        namespace: r.namespace.clone(),
                        state: "created".into(),
                        logs: None,
                    };
                    if wait {
                        let ok = k8s::wait_job(
                            &k.client,
                            &r.namespace,
                            &job,
                            Duration::from_secs(timeout),
                            Duration::from_secs(2),
                        )
                        .await?;
                        out.logs = Some(k8s::job_logs(&k.client, &r.namespace, &job).await?);
                        out.state = if ok { "succeeded" } else { "failed" }.into();
                        print(&cli, &out)?;
                        if !ok {
                            return Err(Error::Job {
                                what: format!("backup Job {}/{job} failed (its log is above)", r.namespace),
                                fix: format!("kubectl describe job -n {} {job}", r.namespace),
                            });
                        }
                    } else {
                        print(&cli, &out)?;
                    }
                    Ok(Exit::Success)
                }
                BackupAction::List { timeout } => {
                    let list =
                        k8s::list_backups(&k.client, &k.release, unix_now(), Duration::from_secs(timeout)).await?;
                    print(&cli, &list)?;
                    Ok(Exit::Success)
                }
            }
        }
        Command::Report(a) => {
            let file = a.file.clone().unwrap_or_else(|| format!("citus-report-{}.zip", unix_now()).into());
            let r = report::write(target, &file, a.log_lines).await?;
            print(&cli, &r)?;
            Ok(Exit::Success)
        }
    }
}

/// Everything `status` shows; in cluster mode also worker pods vs registered nodes.
pub async fn status(session: Session) -> Result<Status> {
    let mut s = sql::status(&session.client).await?;
    if let Some(k) = &session.kube {
        let (pods, limit) = futures::join!(
            k8s::worker_pods(&k.client, &k.release),
            k8s::registered_worker_limit(&k.client, &k.release)
        );
        s.pods = Some(k8s::pod_check(&pods?, &s.nodes, limit?));
    }
    Ok(s)
}

fn report(outcome: &str, job: Option<RebalanceJob>, planned: Vec<PlannedMove>) -> RebalanceReport {
    RebalanceReport {
        api_version: API_VERSION,
        kind: "RebalanceReport",
        outcome: outcome.into(),
        job,
        planned,
        drained_node: None,
        next: None,
    }
}

fn ending_report(ending: Ending, job: RebalanceJob, plan: Vec<PlannedMove>) -> Result<(RebalanceReport, Exit)> {
    match ending {
        Ending::Finished => Ok((report("finished", Some(job), plan), Exit::Success)),
        Ending::Stopped => Ok((report("stopped", Some(job), plan), Exit::Interrupted)),
        Ending::LeftRunning => {
            let mut r = report("left-running", Some(job), plan);
            r.next = Some("kubectl citus rebalance status | kubectl citus rebalance stop".into());
            Ok((r, Exit::Success))
        }
        Ending::Failed => Err(Error::Job {
            what: format!(
                "background job {} ended {}: {}",
                job.job_id,
                job.state,
                job.last_message.as_deref().unwrap_or("no message").trim()
            ),
            fix: "kubectl citus doctor lists the usual causes (replica identity, wal_level, unreachable nodes); \
                  fix it and run the command again"
                .into(),
        }),
    }
}

async fn rebalance(session: &Session, a: &RebalanceArgs) -> Result<(RebalanceReport, Exit)> {
    let c = &session.client;
    match a.action {
        Some(RebalanceAction::Status) => {
            let job = sql::last_job(c).await?;
            let outcome = match &job {
                None => "no-job".to_owned(),
                Some(j) if j.is_running() => "running".to_owned(),
                Some(j) => j.state.clone(),
            };
            Ok((report(&outcome, job, vec![]), Exit::Success))
        }
        Some(RebalanceAction::Stop) => match sql::last_job(c).await? {
            Some(j) if j.is_running() => {
                sql::rebalance_stop(c).await?;
                let mut job = j;
                for _ in 0..60 {
                    job = sql::job_by_id(c, job.job_id).await?;
                    if !job.is_running() {
                        break;
                    }
                    tokio::time::sleep(POLL).await;
                }
                Ok((report("stopped", Some(job), vec![]), Exit::Success))
            }
            other => Err(Error::refused(
                "stop the rebalance",
                match other {
                    Some(j) => format!("the last background job ({}) is already {}", j.job_id, j.state),
                    None => "no rebalance has ever run".into(),
                },
                "nothing to do; kubectl citus rebalance status shows the last job",
            )),
        },
        None => {
            if let Some(j) = sql::last_job(c).await?.filter(|j| j.is_running()) {
                if !a.wait {
                    let mut r = report("running", Some(j), vec![]);
                    r.next =
                        Some("a rebalance already runs: kubectl citus rebalance status, or --wait to follow it".into());
                    return Ok((r, Exit::Success));
                }
                let (ending, job) = follow::follow(c, j.job_id, &[], POLL).await?;
                return ending_report(ending, job, vec![]);
            }
            let plan = sql::plan(c, a.strategy.as_deref(), false).await?;
            let Some(job_id) =
                sql::rebalance_start(c, a.strategy.as_deref(), false, a.shard_transfer_mode.sql_name()).await?
            else {
                return Ok((report("nothing-to-do", None, plan), Exit::Success));
            };
            if a.wait {
                let (ending, job) = follow::follow(c, job_id, &plan, POLL).await?;
                ending_report(ending, job, plan)
            } else {
                let job = sql::job_by_id(c, job_id).await?;
                let mut r = report("started", Some(job), plan);
                r.next = Some("kubectl citus rebalance status (or start it with --wait to follow it)".into());
                Ok((r, Exit::Success))
            }
        }
    }
}

/// Find the node a user means: `host[:port]`, a node id, or a pod name (first DNS label).
pub fn find_node<'a>(nodes: &'a [Node], spec: &str) -> Result<&'a Node> {
    let listing = || {
        nodes.iter().map(|n| format!("{}:{} (id {})", n.name, n.port, n.id.unwrap_or(0))).collect::<Vec<_>>().join(", ")
    };
    if let Ok(id) = spec.parse::<i32>() {
        if let Some(n) = nodes.iter().find(|n| n.id == Some(id)) {
            return Ok(n);
        }
    }
    let (host, port) = match spec.rsplit_once(':') {
        Some((h, p)) => match p.parse::<i32>() {
            Ok(p) => (h, Some(p)),
            Err(_) => (spec, None),
        },
        None => (spec, None),
    };
    let found: Vec<&Node> = nodes
        .iter()
        .filter(|n| port.is_none_or(|p| p == n.port))
        .filter(|n| n.name == host || n.name.split('.').next() == Some(host))
        .collect();
    match found.as_slice() {
        [n] => Ok(n),
        [] => Err(Error::usage(format!("no node matches {spec:?}"), format!("name one of: {}", listing()))),
        _ => {
            Err(Error::usage(format!("{spec:?} matches several nodes"), format!("add the port; nodes: {}", listing())))
        }
    }
}

async fn drain(session: &Session, a: &DrainArgs) -> Result<(RebalanceReport, Exit)> {
    let c = &session.client;
    let s = sql::status(c).await?;
    let node = find_node(&s.nodes, &a.node)?.clone();
    let addr = format!("{}:{}", node.name, node.port);
    let action = format!("drain {addr}");
    if node.role == Role::Coordinator {
        return Err(Error::refused(action, "it is the coordinator", "name a worker (kubectl citus status lists them)"));
    }
    if !node.active {
        return Err(Error::refused(
            action,
            "the node is inactive, so its shards cannot be copied",
            format!("bring it back and SELECT citus_activate_node('{}', {}); then drain again", node.name, node.port),
        ));
    }
    let others = s.nodes.iter().filter(|n| n.active && n.should_have_shards && n.group_id != node.group_id).count();
    if others == 0 && node.shards > 0 {
        return Err(Error::refused(
            action,
            format!("it is the last node that accepts shards; its {} shard(s) would have nowhere to go", node.shards),
            "add a worker first (helm upgrade --set worker.replicaCount=N+1), then drain",
        ));
    }
    let running = sql::last_job(c).await?.filter(|j| j.is_running());
    if let Some(j) = &running {
        // shouldhaveshards=false on this node: the running job is (most likely) its drain; follow it.
        if node.should_have_shards {
            return Err(Error::refused(
                action,
                format!("background job {} ({}) is {}", j.job_id, j.description, j.state),
                "wait for it (kubectl citus rebalance status) or stop it (kubectl citus rebalance stop)",
            ));
        }
    }
    if a.shard_transfer_mode.sql_name() == "auto" && node.shards > 0 {
        let tables = sql::tables_without_identity_on(c, node.group_id).await?;
        if !tables.is_empty() {
            return Err(Error::refused(
                action,
                format!(
                    "shards of {} are on it and have no primary key or replica identity: the online move fails \
                     half-way",
                    tables.join(", ")
                ),
                "add a primary key (or ALTER TABLE ... REPLICA IDENTITY FULL), or drain with \
                 --shard-transfer-mode block_writes (writes to each shard wait while it is copied)",
            ));
        }
    }

    let (job_id, plan) = match running {
        Some(j) => (Some(j.job_id), vec![]),
        None => {
            if node.should_have_shards {
                sql::set_should_have_shards(c, &node.name, node.port, false).await?;
            }
            let plan = sql::plan(c, None, true).await?;
            let id = sql::rebalance_start(c, None, true, a.shard_transfer_mode.sql_name()).await?;
            (id, plan)
        }
    };

    let mut job = None;
    if let Some(id) = job_id {
        if !a.wait {
            let mut r = report("started", Some(sql::job_by_id(c, id).await?), plan);
            r.next = Some(format!(
                "kubectl citus drain {addr} --wait (follows it, then cleans up and checks the node is empty)"
            ));
            return Ok((r, Exit::Success));
        }
        let (ending, j) = follow::follow(c, id, &plan, POLL).await?;
        if ending != Ending::Finished {
            return ending_report(ending, j, plan);
        }
        job = Some(j);
    }
    // A moved shard's old copy is only dropped once no transaction uses it any more: under load the first
    // cleanup leaves records behind, so it is retried until the node is clean or CLEANUP_WAIT has passed.
    let deadline = tokio::time::Instant::now() + CLEANUP_WAIT;
    let (shards_left, cleanup_left) = loop {
        sql::cleanup_orphaned(c).await?;
        let left = sql::node_leftovers(c, node.group_id).await?;
        if left.1 == 0 || tokio::time::Instant::now() >= deadline {
            break left;
        }
        tokio::time::sleep(POLL).await;
    };
    let mut r = report(if shards_left == 0 { "drained" } else { "incomplete" }, job, plan);
    r.drained_node =
        Some(DrainedNode { name: node.name.clone(), port: node.port, shards_left, cleanup_records_left: cleanup_left });
    if shards_left > 0 {
        return Err(Error::Job {
            what: format!("{addr} still holds {shards_left} shard(s) after the drain"),
            fix: format!("kubectl citus doctor; then kubectl citus drain {addr} --wait again"),
        });
    }
    r.next = Some(if cleanup_left == 0 {
        format!(
            "the node is empty: SELECT citus_remove_node('{}', {}); then scale the worker StatefulSet down",
            node.name, node.port
        )
    } else {
        format!("{cleanup_left} cleanup record(s) remain for it: CALL citus_cleanup_orphaned_resources(); before removing it")
    });
    Ok((r, Exit::Success))
}

async fn psql(target: Target, a: &PsqlArgs) -> Result<Exit> {
    let direct = target.kube.is_none();
    let endpoint = target.endpoint().await?;
    let mut cmd = std::process::Command::new(&a.psql);
    cmd.args(&a.args).envs(endpoint.params.env());
    let not_found = |e: std::io::Error| {
        Error::io(
            format!("starting {}", a.psql),
            "install the PostgreSQL client (e.g. apt-get install postgresql-client) or pass --psql PATH",
            e,
        )
    };
    if direct {
        // Nothing to keep alive: become psql.
        use std::os::unix::process::CommandExt;
        return Err(not_found(cmd.exec()));
    }
    // The port-forward lives in this process: run psql as a child and ignore Ctrl-C here (psql handles it).
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| Error::io("installing the Ctrl-C handler", "run it again", e))?;
    let mut child = tokio::process::Command::from(cmd).spawn().map_err(not_found)?;
    let status = loop {
        tokio::select! {
            s = child.wait() => break s.map_err(|e| Error::io("waiting for psql", "run it again", e))?,
            _ = sigint.recv() => {}
        }
    };
    drop(endpoint);
    Ok(Exit::Code(status.code().unwrap_or(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::tests_support::{node, status};

    #[test]
    fn node_by_address_id_or_pod_name() {
        let mut s = status();
        s.nodes[1].name = "my-citus-worker-0.my-citus-worker-headless.db.svc.cluster.local".into();
        s.nodes[2].port = 5433;
        assert_eq!(find_node(&s.nodes, "my-citus-worker-0").unwrap().id, Some(2));
        assert_eq!(find_node(&s.nodes, "w1:5433").unwrap().id, Some(3));
        assert_eq!(find_node(&s.nodes, "3").unwrap().name, "w1");
        let e = find_node(&s.nodes, "w1:5432").unwrap_err().to_string();
        assert!(e.contains("no node matches") && e.contains("w1:5433 (id 3)"), "{e}");
        let mut nodes = s.nodes.clone();
        nodes.push(node(9, 5, "w1"));
        assert!(find_node(&nodes, "w1").unwrap_err().to_string().contains("several"));
    }
}
