//! The images the chart names and what stands in for each on this host (the container runtime's image
//! store). Each image family has a contract the host fulfils:
//! - `citusdata/citus`, `postgres`: PostgreSQL's bin dir first on PATH (the image appends it; first here so
//!   that Debian's `/usr/bin/psql` wrapper never picks another version), `PGDATA=/var/lib/postgresql/data`,
//!   `LANG=C.UTF-8` (the image has en_US.utf8, which the host may lack), `HOME=/` (the pods' uid has no passwd
//!   entry), default user root, stop signal SIGINT (STOPSIGNAL). Its `docker-entrypoint.sh` is never
//!   needed: the chart always sets the command.
//! - `postgres-exporter`: the entrypoint is Debian's `prometheus-postgres-exporter` (the same exporter).
//! - `os-shell`, `busybox`: a POSIX shell and coreutils, which the host has.
//!
//! Installations: `LOCAL_CLUSTER_IMAGES="citusdata/citus:13.2.2=/opt/citus-13.2.2,..."` maps an image
//! (repository:tag, any registry) to a directory tree (a `make install DESTDIR=` root) laid read-only over
//! the host's directories in that pod, so an image bump really changes the Citus library a pod loads.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::signal::Signal;

use crate::error::{Error, Result};
use crate::sandbox::mounts::{Mount, Source};

/// Environment variable mapping images to installation roots.
pub const IMAGES_ENV: &str = "LOCAL_CLUSTER_IMAGES";

pub const DEFAULT_UID: u32 = 0;

/// Where further Citus builds are found when [`IMAGES_ENV`] is not set: `/opt/citus-<tag>`, each a
/// `make install DESTDIR=` root, plays `citusdata/citus:<tag>`.
pub const BUILDS_DIR: &str = "/opt";

/// The image-to-installation mapping: [`IMAGES_ENV`] when set, else every `/opt/citus-<tag>` that holds a
/// `citus.so` under `usr/lib/postgresql/*/lib`.
pub fn images_spec() -> String {
    if let Ok(spec) = std::env::var(IMAGES_ENV) {
        return spec;
    }
    let Ok(entries) = std::fs::read_dir(BUILDS_DIR) else { return String::new() };
    let mut found: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let tag = name.strip_prefix("citus-")?.to_owned();
            let majors = std::fs::read_dir(e.path().join("usr/lib/postgresql")).ok()?;
            let has_library = majors.filter_map(|m| m.ok()).any(|m| m.path().join("lib/citus.so").exists());
            has_library.then(|| format!("citusdata/citus:{tag}={}", e.path().display()))
        })
        .collect();
    found.sort();
    found.join(",")
}

/// The PostgreSQL installation that plays the image's.
#[derive(Debug, Clone)]
pub struct Postgres {
    pub bindir: PathBuf,
    pub pkglibdir: PathBuf,
}

impl Postgres {
    /// Asks `pg_config` (e.g. `/usr/lib/postgresql/15/bin/pg_config`).
    pub fn from_pg_config(pg_config: &Path) -> Result<Self> {
        let output =
            Command::new(pg_config).args(["--bindir", "--pkglibdir"]).output().map_err(|e| Error::Command {
                command: format!("{} --bindir --pkglibdir", pg_config.display()),
                status: e.to_string(),
                stderr: String::new(),
            })?;
        let text = String::from_utf8_lossy(&output.stdout);
        let mut lines = text.lines();
        match (output.status.success(), lines.next(), lines.next()) {
            (true, Some(bin), Some(lib)) => Ok(Postgres { bindir: bin.into(), pkglibdir: lib.into() }),
            _ => Err(Error::Command {
                command: format!("{} --bindir --pkglibdir", pg_config.display()),
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            }),
        }
    }

    /// Where Citus would be: `citus.so` in the package library dir.
    pub fn citus_library(&self) -> PathBuf {
        self.pkglibdir.join("citus.so")
    }

    /// PATH of a PostgreSQL image.
    fn path(&self) -> String {
        format!("{}:{STANDARD_PATH}", self.bindir.display())
    }
}

const STANDARD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a container of an image gets from it here.
#[derive(Debug, Clone)]
pub struct ImageRuntime {
    /// The image's environment, before the container's own `env`.
    pub env: Vec<(String, String)>,
    /// ENTRYPOINT, used when the container sets no `command`.
    pub entrypoint: Vec<String>,
    pub stop_signal: Signal,
    /// Read-only layers of an installation mapped to this image.
    pub layers: Vec<Mount>,
}

/// The host's stand-ins for images.
#[derive(Debug, Clone)]
pub struct Images {
    pub postgres: Postgres,
    /// (repository:tag, installation root).
    installations: Vec<(String, PathBuf)>,
}

/// `[registry/]repository[:tag][@digest]` -> (repository without registry, tag).
fn parse_reference(image: &str) -> (String, Option<String>) {
    let name = image.split('@').next().unwrap_or(image);
    let (name, tag) = match name.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t.to_owned())),
        _ => (name, None),
    };
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        parts.remove(0);
    }
    (parts.join("/"), tag)
}

impl Images {
    /// The installations of [`images_spec`]; each root must exist.
    pub fn from_env(postgres: Postgres) -> Result<Self> {
        Self::new(postgres, &images_spec())
    }

    pub fn new(postgres: Postgres, spec: &str) -> Result<Self> {
        let mut installations = Vec::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (image, root) = entry.split_once('=').ok_or_else(|| {
                Error::Manifest(format!("{IMAGES_ENV}: {entry:?} is not <repository>:<tag>=<directory>"))
            })?;
            let (repository, tag) = parse_reference(image.trim());
            let tag = tag.ok_or_else(|| Error::Manifest(format!("{IMAGES_ENV}: {image:?} has no tag")))?;
            let root = PathBuf::from(root.trim());
            if !root.is_dir() {
                return Err(Error::Manifest(format!("{IMAGES_ENV}: {} is not a directory", root.display())));
            }
            installations.push((format!("{repository}:{tag}"), root));
        }
        Ok(Images { postgres, installations })
    }

    /// The installation root an image maps to, if any.
    pub fn installation(&self, image: &str) -> Option<&Path> {
        let (repository, tag) = parse_reference(image);
        let key = format!("{repository}:{}", tag.unwrap_or_default());
        self.installations.iter().find(|(k, _)| *k == key).map(|(_, root)| root.as_path())
    }

    /// What a container of `image` runs with; an image of no known family is refused, naming it.
    pub fn runtime(&self, owner: &str, image: &str, hostname: &str) -> Result<ImageRuntime> {
        let (repository, _) = parse_reference(image);
        let family = repository.rsplit('/').next().unwrap_or_default();
        let env = |path: String, extra: &[(&str, &str)]| {
            [("PATH", path.as_str()), ("HOSTNAME", hostname)]
                .iter()
                .chain(extra)
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<Vec<_>>()
        };
        let (env, entrypoint, stop_signal) = match family {
            "citus" | "postgres" => (
                env(self.postgres.path(), &[("PGDATA", "/var/lib/postgresql/data"), ("LANG", "C.UTF-8"), ("HOME", "/")]),
                Vec::new(),
                Signal::SIGINT,
            ),
            "postgres-exporter" => {
                (env(STANDARD_PATH.to_owned(), &[("HOME", "/")]), vec!["prometheus-postgres-exporter".to_owned()], Signal::SIGTERM)
            }
            "os-shell" | "busybox" => (env(STANDARD_PATH.to_owned(), &[("HOME", "/")]), Vec::new(), Signal::SIGTERM),
            _ => {
                return Err(Error::Unsupported(format!(
                    "{owner}: image {image} has no stand-in here (known: citusdata/citus, postgres, postgres-exporter, os-shell, busybox)"
                )))
            }
        };
        let layers = match self.installation(image) {
            Some(root) => layers(root)?,
            None => Vec::new(),
        };
        Ok(ImageRuntime { env, entrypoint, stop_signal, layers })
    }
}

/// One read-only layer per topmost directory of `root` that holds files, laid over the same host path.
fn layers(root: &Path) -> Result<Vec<Mount>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<Mount>) -> Result<()> {
        let entries: Vec<_> = fs::read_dir(dir)
            .and_then(|e| e.collect::<std::io::Result<Vec<_>>>())
            .map_err(|source| Error::Io { context: format!("reading {}", dir.display()), source })?;
        if entries.iter().any(|e| e.file_type().is_ok_and(|t| !t.is_dir())) {
            let rel = dir.strip_prefix(root).unwrap_or(dir);
            out.push(Mount {
                target: Path::new("/").join(rel),
                source: Source::Layers(vec![dir.to_path_buf()]),
                read_only: true,
            });
            return Ok(());
        }
        for e in entries {
            walk(root, &e.path(), out)?;
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_lose_their_registry_and_digest() {
        assert_eq!(parse_reference("citusdata/citus:13.0.3"), ("citusdata/citus".into(), Some("13.0.3".into())));
        assert_eq!(
            parse_reference("registry.example.com/bitnami/os-shell:12-r40"),
            ("bitnami/os-shell".into(), Some("12-r40".into()))
        );
        assert_eq!(parse_reference("localhost:5000/postgres@sha256:ab"), ("postgres".into(), None));
        assert_eq!(parse_reference("busybox"), ("busybox".into(), None));
    }

    #[test]
    fn installations_map_repository_and_tag_to_layers() -> Result<()> {
        let root = std::env::temp_dir().join(format!("lc-image-test-{}", std::process::id()));
        let io = |e| Error::Io { context: "test fixture".into(), source: e };
        fs::create_dir_all(root.join("usr/lib/pg/lib/bitcode")).map_err(io)?;
        fs::write(root.join("usr/lib/pg/lib/x.so"), b"").map_err(io)?;
        let postgres = Postgres { bindir: "/b".into(), pkglibdir: "/l".into() };
        let images = Images::new(postgres.clone(), &format!("citusdata/citus:13.2.2={}", root.display()))?;
        let rt = images.runtime("pod p", "example.com/citusdata/citus:13.2.2", "p")?;
        assert_eq!(rt.layers.len(), 1);
        assert_eq!(rt.layers[0].target, Path::new("/usr/lib/pg/lib"));
        assert!(images.runtime("pod p", "citusdata/citus:13.0.3", "p")?.layers.is_empty());
        assert!(matches!(images.runtime("pod p", "nginx:1", "p"), Err(Error::Unsupported(m)) if m.contains("nginx:1")));
        assert!(Images::new(postgres, "citusdata/citus=/nope").is_err());
        fs::remove_dir_all(&root).map_err(io)?;
        Ok(())
    }
}
