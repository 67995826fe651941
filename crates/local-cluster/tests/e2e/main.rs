//! End-to-end scenarios: the rendered chart run as local PostgreSQL/Citus servers (see the crate README).
//! A scenario states what it needs; where this machine lacks it, the scenario is reported as ignored with
//! the reason (never as passed).

#![forbid(unsafe_code)]

mod api_server;
mod auth;
mod autoscaling;
mod backup;
mod citus_cluster;
mod day2;
mod edge_values;
mod faults;
mod gitops;
mod harness;
mod kubectl_citus;
mod lifecycle;
mod node_agent;
mod node_backup;
mod node_faults;
mod node_stop;
mod rendered;
mod rollback;
mod scaling;
mod settings;
mod upgrade;
mod util;

use std::process::ExitCode;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};

use util::Scenario;

/// How long each scenario that ran took, to tell where the suite's time goes.
static TIMES: Mutex<Vec<(Duration, &'static str)>> = Mutex::new(Vec::new());

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    // Scenarios mostly wait (pods starting, probes, Jobs, Helm): at two threads, one per core, a whole run
    // kept this 2-core machine 0.6 cores busy and took 32 minutes; at four, 0.8 cores and 21 minutes.
    args.test_threads = args.test_threads.or(Some(4));
    testbed::init(env!("CARGO_TARGET_TMPDIR"));
    let mut scenarios: Vec<Scenario> = [
        rendered::SCENARIOS,
        citus_cluster::SCENARIOS,
        edge_values::SCENARIOS,
        auth::SCENARIOS,
        backup::SCENARIOS,
        upgrade::SCENARIOS,
        harness::SCENARIOS,
        lifecycle::SCENARIOS,
        scaling::SCENARIOS,
        gitops::SCENARIOS,
        autoscaling::SCENARIOS,
        rollback::SCENARIOS,
        faults::SCENARIOS,
        node_stop::SCENARIOS,
        settings::SCENARIOS,
        day2::SCENARIOS,
        api_server::SCENARIOS,
        node_agent::SCENARIOS,
        kubectl_citus::SCENARIOS,
        node_faults::SCENARIOS,
        node_backup::SCENARIOS,
    ]
    .concat();
    // Those that need the node alone first: later, each would wait for every running scenario to end while
    // the others wait for it.
    scenarios.sort_by_key(|s| s.needs != util::Needs::WholeNode);
    let mut reasons = std::collections::BTreeMap::new();
    let trials = scenarios
        .into_iter()
        .map(|s| {
            let available = util::available(s.needs);
            let trial = Trial::test(s.name, move || {
                let env = util::available(s.needs).map_err(|why| Failed::from(format!("not runnable: {why}")))?;
                let started = Instant::now();
                let result = (s.run)(&env).map_err(|e| Failed::from(format!("{e:#}")));
                TIMES.lock().unwrap_or_else(PoisonError::into_inner).push((started.elapsed(), s.name));
                result
            })
            .with_kind(s.needs.label());
            match available {
                Ok(_) => trial,
                Err(why) => {
                    reasons.insert(s.needs.label(), why);
                    trial.with_ignored_flag(true)
                }
            }
        })
        .collect();
    for (label, why) in &reasons {
        eprintln!("scenarios marked [{label}] are ignored: {why}");
    }
    let conclusion = libtest_mimic::run(&args, trials);
    testbed::stop();
    print_slowest(10);
    conclusion.exit_code()
}

fn print_slowest(n: usize) {
    let mut times = std::mem::take(&mut *TIMES.lock().unwrap_or_else(PoisonError::into_inner));
    if times.is_empty() {
        return;
    }
    let total: Duration = times.iter().map(|(t, _)| *t).sum();
    times.sort_unstable_by(|a, b| b.cmp(a));
    eprintln!("{} scenarios ran for {:.0} s in all; the slowest:", times.len(), total.as_secs_f64());
    for (took, name) in times.iter().take(n) {
        eprintln!("  {:>6.1} s  {name}", took.as_secs_f64());
    }
}
