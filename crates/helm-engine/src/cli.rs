//! The `helm` binary as a backend, for machines that have one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::options::{LintMessage, LintOptions, LintReport, RenderOptions, Severity};
use crate::Error;

pub(crate) fn find_on_path() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|dir| dir.join("helm")).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|candidate| candidate.is_file())
}

pub(crate) fn render(
    helm: &Path,
    chart_dir: &Path,
    values: &serde_json::Value,
    options: &RenderOptions,
) -> Result<BTreeMap<String, String>, Error> {
    let values_file = values_file(values)?;
    let mut cmd = Command::new(helm);
    cmd.arg("template").arg(&options.release_name).arg(chart_dir);
    cmd.arg("--namespace").arg(&options.namespace).arg("--values").arg(values_file.path());
    if let Some(version) = &options.kube_version {
        cmd.arg("--kube-version").arg(version);
    }
    for api in &options.api_versions {
        cmd.arg("--api-versions").arg(api);
    }
    if options.is_upgrade {
        cmd.arg("--is-upgrade");
    }
    let stdout = run(&mut cmd, classify)?;
    Ok(split_sources(&stdout))
}

pub(crate) fn lint(
    helm: &Path,
    chart_dir: &Path,
    values: &serde_json::Value,
    options: &LintOptions,
) -> Result<LintReport, Error> {
    let values_file = values_file(values)?;
    let mut cmd = Command::new(helm);
    cmd.arg("lint").arg(chart_dir).arg("--namespace").arg(&options.namespace);
    cmd.arg("--values").arg(values_file.path());
    if options.strict {
        cmd.arg("--strict");
    }
    if let Some(version) = &options.kube_version {
        cmd.arg("--kube-version").arg(version);
    }
    // helm lint exits non-zero when it finds errors; the report is what matters here.
    let output = cmd.output().map_err(|source| Error::Io { action: "running helm lint".into(), source })?;
    let text = String::from_utf8_lossy(&output.stdout);
    let messages = text
        .lines()
        .filter_map(|line| {
            let (severity, rest) =
                [("[ERROR]", Severity::Error), ("[WARNING]", Severity::Warning), ("[INFO]", Severity::Info)]
                    .into_iter()
                    .find_map(|(tag, sev)| line.trim().strip_prefix(tag).map(|rest| (sev, rest)))?;
            let (path, text) = rest.trim().split_once(": ").unwrap_or(("", rest.trim()));
            Some(LintMessage { severity, path: path.to_owned(), text: text.to_owned() })
        })
        .collect();
    Ok(LintReport { messages })
}

fn values_file(values: &serde_json::Value) -> Result<tempfile::NamedTempFile, Error> {
    let io = |action: &str| {
        let action = action.to_owned();
        move |source| Error::Io { action, source }
    };
    let mut file = tempfile::Builder::new().suffix(".json").tempfile().map_err(io("creating a values file"))?;
    serde_json::to_writer(&mut file, values)
        .map_err(|e| Error::Parse { what: "values".into(), message: e.to_string() })?;
    file.flush().map_err(io("writing the values file"))?;
    Ok(file)
}

fn run(cmd: &mut Command, on_error: impl Fn(String) -> Option<Error>) -> Result<String, Error> {
    let output = cmd.output().map_err(|source| Error::Io { action: format!("running {cmd:?}"), source })?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    Err(on_error(stderr.clone()).unwrap_or_else(|| Error::Cli {
        command: format!("{cmd:?}"),
        status: output.status.to_string(),
        stderr,
    }))
}

/// Maps helm's error text to the same variants the library backend returns.
fn classify(stderr: String) -> Option<Error> {
    if stderr.contains("values don't meet the specifications of the schema") {
        Some(Error::Values { message: stderr })
    } else if stderr.contains("execution error at") || stderr.contains("template:") {
        Some(Error::Render { message: stderr })
    } else {
        None
    }
}

/// `helm template` prints `# Source: <path>` before each document; group them back per template.
fn split_sources(stream: &str) -> BTreeMap<String, String> {
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in stream.split_inclusive('\n') {
        if let Some(path) = line.strip_prefix("# Source: ") {
            let path = path.trim().to_owned();
            let text = files.entry(path.clone()).or_default();
            if !text.is_empty() {
                text.push_str("---\n");
            }
            current = Some(path);
        } else if let Some(path) = &current {
            if line.trim_end() != "---" {
                files.entry(path.clone()).or_default().push_str(line);
            }
        }
    }
    files
}
