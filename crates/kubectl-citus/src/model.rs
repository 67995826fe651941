//! What the commands gather: plain data, no IO and no printing. These structs ARE the `-o json|yaml` shape
//! (documented in README.md, "Output shapes"); renaming a field is a breaking change.

use serde::Serialize;

/// `apiVersion` of every document this tool prints.
pub const API_VERSION: &str = "kubectl-citus/v1";

/// `kubectl citus status`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Status {
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    pub kind: &'static str,
    /// Coordinator first, then workers by group id.
    pub nodes: Vec<Node>,
    pub shards: ShardSummary,
    pub tables: TableSummary,
    /// The running or most recent background job (rebalance or drain); null when there never was one.
    pub rebalance: Option<RebalanceJob>,
    /// Only in cluster mode: worker pods vs registered nodes.
    pub pods: Option<PodCheck>,
    /// Why per-node facts (versions, reachability) are missing, when the coordinator could not collect them.
    pub node_check_error: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Coordinator,
    Worker,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Node {
    /// pg_dist_node.nodeid; null for a coordinator that never registered itself.
    pub id: Option<i32>,
    pub group_id: i32,
    pub role: Role,
    pub name: String,
    pub port: i32,
    pub active: bool,
    pub should_have_shards: bool,
    /// null when it was not checked (inactive node, or the check itself failed).
    pub reachable: Option<bool>,
    pub error: Option<String>,
    pub postgres_version: Option<String>,
    /// Version of the loaded citus.so.
    pub citus_version: Option<String>,
    /// Version of the citus extension installed in the database (`pg_extension.extversion`).
    pub citus_extension_version: Option<String>,
    /// Version `ALTER EXTENSION citus UPDATE` would install (the library's control file).
    pub citus_default_version: Option<String>,
    pub wal_level: Option<String>,
    /// Placements of distributed (not reference) tables.
    pub shards: i64,
    pub shard_bytes: i64,
    /// All placements, reference tables included.
    pub placements: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShardSummary {
    pub total: i64,
    pub bytes: i64,
    /// Largest worker / average worker, by bytes, over active workers that accept shards (1.0 = even).
    pub skew_bytes: f64,
    /// Same by shard count.
    pub skew_count: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TableSummary {
    pub distributed: i64,
    pub reference: i64,
    pub local: i64,
    pub list: Vec<Table>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Table {
    pub name: String,
    /// distributed | reference | local (as citus_tables says).
    #[serde(rename = "type")]
    pub kind: String,
    pub distribution_column: Option<String>,
    pub colocation_id: i64,
    pub shard_count: i64,
    pub bytes: i64,
    /// false = online (logical replication) shard moves of this table fail.
    pub has_replica_identity: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RebalanceJob {
    pub job_id: i64,
    /// pg_dist_background_job.state: scheduled, running, finished, cancelling, cancelled, failing, failed.
    pub state: String,
    pub job_type: String,
    pub description: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub tasks_total: i64,
    pub tasks_done: i64,
    pub tasks_running: i64,
    /// Tasks in state error or cancelled.
    pub tasks_failed: i64,
    /// The newest message a task left (errors of failed moves land here).
    pub last_message: Option<String>,
    /// Shard moves in progress right now (get_rebalance_progress()).
    pub moves: Vec<ShardMove>,
}

impl RebalanceJob {
    pub fn is_running(&self) -> bool {
        matches!(self.state.as_str(), "scheduled" | "running" | "cancelling" | "failing")
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShardMove {
    pub table: String,
    pub shard_id: i64,
    pub source: String,
    pub target: String,
    /// 0 = waiting, 1 = moving, 2 = done (get_rebalance_progress().progress).
    pub progress: i32,
    pub source_bytes: i64,
    pub target_bytes: i64,
}

/// One move of a rebalance plan (get_rebalance_table_shards_plan()).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlannedMove {
    pub table: String,
    pub shard_id: i64,
    pub bytes: i64,
    pub source: String,
    pub target: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct PodCheck {
    /// Worker pods whose DNS name is not in pg_dist_node.
    pub unregistered_pods: Vec<String>,
    /// Registered workers (host:port) that match no worker pod.
    pub nodes_without_pod: Vec<String>,
}

/// A leftover pg_dist_cleanup record.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CleanupRecord {
    pub record_id: i64,
    pub object_name: String,
    pub node_group_id: i32,
    /// false: the record names a node group that is no longer in pg_dist_node (it blocks later moves).
    pub node_exists: bool,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// One hazard `doctor` found: what, where and the fix.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Hazard {
    /// Stable identifier (README lists them all).
    pub check: &'static str,
    pub severity: Severity,
    /// The node, table or pod it concerns.
    pub subject: String,
    pub message: String,
    pub fix: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DoctorReport {
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    pub kind: &'static str,
    /// Every check that ran (a check missing here could not run, e.g. pods in direct mode).
    pub checks: Vec<&'static str>,
    pub hazards: Vec<Hazard>,
}

/// Outcome of `rebalance`, `rebalance status|stop` and `drain`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RebalanceReport {
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    pub kind: &'static str,
    /// started | nothing-to-do | finished | failed | running | stopped | left-running | drained | no-job
    pub outcome: String,
    pub job: Option<RebalanceJob>,
    pub planned: Vec<PlannedMove>,
    /// Set by drain: the node and what remains on it.
    pub drained_node: Option<DrainedNode>,
    /// What to run next, when anything.
    pub next: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DrainedNode {
    pub name: String,
    pub port: i32,
    pub shards_left: i64,
    pub cleanup_records_left: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Backup {
    /// Directory name in the backup volume (UTC timestamp).
    pub name: String,
    pub bytes: i64,
    pub age_seconds: i64,
    /// false for a backup still being written (`.partial-*`).
    pub complete: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BackupList {
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    pub kind: &'static str,
    pub claim: String,
    pub backups: Vec<Backup>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BackupStarted {
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    pub kind: &'static str,
    pub job: String,
    pub namespace: String,
    /// created | succeeded | failed
    pub state: String,
    pub logs: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReportWritten {
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    pub kind: &'static str,
    pub file: String,
    pub entries: Vec<String>,
    /// Parts that could not be collected, with the reason (the report is still written).
    pub skipped: Vec<String>,
}
