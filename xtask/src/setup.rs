//! Installs the test tools: Helm as a shared library, the Kubernetes schemas, checkov, PostgreSQL.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

const HELM_SDK: &str = "helm-python-sdk==0.2.2";
const HELM_MEMBER: &str = "helm_python/lib/libhelm_c.so";
const CHECKOV: &str = "checkov==3.3.30";
/// kubernetes-validate releases and the Kubernetes version whose strict schema each provides:
/// 1.30.0 is the newest that still carries 1.23, 1.37.0 the newest there is.
const SCHEMAS: [(&str, &str); 2] = [("1.30.0", "v1.23.0"), ("1.37.0", "v1.37.0")];

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Tool {
    Helm,
    Schemas,
    Checkov,
    Postgres,
}

pub fn run(root: &Path, only: Option<Tool>) -> Result<()> {
    let wanted = |tool| only.is_none_or(|o| o == tool);
    if wanted(Tool::Helm) {
        helm(root)?;
    }
    if wanted(Tool::Schemas) {
        schemas(root)?;
    }
    if wanted(Tool::Checkov) {
        checkov(root)?;
    }
    if wanted(Tool::Postgres) {
        postgres()?;
    }
    Ok(())
}

/// The environment that tells the tests where the tools are.
pub fn tool_env(root: &Path) -> Vec<(&'static str, PathBuf)> {
    let tools = root.join(".tools");
    vec![
        ("CITUS_HELM_LIB", tools.join("helm/libhelm_c.so")),
        ("CITUS_K8S_SCHEMAS", tools.join("k8s-schemas")),
        ("CITUS_CHECKOV", tools.join("checkov/bin/checkov")),
    ]
}

fn helm(root: &Path) -> Result<()> {
    let target = root.join(".tools/helm/libhelm_c.so");
    if target.exists() {
        return step("helm", "present");
    }
    let wheel = download(root, HELM_SDK)?;
    extract(&wheel, HELM_MEMBER, &target)?;
    step("helm", &format!("extracted {}", target.display()))
}

fn schemas(root: &Path) -> Result<()> {
    for (release, kube) in SCHEMAS {
        let target = root.join(format!(".tools/k8s-schemas/{kube}/_definitions.json"));
        if target.exists() {
            step("schemas", &format!("{kube} present"))?;
            continue;
        }
        let wheel = download(root, &format!("kubernetes-validate=={release}"))?;
        let member = format!("kubernetes_validate/kubernetes-json-schema/{kube}-local-strict/_definitions.json");
        extract(&wheel, &member, &target)?;
        step("schemas", &format!("{kube} extracted"))?;
    }
    Ok(())
}

fn checkov(root: &Path) -> Result<()> {
    let venv = root.join(".tools/checkov");
    let bin = venv.join("bin/checkov");
    if bin.exists() {
        return step("checkov", "present");
    }
    exec(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    exec(Command::new(venv.join("bin/pip")).args(["install", "--quiet", CHECKOV]))?;
    step("checkov", &format!("installed {CHECKOV}"))
}

fn postgres() -> Result<()> {
    let has_initdb = glob_exists("/usr/lib/postgresql", "bin/initdb");
    let has_nss_wrapper = glob_exists("/usr/lib", "libnss_wrapper.so");
    let has_ip = Path::new("/usr/sbin/ip").exists() || Path::new("/sbin/ip").exists();
    let has_shellcheck = Path::new("/usr/bin/shellcheck").exists();
    // The monitoring tests: promtool (prometheus) for the alerts, the exporter for the Citus queries.
    let has_monitoring =
        Path::new("/usr/bin/promtool").exists() && Path::new("/usr/bin/prometheus-postgres-exporter").exists();
    if has_initdb && has_nss_wrapper && has_ip && has_shellcheck && has_monitoring {
        return step("postgres", "present");
    }
    let install = "apt-get install -y --no-install-recommends postgresql-15 libnss-wrapper iproute2 shellcheck prometheus prometheus-postgres-exporter";
    if !is_root() {
        bail!("PostgreSQL 15, libnss-wrapper, iproute2, shellcheck, promtool or postgres-exporter is missing; as root run: apt-get update && {install}");
    }
    exec(Command::new("apt-get").arg("update").arg("-q"))?;
    exec(Command::new("sh").arg("-c").arg(format!("DEBIAN_FRONTEND=noninteractive {install}")))?;
    // Debian starts a default cluster on port 5432; the tests start their own servers (and exporters, on
    // ports of their own).
    let _ = Command::new("pg_ctlcluster").args(["15", "main", "stop"]).status();
    step(
        "postgres",
        "installed postgresql-15, libnss-wrapper, iproute2, shellcheck, prometheus, prometheus-postgres-exporter",
    )
}

/// `pip download` one package (no dependencies) into .tools/dl and return the wheel's path.
fn download(root: &Path, requirement: &str) -> Result<PathBuf> {
    let dir = root.join(".tools/dl");
    let (name, version) = requirement.split_once("==").context("requirement without a version")?;
    let prefix = format!("{}-{version}-", name.replace('-', "_"));
    if let Some(wheel) = find_wheel(&dir, &prefix)? {
        return Ok(wheel);
    }
    exec(
        Command::new("python3")
            .args(["-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "-d"])
            .arg(&dir)
            .arg(requirement),
    )?;
    find_wheel(&dir, &prefix)?.with_context(|| format!("pip download {requirement} left no wheel in {}", dir.display()))
}

fn find_wheel(dir: &Path, prefix: &str) -> Result<Option<PathBuf>> {
    if !dir.exists() {
        return Ok(None);
    }
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with(prefix) && name.ends_with(".whl") {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// Copies one member of a wheel (a zip file) to `target`, through a temporary file.
fn extract(wheel: &Path, member: &str, target: &Path) -> Result<()> {
    let file = fs::File::open(wheel).with_context(|| format!("opening {}", wheel.display()))?;
    let mut archive = zip::ZipArchive::new(file).with_context(|| format!("reading {}", wheel.display()))?;
    let mut entry = archive.by_name(member).with_context(|| format!("{} has no {member}", wheel.display()))?;
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes).with_context(|| format!("extracting {member}"))?;
    let parent = target.parent().context("target without a directory")?;
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let partial = target.with_extension("partial");
    fs::write(&partial, bytes).with_context(|| format!("writing {}", partial.display()))?;
    fs::rename(&partial, target).with_context(|| format!("renaming to {}", target.display()))
}

fn glob_exists(dir: &str, suffix: &str) -> bool {
    fs::read_dir(dir)
        .map(|entries| entries.flatten().any(|e| e.path().join(suffix).exists() || e.path().ends_with(suffix)))
        .unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

fn exec(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

fn step(tool: &str, what: &str) -> Result<()> {
    eprintln!("setup {tool}: {what}");
    Ok(())
}
