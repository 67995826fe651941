//! `cargo xtask <task>`: the project's set-up and entry points (see README.md).

#![forbid(unsafe_code)]

mod package;
mod render;
mod setup;
mod summary;
mod values;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Citus chart tasks: setup, render, schema, package, test")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the tests need into .tools/ (and PostgreSQL with apt); skips what is there.
    Setup {
        /// Only this tool.
        #[arg(long, value_enum)]
        only: Option<setup::Tool>,
    },
    /// Render the chart like `helm template` (default release my-citus in namespace citus).
    Render(render::Args),
    /// Write the chart archive (`helm package`'s .tgz, what `helm push` uploads) into target/chart/.
    Package(package::Args),
    /// Regenerate charts/citus/values.schema.json from the @param/@schema comments of values.yaml.
    Schema,
    /// Install everything, check formatting and clippy (warnings are errors), then run `cargo test --workspace`
    /// with the tools' locations set.
    Test {
        /// Extra arguments for cargo test (after `--`).
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let root = workspace_root();
    match cli.task {
        Task::Setup { only } => {
            setup::run(&root, only)?;
            Ok(ExitCode::SUCCESS)
        }
        Task::Render(args) => {
            setup::run(&root, Some(setup::Tool::Helm))?;
            render::run(&root, &args)?;
            Ok(ExitCode::SUCCESS)
        }
        Task::Package(args) => {
            package::run(&root, &args)?;
            Ok(ExitCode::SUCCESS)
        }
        Task::Schema => {
            let chart = chart_values::chart_dir();
            let text = std::fs::read_to_string(chart.join("values.yaml")).context("reading values.yaml")?;
            let doc = chart_values::ValuesDoc::parse(&text)?;
            let schema = format!("{}\n", serde_json::to_string_pretty(&doc.json_schema())?);
            std::fs::write(chart.join("values.schema.json"), schema).context("writing values.schema.json")?;
            eprintln!("wrote {}", chart.join("values.schema.json").display());
            Ok(ExitCode::SUCCESS)
        }
        Task::Test { cargo_args } => {
            setup::run(&root, None)?;
            let lints = lint(&root)?;
            // --no-fail-fast: a failing test binary must not hide the results of the ones after it.
            let mut child = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .current_dir(&root)
                .args(["test", "--workspace", "--no-fail-fast"])
                .args(&cargo_args)
                .envs(setup::tool_env(&root))
                .stdout(Stdio::piped())
                .spawn()
                .context("running cargo test")?;
            let mut totals = summary::Totals::default();
            let stdout = child.stdout.take().context("cargo test's output")?;
            for line in BufReader::new(stdout).lines() {
                let line = line.context("reading cargo test's output")?;
                println!("{line}");
                totals.add_line(&line);
            }
            let status = child.wait().context("waiting for cargo test")?;
            println!("xtask test: {totals}");
            if !lints.is_empty() {
                println!("xtask test: failed before the tests ran: {}", lints.join("; "));
            }
            Ok(if status.success() && lints.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}

/// `cargo fmt --check` and clippy with warnings as errors over every target; returns the commands that
/// failed (the tests run anyway, so that one run shows everything).
fn lint(root: &Path) -> Result<Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut failed = Vec::new();
    for args in [
        &["fmt", "--all", "--", "--check"][..],
        &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"][..],
    ] {
        let status = Command::new(&cargo)
            .current_dir(root)
            .args(args)
            .status()
            .with_context(|| format!("running cargo {}", args.join(" ")))?;
        if !status.success() {
            failed.push(format!("`cargo {}` ({status})", args.join(" ")));
        }
    }
    Ok(failed)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}
