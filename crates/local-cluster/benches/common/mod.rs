//! What every benchmark of this crate needs: the host check, the testbed (the real control plane with this
//! machine as its node) and a timer that prints.

// Each benchmark compiles this module on its own and uses a part of it.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use anyhow::Context as _;
use local_cluster::Postgres;

/// The PostgreSQL installation with Citus, with the testbed set up to run on it; or `None` after printing
/// `skipped: <reason>` when this machine lacks Citus, root or the control plane's binaries.
pub fn citus_host() -> Option<Postgres> {
    let host = local_cluster::host::check(local_cluster::host::Needs::Citus)
        .and_then(|host| control_plane::Binaries::discover().map(|_| host));
    match host {
        Ok(host) => {
            testbed::init(env!("CARGO_TARGET_TMPDIR"));
            Some(host.postgres)
        }
        Err(why) => {
            println!("skipped: {why}");
            None
        }
    }
}

/// Runs `f`, prints how long it took under `what`, returns the time.
pub fn timed<T>(what: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<Duration> {
    let started = Instant::now();
    f().with_context(|| what.to_owned())?;
    let took = started.elapsed();
    println!("  {what}: {:.1} s", took.as_secs_f64());
    Ok(took)
}

/// Runs `act` (a Helm command) while asking `reached` every 100 ms, also after `act` returned, until it
/// holds or [`testbed::READY`] passed; returns `act`'s time and the time until `reached` first held.
pub fn timed_until(
    act: impl FnOnce() -> anyhow::Result<()> + Send,
    reached: impl Fn() -> bool + Sync,
) -> anyhow::Result<(Duration, Duration)> {
    let started = Instant::now();
    let (result, at) = std::thread::scope(|s| {
        let poller = s.spawn(|| loop {
            if reached() {
                return Some(started.elapsed());
            }
            if started.elapsed() > testbed::READY {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        });
        let result = act().map(|()| started.elapsed());
        (result, poller.join().ok().flatten())
    });
    Ok((result?, at.with_context(|| format!("not reached after {:?}", testbed::READY))?))
}

/// Whether every pod of `pods` is Ready.
pub fn all_ready(space: &testbed::Space, pods: &[String]) -> bool {
    let path = "{range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}";
    let Ok(states) = space.jsonpath("pods", path) else { return false };
    pods.iter().all(|pod| states.lines().any(|l| l == format!("{pod}=True")))
}
