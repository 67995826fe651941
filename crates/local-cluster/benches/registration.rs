//! Seconds from "all pods started" to "all pods ready", and from there to "registration complete" (the
//! post-install hook Job succeeded), for 1 coordinator + 3 workers and 1 + 8. Prints `skipped: <reason>`
//! without root, PostgreSQL or Citus.
//! Run: `cargo bench -p local-cluster --bench registration`.

#![forbid(unsafe_code)]

use std::time::Instant;

use local_cluster::{Cluster, HookEvent, Settings};
use serde_json::json;

mod common;

fn main() -> anyhow::Result<()> {
    let Some(postgres) = common::citus_host() else { return Ok(()) };
    let chart = common::chart();
    for workers in [3, 8] {
        let mut cluster = Cluster::new(Settings::new(&chart, postgres.clone(), std::env::temp_dir()))?;
        let values = common::values(json!({"worker": {"replicaCount": workers}}));
        let manifest = cluster.render(&values, false)?;
        cluster.apply(&manifest)?;
        let started = Instant::now();
        cluster.wait_all_ready(std::time::Duration::from_secs(600))?;
        let ready = started.elapsed();
        cluster.run_hooks(&manifest, HookEvent::PostInstall)?;
        let total = started.elapsed();
        println!(
            "1 coordinator + {workers} workers: all pods ready {:.1} s after they started; registration Job {:.1} s after that ({:.1} s in all)",
            ready.as_secs_f64(),
            (total - ready).as_secs_f64(),
            total.as_secs_f64()
        );
    }
    Ok(())
}
