//! The command line (clap derive; doc comments are the help text).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Day-2 operations for Citus (distributed PostgreSQL) installed with the citus Helm chart, or any Citus
/// coordinator reachable with --dsn.
#[derive(Debug, Parser)]
#[command(name = "kubectl-citus", bin_name = "kubectl citus", version)]
pub struct Cli {
    #[command(flatten)]
    pub target: TargetArgs,

    /// Output format of the result (progress always goes to stderr).
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table, global = true)]
    pub output: OutputFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Yaml,
}

/// Where the coordinator is: a Helm release in a cluster, or a PostgreSQL connection.
#[derive(Debug, Clone, Default, Args)]
pub struct TargetArgs {
    /// Connect directly to this coordinator (URL `postgresql://...` or `host=... port=...`); the PG*
    /// environment fills what it leaves out. `--dsn ''` uses only the PG* environment.
    #[arg(long, global = true)]
    pub dsn: Option<String>,

    /// Helm release of the citus chart (cluster mode).
    #[arg(short = 'r', long, global = true)]
    pub release: Option<String>,

    /// The chart's fullnameOverride, if the release used one (names the Secret, pods and CronJob).
    #[arg(long, global = true)]
    pub fullname: Option<String>,

    /// Kubernetes namespace of the release (default: the context's namespace).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,

    /// kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,

    /// Path of the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,

    /// Secret holding the password (default `<fullname>-secret`; the chart's auth.existingSecret).
    #[arg(long, global = true)]
    pub secret: Option<String>,

    /// Key of the password in that Secret (the chart's auth.secretKeys.adminPasswordKey).
    #[arg(long, global = true, default_value = "postgres-password")]
    pub secret_key: String,

    /// Database user in cluster mode.
    #[arg(long, global = true, default_value = "postgres")]
    pub user: String,

    /// Database with the citus extension in cluster mode (the chart's auth.database).
    #[arg(long, global = true, default_value = "citus")]
    pub database: String,

    /// Seconds to wait for a connection.
    #[arg(long, global = true, default_value_t = 15)]
    pub connect_timeout: u64,
}

impl TargetArgs {
    /// Kubernetes flags given on the command line (they select cluster mode over the PG* environment).
    pub fn has_kube_flags(&self) -> bool {
        self.release.is_some() || self.namespace.is_some() || self.context.is_some() || self.kubeconfig.is_some()
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Nodes, versions, shards per worker and skew, tables, the running or last rebalance.
    Status,
    /// Look for known hazards and print each with its fix; exit code 1 when any was found.
    Doctor(DoctorArgs),
    /// Start a background rebalance (or `rebalance status|stop`).
    Rebalance(RebalanceArgs),
    /// Move every shard off a worker so that it can be removed; refuses what would lose data.
    Drain(DrainArgs),
    /// Interactive psql on the coordinator (arguments after `--` go to psql).
    Psql(PsqlArgs),
    /// Backups made by the chart's backup CronJob.
    Backup(BackupArgs),
    /// Write a zip for a bug report: manifests, events, logs, pg_dist_* tables, settings; secrets redacted.
    Report(ReportArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// Report shard skew when the fullest worker holds more than this times the average bytes.
    #[arg(long, default_value_t = 1.5)]
    pub skew_threshold: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum TransferMode {
    /// Logical replication when every table has a replica identity (Citus's default).
    Auto,
    /// Logical replication, also for tables without replica identity (their UPDATE/DELETE fail meanwhile).
    ForceLogical,
    /// Copy while writes to each moved shard wait.
    BlockWrites,
}

impl TransferMode {
    pub fn sql_name(self) -> &'static str {
        match self {
            TransferMode::Auto => "auto",
            TransferMode::ForceLogical => "force_logical",
            TransferMode::BlockWrites => "block_writes",
        }
    }
}

#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RebalanceArgs {
    #[command(subcommand)]
    pub action: Option<RebalanceAction>,

    /// Rebalance strategy (pg_dist_rebalance_strategy.name, e.g. by_disk_size, by_shard_count).
    #[arg(long)]
    pub strategy: Option<String>,

    /// How shards are copied.
    #[arg(long, value_enum, default_value_t = TransferMode::Auto)]
    pub shard_transfer_mode: TransferMode,

    /// Follow the rebalance with progress bars until it ends (Ctrl-C asks whether to stop it).
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum RebalanceAction {
    /// The running or last rebalance with its moves in progress.
    Status,
    /// Stop the running rebalance (moves already done stay done).
    Stop,
}

#[derive(Debug, Clone, Args)]
pub struct DrainArgs {
    /// The worker: `host[:port]` as in pg_dist_node, its node id, or (cluster mode) its pod name.
    pub node: String,

    /// Follow the drain until it ends, then clean up orphaned resources and check the node is empty.
    #[arg(long)]
    pub wait: bool,

    /// How shards are copied.
    #[arg(long, value_enum, default_value_t = TransferMode::Auto)]
    pub shard_transfer_mode: TransferMode,
}

#[derive(Debug, Clone, Args)]
pub struct PsqlArgs {
    /// psql executable.
    #[arg(long, default_value = "psql")]
    pub psql: String,

    /// Arguments for psql.
    #[arg(last = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub action: BackupAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum BackupAction {
    /// Start a backup now: a Job from the release's backup CronJob (like `kubectl create job --from=cronjob/...`).
    Now {
        /// Wait for the Job to finish and print its log.
        #[arg(long)]
        wait: bool,
        /// Seconds to wait with --wait.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
    /// List the backups in the backup volume with size and age (runs a short Job that mounts it).
    List {
        /// Seconds to wait for the listing Job.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Zip file to write (default `citus-report-<UTC time>.zip`).
    #[arg(short = 'f', long)]
    pub file: Option<PathBuf>,

    /// Log lines kept per container.
    #[arg(long, default_value_t = 2000)]
    pub log_lines: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kubectl-citus").chain(args.iter().copied()))
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_after_subcommand() {
        let cli = parse(&["status", "-o", "json", "-n", "db", "--release", "prod", "--context", "k"]).unwrap();
        assert!(matches!(cli.command, Command::Status));
        assert_eq!(cli.output, OutputFormat::Json);
        assert_eq!(cli.target.namespace.as_deref(), Some("db"));
        assert_eq!(cli.target.release.as_deref(), Some("prod"));
        assert_eq!(cli.target.context.as_deref(), Some("k"));
        assert_eq!(cli.target.secret_key, "postgres-password");
        assert!(cli.target.has_kube_flags());
    }

    #[test]
    fn output_defaults_to_table_and_rejects_unknown() {
        assert_eq!(parse(&["status"]).unwrap().output, OutputFormat::Table);
        assert!(parse(&["status", "-o", "xml"]).is_err());
    }

    #[test]
    fn rebalance_forms() {
        let cli = parse(&["rebalance", "--strategy", "by_shard_count", "--wait"]).unwrap();
        let Command::Rebalance(r) = cli.command else { panic!("not rebalance") };
        assert!(r.wait && r.action.is_none());
        assert_eq!(r.strategy.as_deref(), Some("by_shard_count"));
        assert_eq!(r.shard_transfer_mode, TransferMode::Auto);

        let Command::Rebalance(r) = parse(&["rebalance", "status"]).unwrap().command else { panic!() };
        assert!(matches!(r.action, Some(RebalanceAction::Status)));
        let Command::Rebalance(r) = parse(&["rebalance", "stop"]).unwrap().command else { panic!() };
        assert!(matches!(r.action, Some(RebalanceAction::Stop)));
        // `--wait` belongs to starting one, not to `status`.
        assert!(parse(&["rebalance", "--wait", "status"]).is_err());
    }

    #[test]
    fn drain_needs_a_node_and_takes_transfer_mode() {
        assert!(parse(&["drain"]).is_err());
        let Command::Drain(d) =
            parse(&["drain", "w-2:5432", "--wait", "--shard-transfer-mode", "block_writes"]).unwrap().command
        else {
            panic!()
        };
        assert_eq!(d.node, "w-2:5432");
        assert!(d.wait);
        assert_eq!(d.shard_transfer_mode.sql_name(), "block_writes");
    }

    #[test]
    fn psql_passes_arguments_after_double_dash() {
        let Command::Psql(p) = parse(&["psql", "--", "-c", "select 1"]).unwrap().command else { panic!() };
        assert_eq!(p.args, ["-c", "select 1"]);
        assert_eq!(p.psql, "psql");
    }

    #[test]
    fn backup_and_report() {
        let Command::Backup(b) = parse(&["backup", "now", "--wait"]).unwrap().command else { panic!() };
        assert!(matches!(b.action, BackupAction::Now { wait: true, timeout: 3600 }));
        assert!(parse(&["backup"]).is_err());
        let Command::Report(r) = parse(&["report", "-f", "x.zip"]).unwrap().command else { panic!() };
        assert_eq!(r.file.as_deref(), Some(std::path::Path::new("x.zip")));
    }

    #[test]
    fn doctor_threshold() {
        let Command::Doctor(d) = parse(&["doctor", "--skew-threshold", "2"]).unwrap().command else { panic!() };
        assert_eq!(d.skew_threshold, 2.0);
        let Command::Doctor(d) = parse(&["doctor"]).unwrap().command else { panic!() };
        assert_eq!(d.skew_threshold, 1.5);
    }

    #[test]
    fn dsn_selects_direct_mode_flags() {
        let cli = parse(&["--dsn", "host=127.0.0.1 port=5432", "status"]).unwrap();
        assert_eq!(cli.target.dsn.as_deref(), Some("host=127.0.0.1 port=5432"));
        assert!(!cli.target.has_kube_flags());
    }
}
