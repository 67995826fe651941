//! `cargo xtask render`: the chart rendered by real Helm, printed like `helm template`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use helm_engine::{Helm, RenderOptions};

use crate::values;

#[derive(clap::Args)]
pub struct Args {
    /// Values file (repeatable, later files win).
    #[arg(short = 'f', long = "values")]
    values: Vec<PathBuf>,
    /// Set a value: dotted.key=value (repeatable, after the files).
    #[arg(long = "set")]
    set: Vec<String>,
    #[arg(long, default_value = "my-citus")]
    release: String,
    #[arg(short, long, default_value = "citus")]
    namespace: String,
    /// Kubernetes version to render for, e.g. v1.23.0.
    #[arg(long)]
    kube_version: Option<String>,
    /// Render as `helm upgrade` would.
    #[arg(long)]
    is_upgrade: bool,
    /// Write to this file instead of standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Chart directory (default: charts/citus).
    #[arg(long, hide = true)]
    chart: Option<PathBuf>,
}

pub fn run(root: &Path, args: &Args) -> Result<()> {
    let values = values::load(&args.values, &args.set)?;
    let chart = args.chart.clone().unwrap_or_else(|| root.join("charts/citus"));
    let options = RenderOptions {
        release_name: args.release.clone(),
        namespace: args.namespace.clone(),
        kube_version: args.kube_version.clone(),
        is_upgrade: args.is_upgrade,
        ..RenderOptions::default()
    };
    let helm = Helm::discover()?;
    let rendered = helm.render(&chart, &values, &options).with_context(|| format!("rendering {}", chart.display()))?;
    let stream = rendered.to_yaml_stream();
    match &args.output {
        Some(path) => fs::write(path, stream).with_context(|| format!("writing {}", path.display()))?,
        None => print!("{stream}"),
    }
    Ok(())
}
