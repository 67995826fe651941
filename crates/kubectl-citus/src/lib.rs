//! `kubectl citus`: day-2 operations for Citus on Kubernetes (or any coordinator reachable with --dsn).
//!
//! Layout: `cli` (arguments) -> `connect` (cluster or direct target) -> gathering in `sql` and `k8s` ->
//! decisions in `doctor` and `commands` -> `render` (table, JSON, YAML). Only `render` output and `follow`'s
//! progress reach the terminal.

pub mod cli;
pub mod commands;
pub mod connect;
pub mod doctor;
pub mod error;
pub mod follow;
pub mod k8s;
pub mod model;
pub mod render;
pub mod report;
pub mod sql;

pub use commands::{run, Exit};
pub use error::{Error, Result};

/// Write a command's result; a closed pipe (`| head`) is not an error.
pub fn write_stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

#[cfg(test)]
mod krew_manifest {
    //! plugins/krew/citus.yaml is a krew-release-bot template: filled in like the bot does, it must be a
    //! krew Plugin that installs this binary on every platform.
    #[test]
    fn template_renders_to_a_plugin_for_this_binary() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../plugins/krew/citus.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let re = fill_template(&text);
        let doc: serde_yaml::Value = serde_yaml::from_str(&re).unwrap();
        assert_eq!(doc["kind"], "Plugin");
        assert_eq!(doc["metadata"]["name"], "citus");
        assert_eq!(doc["spec"]["version"], "v0.1.0");
        let platforms = doc["spec"]["platforms"].as_sequence().unwrap();
        assert_eq!(platforms.len(), 4);
        for p in platforms {
            assert_eq!(p["bin"], "kubectl-citus");
            assert!(p["uri"].as_str().unwrap().ends_with(".tar.gz"), "{p:?}");
            assert_eq!(p["sha256"].as_str().unwrap().len(), 64);
        }
    }

    /// What krew-release-bot does to the template, for the test.
    fn fill_template(text: &str) -> String {
        let mut out = String::new();
        for line in text.replace("{{ .TagName }}", "v0.1.0").lines() {
            if let Some(start) = line.find("{{addURIAndSha \"") {
                let indent = &line[..start];
                let rest = &line[start + "{{addURIAndSha \"".len()..];
                let uri = &rest[..rest.find('"').unwrap()];
                out.push_str(&format!("{indent}uri: {uri}\n{indent}sha256: {}\n", "0".repeat(64)));
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}
