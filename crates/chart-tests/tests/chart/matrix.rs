//! Every values profile at every supported Kubernetes version renders into documents that the strict
//! schemas of that version accept, with hook annotations Helm reads as written.

use std::collections::BTreeMap;

use chart_tests::{profiles, render, KUBE_VERSIONS};
use k8s_schema::SchemaSet;

use crate::util::helm;

#[test]
fn every_profile_renders_valid_manifests_at_every_version() {
    let helm = helm();
    let profiles = profiles().expect("profiles");
    assert!(profiles.len() >= 20, "the matrix lost profiles: {}", profiles.len());
    let mut failures = Vec::new();
    let mut counts = BTreeMap::new();
    for version in KUBE_VERSIONS {
        let schemas = SchemaSet::load(version).unwrap_or_else(|e| panic!("{e}"));
        for profile in &profiles {
            let docs = match render(&helm, &profile.values, version) {
                Ok(docs) => docs,
                Err(e) => {
                    failures.push(format!("{} @ {version}: render failed: {e}", profile.name));
                    continue;
                }
            };
            for doc in &docs {
                *counts.entry(version).or_insert(0usize) += 1;
                if let Err(f) = schemas.validate(&doc.value) {
                    failures.push(format!("{} @ {version} ({}): {f}", profile.name, doc.source));
                }
                // Helm reads a bad hook annotation as weight 0 or no event without a word: refuse it here.
                if let Err(e) = doc.hook() {
                    failures.push(format!("{} @ {version} ({}): {e}", profile.name, doc.source));
                }
            }
        }
    }
    for (version, count) in &counts {
        eprintln!("validated {count} documents at Kubernetes {version} ({} profiles)", profiles.len());
    }
    assert!(failures.is_empty(), "{} problem(s):\n{}", failures.len(), failures.join("\n"));
}
