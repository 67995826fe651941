//! `cargo xtask package`: the chart archive `helm package` makes (and `helm push` uploads to an OCI
//! registry): a gzipped tar of every chart file under `<name>/`, without what `.helmignore` excludes, named
//! `<name>-<version>.tgz`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use flate2::write::GzEncoder;
use flate2::Compression;

#[derive(clap::Args)]
pub struct Args {
    /// Directory of the archive.
    #[arg(short = 'd', long, default_value = "target/chart")]
    destination: PathBuf,
}

pub fn run(root: &Path, args: &Args) -> Result<()> {
    let destination = root.join(&args.destination);
    let archive = package(&root.join("charts/citus"), &destination)?;
    eprintln!("wrote {}", archive.display());
    eprintln!("push it with: helm push {} oci://<registry>/<repository>", archive.display());
    Ok(())
}

/// Writes `<name>-<version>.tgz` of the chart in `chart` into `destination` and returns its path.
pub fn package(chart: &Path, destination: &Path) -> Result<PathBuf> {
    let chart_yaml = fs::read_to_string(chart.join("Chart.yaml")).context("reading Chart.yaml")?;
    let meta: serde_yaml::Value = serde_yaml::from_str(&chart_yaml).context("parsing Chart.yaml")?;
    let field = |key: &str| meta[key].as_str().map(str::to_owned).with_context(|| format!("Chart.yaml has no {key}"));
    let (name, version) = (field("name")?, field("version")?);
    let ignore = match fs::read_to_string(chart.join(".helmignore")) {
        Ok(text) => HelmIgnore::parse(&text),
        Err(_) => HelmIgnore::default(),
    };
    let mut files = Vec::new();
    collect(chart, Path::new(""), &ignore, &mut files)?;
    // Helm writes Chart.yaml, values.yaml and the schema first, then the rest; the order is cosmetic.
    files.sort_by_key(|p| (rank(p), p.clone()));
    if !files.iter().any(|p| p == Path::new("values.yaml")) {
        bail!("{} has no values.yaml", chart.display());
    }

    fs::create_dir_all(destination).with_context(|| format!("creating {}", destination.display()))?;
    let path = destination.join(format!("{name}-{version}.tgz"));
    let partial = path.with_extension("tgz.partial");
    let file = fs::File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let mut tar = tar::Builder::new(GzEncoder::new(file, Compression::default()));
    tar.mode(tar::HeaderMode::Deterministic);
    for relative in &files {
        let data = fs::read(chart.join(relative)).with_context(|| format!("reading {}", relative.display()))?;
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        let entry = Path::new(&name).join(relative);
        tar.append_data(&mut header, &entry, data.as_slice()).with_context(|| format!("adding {}", entry.display()))?;
    }
    tar.into_inner().context("finishing the tar stream")?.finish().context("finishing the gzip stream")?;
    fs::rename(&partial, &path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(path)
}

fn rank(path: &Path) -> u8 {
    match path.to_str() {
        Some("Chart.yaml") => 0,
        Some("values.yaml") => 1,
        Some("values.schema.json") => 2,
        _ if path.starts_with("templates") => 3,
        _ => 4,
    }
}

/// Every file below `dir` (paths relative to the chart), skipping what `.helmignore` excludes.
fn collect(chart: &Path, dir: &Path, ignore: &HelmIgnore, out: &mut Vec<PathBuf>) -> Result<()> {
    let full = chart.join(dir);
    for entry in fs::read_dir(&full).with_context(|| format!("reading {}", full.display()))? {
        let entry = entry?;
        let relative = dir.join(entry.file_name());
        let kind = entry.file_type()?;
        if ignore.ignores(&relative, kind.is_dir()) {
            continue;
        }
        if kind.is_dir() {
            collect(chart, &relative, ignore, out)?;
        } else if kind.is_file() {
            out.push(relative);
        } else {
            bail!(
                "{} is neither a file nor a directory (Helm does not package symlinks to outside the chart)",
                relative.display()
            );
        }
    }
    Ok(())
}

/// The `.helmignore` rules this chart uses: `name`, `*.ext`, `prefix*` (any path component), `dir/`
/// (directories only), `path/with/slash` (from the chart root). Negations (`!`) are refused, not ignored.
#[derive(Default)]
struct HelmIgnore {
    patterns: Vec<(String, bool)>,
}

impl HelmIgnore {
    fn parse(text: &str) -> HelmIgnore {
        let patterns = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| match l.strip_suffix('/') {
                Some(dir) => (dir.to_owned(), true),
                None => (l.to_owned(), false),
            })
            .collect();
        HelmIgnore { patterns }
    }

    fn ignores(&self, path: &Path, is_dir: bool) -> bool {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let full = path.to_str().unwrap_or_default();
        self.patterns.iter().any(|(pattern, dir_only)| {
            if *dir_only && !is_dir {
                return false;
            }
            if pattern.contains('/') {
                glob(pattern, full)
            } else {
                glob(pattern, name)
            }
        })
    }
}

/// `*` matches any run of characters (no `/`), `?` one character; the rest literally.
fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).take_while(|&i| i == 0 || t[i - 1] != '/').any(|i| go(rest, &t[i..])),
            Some(('?', rest)) => t.first().is_some_and(|c| *c != '/') && go(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    go(&p, &t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn helmignore_patterns() {
        let ignore = HelmIgnore::parse("# c\n.DS_Store\n*.swp\n*~\nci/\n.git/\ntemplates/skip.yaml\n");
        assert!(ignore.ignores(Path::new("ci"), true));
        assert!(!ignore.ignores(Path::new("ci"), false));
        assert!(ignore.ignores(Path::new("files/a.swp"), false));
        assert!(ignore.ignores(Path::new("values.yaml~"), false));
        assert!(ignore.ignores(Path::new("templates/skip.yaml"), false));
        assert!(!ignore.ignores(Path::new("templates/keep.yaml"), false));
        assert!(!ignore.ignores(Path::new("README.md"), false));
    }

    /// The archive holds the chart's files under `citus/`, without `ci/`, and Helm renders it exactly like
    /// the chart directory.
    #[test]
    fn helm_renders_the_archive_like_the_directory() {
        let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/citus");
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = package(&chart, dir.path()).expect("package");
        assert!(archive
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("citus-") && n.ends_with(".tgz")));

        let mut names = Vec::new();
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(fs::File::open(&archive).expect("open")));
        for entry in tar.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let name = entry.path().expect("path").display().to_string();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).expect("read");
            let original = fs::read(chart.join(name.strip_prefix("citus/").expect("under citus/"))).expect("original");
            assert_eq!(data, original, "{name} differs from the chart's file");
            names.push(name);
        }
        for expected in [
            "citus/Chart.yaml",
            "citus/values.yaml",
            "citus/values.schema.json",
            "citus/README.md",
            "citus/README.en.md",
            "citus/.helmignore",
            "citus/templates/_helpers.tpl",
            "citus/files/metrics/queries.yaml",
        ] {
            assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
        }
        assert!(!names.iter().any(|n| n.starts_with("citus/ci/")), "ci/ is in .helmignore");

        let Ok(helm) = helm_engine::Helm::discover() else {
            panic!("Helm is needed to read the archive: set CITUS_HELM_LIB (cargo xtask setup installs it)");
        };
        let values = serde_json::json!({"metrics": {"enabled": true}});
        let options = helm_engine::RenderOptions::default();
        let from_dir = helm.render(&chart, &values, &options).expect("render the directory");
        let from_archive = helm.render(&archive, &values, &options).expect("render the archive");
        let strip = |r: &helm_engine::Rendered| -> Vec<String> {
            // Generated passwords differ between renders; everything else must not.
            r.documents()
                .expect("documents")
                .iter()
                .filter(|d| d.kind() != "Secret")
                .map(|d| d.value.to_string())
                .collect()
        };
        assert_eq!(strip(&from_dir), strip(&from_archive));
    }
}
