//! How long rendering plus strict validation of the whole matrix takes (every profile at every
//! supported Kubernetes version). Run with `cargo bench -p chart-tests`.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use chart_tests::{profiles, render, KUBE_VERSIONS};
use helm_engine::Helm;
use k8s_schema::SchemaSet;

const ITERATIONS: usize = 5;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let helm = Helm::discover()?;
    let profiles = profiles()?;
    let schemas: Vec<SchemaSet> = KUBE_VERSIONS.iter().map(|v| SchemaSet::load(v)).collect::<Result<_, _>>()?;
    let mut times = Vec::new();
    let mut documents = 0;
    for _ in 0..=ITERATIONS {
        let start = Instant::now();
        documents = 0;
        for (version, set) in KUBE_VERSIONS.iter().zip(&schemas) {
            for profile in &profiles {
                for doc in render(&helm, &profile.values, version)? {
                    set.validate(&doc.value).map_err(|f| f.to_string())?;
                    documents += 1;
                }
            }
        }
        times.push(start.elapsed());
    }
    // The first pass compiles the validators; it is reported apart.
    let warmup = times.remove(0);
    times.sort();
    let median = times[times.len() / 2];
    let secs = |d: Duration| d.as_secs_f64();
    println!(
        "render+validate matrix: {} profiles x {} versions = {documents} documents; first pass {:.3}s; \
         min {:.3}s, median {:.3}s, max {:.3}s over {ITERATIONS} runs; {:.0} documents/s",
        profiles.len(),
        KUBE_VERSIONS.len(),
        secs(warmup),
        secs(times[0]),
        secs(median),
        secs(times[times.len() - 1]),
        documents as f64 / secs(median)
    );
    Ok(())
}
