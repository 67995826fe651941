//! Rendered manifests carry no whitespace-only lines, and empty lines only inside the files the ConfigMaps
//! embed (scripts, exporter queries, dashboard, where they are the files' own content): templates indent
//! through `citus.indent`, never through a bare `nindent` of text that may be empty.

use chart_tests::{options, profiles, KUBE_VERSIONS};

use crate::util::helm;

/// Templates that embed files in block scalars.
const EMBEDDING: [&str; 5] = [
    "templates/scripts-configmap.yaml",
    "templates/registration/scale-in-configmap.yaml",
    "templates/metrics/queries-configmap.yaml",
    "templates/metrics/grafana-dashboard.yaml",
    "templates/configmap.yaml",
];

#[test]
fn no_profile_renders_whitespace_only_lines() {
    let helm = helm();
    let mut problems = Vec::new();
    for profile in profiles().expect("profiles") {
        let rendered =
            helm.render(&chart_tests::chart_dir(), &profile.values, &options(KUBE_VERSIONS[1])).expect("render");
        for (path, text) in rendered.files.iter().filter(|(p, _)| !p.ends_with("NOTES.txt")) {
            let embeds = EMBEDDING.iter().any(|t| path.ends_with(t));
            let body = text.trim_matches('\n');
            for (i, line) in body.lines().enumerate() {
                let blank = line.trim().is_empty();
                if blank && (!line.is_empty() || !embeds) {
                    problems.push(format!("{} {path}:{}: {line:?}", profile.name, i + 1));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{} whitespace-only line(s):\n{}", problems.len(), problems.join("\n"));
}
