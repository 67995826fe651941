//! Seconds from `helm install` to every pod Ready and to registration complete (Helm returns once the
//! post-install registration Job succeeded), for 1 coordinator + 3 workers and 1 + 8, on the real control
//! plane with this machine as its node. Prints `skipped: <reason>` without root, PostgreSQL, Citus or the
//! control plane's binaries.
//! Run: `cargo bench -p local-cluster --bench registration`.

#![forbid(unsafe_code)]

use anyhow::Context as _;
use serde_json::json;
use testbed::Space;

mod common;

fn main() -> anyhow::Result<()> {
    let Some(postgres) = common::citus_host() else { return Ok(()) };
    let result = (|| {
        for workers in [3, 8] {
            let space = Space::create(&postgres, &format!("bench-registration-{workers}"), None)?;
            let values = testbed::values(json!({"worker": {"replicaCount": workers}}));
            let pods: Vec<String> = std::iter::once(testbed::COORDINATOR.to_owned())
                .chain((0..workers).map(|n| format!("my-citus-worker-{n}")))
                .collect();
            let (registered, ready) =
                common::timed_until(|| space.install_values(&values), || common::all_ready(&space, &pods))
                    .context("every pod Ready")?;
            println!(
                "1 coordinator + {workers} workers, from helm install: every pod Ready {:.1} s; registration Job done (Helm returned) {:.1} s",
                ready.as_secs_f64(),
                registered.as_secs_f64()
            );
        }
        Ok(())
    })();
    testbed::stop();
    result
}
