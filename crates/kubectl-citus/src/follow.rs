//! Following a background rebalance/drain job: a bar per shard move and one overall (bytes, ETA) on stderr;
//! plain lines when stderr is not a terminal. Ctrl-C asks whether to stop the job or leave it running.

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio::signal::unix::{signal, SignalKind};
use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::model::{PlannedMove, RebalanceJob};
use crate::render::bytes;
use crate::sql;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Finished,
    Failed,
    /// Stopped on the user's request after Ctrl-C.
    Stopped,
    /// Ctrl-C, and the user chose to leave it running.
    LeftRunning,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> ")
}

/// Poll the job until it ends (or the user interrupts), drawing progress.
pub async fn follow(
    client: &Client,
    job_id: i64,
    plan: &[PlannedMove],
    poll: Duration,
) -> Result<(Ending, RebalanceJob)> {
    let interactive = std::io::stderr().is_terminal();
    let multi = MultiProgress::new();
    let total_bytes: i64 = plan.iter().map(|m| m.bytes).sum();
    let overall = multi.add(if plan.is_empty() {
        ProgressBar::new(0).with_style(style("overall [{bar:40}] {pos}/{len} tasks {msg} ({elapsed}, ETA {eta})"))
    } else {
        ProgressBar::new(total_bytes.max(1) as u64)
            .with_style(style("overall [{bar:40}] {bytes}/{total_bytes} {msg} ({elapsed}, ETA {eta})"))
    });
    let shard_ids: Vec<i64> = plan.iter().map(|m| m.shard_id).collect();
    let mut bars: HashMap<i64, ProgressBar> = HashMap::new();
    let mut reported: HashSet<i64> = HashSet::new();
    let mut sigint =
        signal(SignalKind::interrupt()).map_err(|e| Error::io("installing the Ctrl-C handler", "run it again", e))?;
    let mut ticker = tokio::time::interval(poll);
    let say = |line: String| {
        if interactive {
            multi.println(line).ok();
        } else {
            eprintln!("{line}");
        }
    };
    if !interactive {
        eprintln!("following background job {job_id}: {} planned move(s), {}", plan.len(), bytes(total_bytes));
    }

    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = sigint.recv() => {
                multi.clear().ok();
                let ending = ask(client, job_id).await?;
                if let Some(ending) = ending {
                    let job = wait_settled(client, job_id, ending).await?;
                    overall.abandon();
                    return Ok((ending, job));
                }
            }
        }
        let job = sql::job_by_id(client, job_id).await?;
        let running: HashMap<i64, &crate::model::ShardMove> =
            job.moves.iter().filter(|m| m.progress == 1).map(|m| (m.shard_id, m)).collect();

        // Done moves: the shard's placement is on the target now.
        let mut done_bytes = 0i64;
        if !plan.is_empty() {
            let placed: HashSet<(i64, String)> = sql::placements_of(client, &shard_ids).await?.into_iter().collect();
            for m in plan {
                if placed.contains(&(m.shard_id, m.target.clone())) {
                    done_bytes += m.bytes;
                    if reported.insert(m.shard_id) {
                        say(format!(
                            "moved shard {} ({}) {} -> {}, {}",
                            m.shard_id,
                            m.table,
                            m.source,
                            m.target,
                            bytes(m.bytes)
                        ));
                    }
                } else if let Some(r) = running.get(&m.shard_id) {
                    done_bytes += r.target_bytes.min(m.bytes);
                }
            }
            overall.set_position(done_bytes.max(0) as u64);
        } else {
            overall.set_length(job.tasks_total.max(0) as u64);
            overall.set_position(job.tasks_done.max(0) as u64);
        }
        overall.set_message(format!("{}/{} tasks, job {} {}", job.tasks_done, job.tasks_total, job.job_id, job.state));

        for (id, m) in &running {
            let bar = bars.entry(*id).or_insert_with(|| {
                if !interactive {
                    eprintln!(
                        "moving shard {} ({}) {} -> {}, {}",
                        m.shard_id,
                        m.table,
                        m.source,
                        m.target,
                        bytes(m.source_bytes)
                    );
                }
                multi.insert_before(
                    &overall,
                    ProgressBar::new(m.source_bytes.max(1) as u64)
                        .with_style(style("  shard {prefix} [{bar:30}] {bytes}/{total_bytes} ({eta})"))
                        .with_prefix(format!("{} {} {} -> {}", m.shard_id, m.table, m.source, m.target)),
                )
            });
            bar.set_position(m.target_bytes.max(0) as u64);
        }
        bars.retain(|id, bar| {
            let keep = running.contains_key(id);
            if !keep {
                bar.finish_and_clear();
            }
            keep
        });

        if !job.is_running() {
            let ending = if job.state == "finished" { Ending::Finished } else { Ending::Failed };
            if ending == Ending::Finished {
                overall.finish();
            } else {
                overall.abandon();
            }
            if !interactive {
                eprintln!("job {} {} ({} of {} tasks done)", job.job_id, job.state, job.tasks_done, job.tasks_total);
            }
            return Ok((ending, job));
        }
    }
}

/// Ask what to do after Ctrl-C; None = go on following.
async fn ask(client: &Client, job_id: i64) -> Result<Option<Ending>> {
    if !std::io::stdin().is_terminal() {
        eprintln!(
            "interrupted: leaving background job {job_id} running (stdin is not a terminal, so not asking); \
             stop it with: kubectl citus rebalance stop"
        );
        return Ok(Some(Ending::LeftRunning));
    }
    eprint!("\nStop the rebalance (job {job_id})? [s]top / [l]eave it running / [c]ontinue watching: ");
    let answer = tokio::task::spawn_blocking(|| {
        let mut s = String::new();
        std::io::stdin().read_line(&mut s).map(|_| s)
    })
    .await
    .map_err(|e| Error::io("reading the answer", "run it again", std::io::Error::other(e)))?
    .map_err(|e| Error::io("reading the answer", "run it again", e))?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "s" | "stop" => {
            sql::rebalance_stop(client).await?;
            Ok(Some(Ending::Stopped))
        }
        "c" | "continue" => Ok(None),
        _ => {
            eprintln!("leaving job {job_id} running; follow it with: kubectl citus rebalance status");
            Ok(Some(Ending::LeftRunning))
        }
    }
}

/// After a stop, wait (bounded) until the job has settled, so the report shows its final state.
async fn wait_settled(client: &Client, job_id: i64, ending: Ending) -> Result<RebalanceJob> {
    let mut job = sql::job_by_id(client, job_id).await?;
    if ending == Ending::Stopped {
        for _ in 0..60 {
            if !job.is_running() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            job = sql::job_by_id(client, job_id).await?;
        }
    }
    Ok(job)
}
