//! What the coordinator knows, as plain structs. Every statement lives here, as a constant, so that the
//! benchmark can run exactly the same SQL through psql.

use std::collections::HashMap;

use tokio_postgres::{Client, Row};

use crate::error::{Error, Result};
use crate::model::*;

/// pg_dist_node (the coordinator's group is 0).
pub const NODES: &str = "\
SELECT nodeid, groupid, nodename::text, nodeport, isactive, shouldhaveshards
  FROM pg_dist_node
 WHERE noderole = 'primary'
 ORDER BY groupid, nodeid";

/// Facts of one server, without calling a Citus function (so it works even when the library and the
/// extension disagree): server version, loaded library, installed and available extension, wal_level.
pub const LOCAL_FACTS: &str = "\
SELECT current_setting('server_version') AS pg,
       current_setting('citus.version', true) AS lib,
       (SELECT extversion FROM pg_extension WHERE extname = 'citus') AS ext,
       (SELECT default_version FROM pg_available_extensions WHERE name = 'citus') AS dflt,
       current_setting('wal_level') AS wal_level";

/// The same facts from every node, collected by the coordinator over Citus's own connections (so it also
/// tells whether the coordinator can reach each node).
pub const NODE_FACTS: &str = "\
SELECT nodeid, success, result
  FROM run_command_on_all_nodes($cmd$
SELECT json_build_array(current_setting('server_version'), current_setting('citus.version', true),
       (SELECT extversion FROM pg_extension WHERE extname = 'citus'),
       (SELECT default_version FROM pg_available_extensions WHERE name = 'citus'),
       current_setting('wal_level'))::text
$cmd$)";

/// Placements and bytes per table and node (one pass over citus_shards, which asks every node for sizes);
/// per-node and per-table sums are made from it.
pub const SHARDS: &str = "\
SELECT table_name::text, citus_table_type::text, nodename::text, nodeport, count(*)::bigint,
       coalesce(sum(shard_size), 0)::bigint
  FROM citus_shards
 GROUP BY 1, 2, 3, 4";

/// Citus tables with whether an online move can copy them (primary key or replica identity).
pub const TABLES: &str = "\
SELECT t.table_name::text, t.citus_table_type::text, nullif(t.distribution_column::text, '<none>'),
       t.colocation_id::bigint, t.shard_count::bigint,
       c.relreplident IN ('f', 'i')
         OR (c.relreplident = 'd' AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
  FROM citus_tables t
  JOIN pg_class c ON c.oid = t.table_name
 ORDER BY 1";

/// The newest background job (rebalance or drain) with its task counts.
pub const LAST_JOB: &str = "\
SELECT j.job_id, j.state::text, j.job_type::text, coalesce(j.description, ''),
       to_char(j.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
       to_char(j.finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
       (SELECT count(*) FROM pg_dist_background_task t WHERE t.job_id = j.job_id)::bigint,
       (SELECT count(*) FROM pg_dist_background_task t WHERE t.job_id = j.job_id AND t.status = 'done')::bigint,
       (SELECT count(*) FROM pg_dist_background_task t WHERE t.job_id = j.job_id AND t.status = 'running')::bigint,
       (SELECT count(*) FROM pg_dist_background_task t WHERE t.job_id = j.job_id AND t.status IN ('error', 'cancelled'))::bigint,
       (SELECT t.message FROM pg_dist_background_task t
         WHERE t.job_id = j.job_id AND t.status IN ('error', 'cancelled', 'runnable')
           AND coalesce(t.message, '') <> '' ORDER BY t.task_id DESC LIMIT 1)
  FROM pg_dist_background_job j
 ORDER BY j.job_id DESC
 LIMIT 1";

/// Shard moves in progress (every row of a move of colocated shards).
pub const PROGRESS: &str = "\
SELECT table_name::text, shardid, sourcename::text || ':' || sourceport, targetname::text || ':' || targetport,
       progress::int, coalesce(source_shard_size, shard_size)::bigint, coalesce(target_shard_size, 0)::bigint
  FROM get_rebalance_progress()
 ORDER BY shardid";

pub const CLEANUP: &str = "\
SELECT c.record_id::bigint, c.object_name, c.node_group_id,
       EXISTS (SELECT 1 FROM pg_dist_node n WHERE n.groupid = c.node_group_id)
  FROM pg_dist_cleanup c
 ORDER BY c.record_id";

/// Every query `status` runs (the benchmark's psql side runs these).
pub const STATUS_QUERIES: &[&str] = &[NODES, LOCAL_FACTS, NODE_FACTS, SHARDS, TABLES, LAST_JOB, PROGRESS];

fn q(action: &str, fix: &str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    let (action, fix) = (action.to_owned(), fix.to_owned());
    move |e| Error::sql(action, fix, e)
}

const FIX_CITUS: &str = "check that this is a Citus coordinator (CREATE EXTENSION citus in this database; \
                         in cluster mode see --database) and that the role may read the pg_dist_* tables";

/// Gather everything `status` shows, with queries pipelined on one connection.
pub async fn status(client: &Client) -> Result<Status> {
    let (nodes, local, facts, shards, tables, job) = futures::join!(
        client.query(NODES, &[]),
        client.query_one(LOCAL_FACTS, &[]),
        client.query(NODE_FACTS, &[]),
        client.query(SHARDS, &[]),
        client.query(TABLES, &[]),
        last_job(client),
    );
    let nodes = nodes.map_err(q("reading pg_dist_node", FIX_CITUS))?;
    let local = local.map_err(q("reading the coordinator's versions", FIX_CITUS))?;
    let shards = shards.map_err(q("reading citus_shards", FIX_CITUS))?;
    let tables = tables.map_err(q("reading citus_tables", FIX_CITUS))?;
    let job = job?;

    let local_facts: [Option<String>; 5] = [local.get(0), local.get(1), local.get(2), local.get(3), local.get(4)];
    let (facts, node_check_error) = match facts {
        Ok(rows) => {
            let mut m = HashMap::new();
            for r in rows {
                let id: i32 = r.get(0);
                let ok: bool = r.get(1);
                let res: String = r.get(2);
                m.insert(id, (ok, res));
            }
            (m, None)
        }
        Err(e) => (HashMap::new(), Some(crate::error::pg_cause(&e))),
    };

    // (shards of distributed tables, their bytes, all placements) per node; bytes per table.
    let mut per_node: HashMap<(String, i32), (i64, i64, i64)> = HashMap::new();
    let mut per_table: HashMap<String, i64> = HashMap::new();
    for r in &shards {
        let (table, kind, node, port, count, bytes): (String, String, String, i32, i64, i64) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
        let e = per_node.entry((node, port)).or_default();
        if kind == "distributed" {
            e.0 += count;
            e.1 += bytes;
        }
        e.2 += count;
        let t = per_table.entry(table).or_default();
        // A reference table has a full copy on every node: its size is one copy.
        *t = if kind == "reference" { (*t).max(bytes) } else { *t + bytes };
    }

    let mut out_nodes = Vec::new();
    for r in &nodes {
        let id: i32 = r.get(0);
        let group_id: i32 = r.get(1);
        let name: String = r.get(2);
        let port: i32 = r.get(3);
        let (sh, bytes, pl) = per_node.get(&(name.clone(), port)).copied().unwrap_or_default();
        let mut node = Node {
            id: Some(id),
            group_id,
            role: if group_id == 0 { Role::Coordinator } else { Role::Worker },
            name,
            port,
            active: r.get(4),
            should_have_shards: r.get(5),
            reachable: None,
            error: None,
            postgres_version: None,
            citus_version: None,
            citus_extension_version: None,
            citus_default_version: None,
            wal_level: None,
            shards: sh,
            shard_bytes: bytes,
            placements: pl,
        };
        match facts.get(&id) {
            Some((true, json)) => {
                let v: Vec<Option<String>> = serde_json::from_str(json).unwrap_or_default();
                let get = |i: usize| v.get(i).cloned().flatten();
                node.reachable = Some(true);
                node.postgres_version = get(0);
                node.citus_version = get(1);
                node.citus_extension_version = get(2);
                node.citus_default_version = get(3);
                node.wal_level = get(4);
            }
            Some((false, err)) => {
                node.reachable = Some(false);
                node.error = Some(err.trim().to_owned());
            }
            None => {}
        }
        if node.role == Role::Coordinator && node.postgres_version.is_none() {
            fill_local(&mut node, &local_facts);
        }
        out_nodes.push(node);
    }
    if !out_nodes.iter().any(|n| n.role == Role::Coordinator) {
        // A coordinator that never ran citus_set_coordinator_host is not in pg_dist_node.
        let mut node = Node {
            id: None,
            group_id: 0,
            role: Role::Coordinator,
            name: "(this server, not in pg_dist_node)".into(),
            port: 0,
            active: true,
            should_have_shards: false,
            reachable: None,
            error: None,
            postgres_version: None,
            citus_version: None,
            citus_extension_version: None,
            citus_default_version: None,
            wal_level: None,
            shards: 0,
            shard_bytes: 0,
            placements: 0,
        };
        fill_local(&mut node, &local_facts);
        out_nodes.insert(0, node);
    }

    let table_list: Vec<Table> = tables
        .iter()
        .map(|r| {
            let name: String = r.get(0);
            Table {
                bytes: per_table.get(&name).copied().unwrap_or(0),
                name,
                kind: r.get(1),
                distribution_column: r.get(2),
                colocation_id: r.get(3),
                shard_count: r.get(4),
                has_replica_identity: r.get(5),
            }
        })
        .collect();
    let count = |k: &str| table_list.iter().filter(|t| t.kind == k).count() as i64;

    Ok(Status {
        api_version: API_VERSION,
        kind: "Status",
        shards: shard_summary(&out_nodes),
        tables: TableSummary {
            distributed: count("distributed"),
            reference: count("reference"),
            local: count("local"),
            list: table_list,
        },
        nodes: out_nodes,
        rebalance: job,
        pods: None,
        node_check_error,
    })
}

fn fill_local(node: &mut Node, f: &[Option<String>; 5]) {
    node.reachable = Some(true);
    node.postgres_version = f[0].clone();
    node.citus_version = f[1].clone();
    node.citus_extension_version = f[2].clone();
    node.citus_default_version = f[3].clone();
    node.wal_level = f[4].clone();
}

/// Skew over the nodes that should hold shards: the fullest one against the average (1.0 = even).
pub fn shard_summary(nodes: &[Node]) -> ShardSummary {
    let holders: Vec<&Node> = nodes.iter().filter(|n| n.active && n.should_have_shards).collect();
    let ratio = |f: &dyn Fn(&Node) -> i64| -> f64 {
        if holders.is_empty() {
            return 1.0;
        }
        let total: i64 = holders.iter().map(|n| f(n)).sum();
        let max = holders.iter().map(|n| f(n)).max().unwrap_or(0);
        if total <= 0 {
            1.0
        } else {
            let avg = total as f64 / holders.len() as f64;
            (max as f64 / avg * 100.0).round() / 100.0
        }
    };
    ShardSummary {
        total: nodes.iter().map(|n| n.shards).sum(),
        bytes: nodes.iter().map(|n| n.shard_bytes).sum(),
        skew_bytes: ratio(&|n| n.shard_bytes),
        skew_count: ratio(&|n| n.shards),
    }
}

/// The newest background job with its moves in progress; None when there never was one.
/// A row of `LAST_JOB`.
fn job_from_row(r: &Row, moves: Vec<ShardMove>) -> RebalanceJob {
    RebalanceJob {
        job_id: r.get(0),
        state: r.get(1),
        job_type: r.get(2),
        description: r.get(3),
        started_at: r.get(4),
        finished_at: r.get(5),
        tasks_total: r.get(6),
        tasks_done: r.get(7),
        tasks_running: r.get(8),
        tasks_failed: r.get(9),
        last_message: r.get(10),
        moves,
    }
}

pub async fn last_job(client: &Client) -> Result<Option<RebalanceJob>> {
    let (job, moves) = futures::join!(client.query_opt(LAST_JOB, &[]), progress(client));
    let Some(r) = job.map_err(q("reading pg_dist_background_job", FIX_CITUS))? else {
        return Ok(None);
    };
    Ok(Some(job_from_row(&r, moves?)))
}

pub async fn progress(client: &Client) -> Result<Vec<ShardMove>> {
    let rows = client.query(PROGRESS, &[]).await.map_err(q("reading get_rebalance_progress()", FIX_CITUS))?;
    Ok(rows
        .iter()
        .map(|r| ShardMove {
            table: r.get(0),
            shard_id: r.get(1),
            source: r.get(2),
            target: r.get(3),
            progress: r.get(4),
            source_bytes: r.get(5),
            target_bytes: r.get(6),
        })
        .collect())
}

pub async fn cleanup_records(client: &Client) -> Result<Vec<CleanupRecord>> {
    let rows = client.query(CLEANUP, &[]).await.map_err(q("reading pg_dist_cleanup", FIX_CITUS))?;
    Ok(rows
        .iter()
        .map(|r| CleanupRecord {
            record_id: r.get(0),
            object_name: r.get(1),
            node_group_id: r.get(2),
            node_exists: r.get(3),
        })
        .collect())
}

/// The moves a rebalance would make now.
pub async fn plan(client: &Client, strategy: Option<&str>, drain_only: bool) -> Result<Vec<PlannedMove>> {
    let rows = client
        .query(
            // The plan's shard_size is 0 under some strategies: take the size from citus_shards.
            "SELECT p.table_name::text, p.shardid, greatest(p.shard_size, coalesce(s.size, 0))::bigint,
                    p.sourcename::text || ':' || p.sourceport, p.targetname::text || ':' || p.targetport
               FROM get_rebalance_table_shards_plan(rebalance_strategy := $1, drain_only := $2) p
               LEFT JOIN (SELECT shardid, max(shard_size) AS size FROM citus_shards GROUP BY shardid) s
                 USING (shardid)",
            &[&strategy, &drain_only],
        )
        .await
        .map_err(q(
            "computing the rebalance plan (get_rebalance_table_shards_plan)",
            "check the strategy name (SELECT name FROM pg_dist_rebalance_strategy) and that the workers are active",
        ))?;
    Ok(rows
        .iter()
        .map(|r| PlannedMove {
            table: r.get(0),
            shard_id: r.get(1),
            bytes: r.get(2),
            source: r.get(3),
            target: r.get(4),
        })
        .collect())
}

/// citus_rebalance_start(); None when there is nothing to move.
pub async fn rebalance_start(
    client: &Client,
    strategy: Option<&str>,
    drain_only: bool,
    mode: &str,
) -> Result<Option<i64>> {
    let row = client
        .query_one(
            "SELECT citus_rebalance_start(rebalance_strategy := $1, drain_only := $2,
                                          shard_transfer_mode := $3::text::citus.shard_transfer_mode)",
            &[&strategy, &drain_only, &mode],
        )
        .await
        .map_err(q(
            "starting the rebalance (citus_rebalance_start)",
            "read the message above: a rebalance may already run (kubectl citus rebalance status), \
             a table may lack a replica identity (kubectl citus doctor), or wal_level is not logical",
        ))?;
    Ok(row.get(0))
}

pub async fn rebalance_stop(client: &Client) -> Result<()> {
    client.execute("SELECT citus_rebalance_stop()", &[]).await.map_err(q(
        "stopping the rebalance (citus_rebalance_stop)",
        "see kubectl citus rebalance status: there may be no rebalance running",
    ))?;
    Ok(())
}

/// Where each planned shard is now: (shard id, "host:port").
pub async fn placements_of(client: &Client, shards: &[i64]) -> Result<Vec<(i64, String)>> {
    let rows = client
        .query(
            "SELECT p.shardid, n.nodename::text || ':' || n.nodeport
               FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid)
              WHERE p.shardid = ANY($1) AND n.noderole = 'primary'",
            &[&shards],
        )
        .await
        .map_err(q("reading pg_dist_placement", FIX_CITUS))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

pub async fn job_by_id(client: &Client, job_id: i64) -> Result<RebalanceJob> {
    let job = last_job(client).await?;
    match job {
        Some(j) if j.job_id == job_id => Ok(j),
        _ => {
            // A newer job exists (someone started another): read this one by id.
            let r = client
                .query_one(&LAST_JOB.replace("ORDER BY j.job_id DESC", "WHERE j.job_id = $1"), &[&job_id])
                .await
                .map_err(q("reading pg_dist_background_job", FIX_CITUS))?;
            Ok(job_from_row(&r, Vec::new()))
        }
    }
}

pub async fn set_should_have_shards(client: &Client, name: &str, port: i32, value: bool) -> Result<()> {
    client
        .execute("SELECT citus_set_node_property($1, $2, 'shouldhaveshards', $3)", &[&name, &port, &value])
        .await
        .map_err(q(
            &format!("setting shouldhaveshards={value} on {name}:{port}"),
            "check the node in kubectl citus status; the role must be a superuser",
        ))?;
    Ok(())
}

pub async fn cleanup_orphaned(client: &Client) -> Result<()> {
    client.batch_execute("CALL citus_cleanup_orphaned_resources()").await.map_err(q(
        "cleaning up orphaned resources (citus_cleanup_orphaned_resources)",
        "make sure every node is reachable (kubectl citus doctor) and run it again",
    ))
}

/// Distributed placements on a node group, and pg_dist_cleanup records for it.
pub async fn node_leftovers(client: &Client, group_id: i32) -> Result<(i64, i64)> {
    let r = client
        .query_one(
            "SELECT (SELECT count(*) FROM pg_dist_placement p
                       JOIN pg_dist_shard s USING (shardid)
                       JOIN pg_dist_partition t ON t.logicalrelid = s.logicalrelid
                      WHERE p.groupid = $1 AND t.partmethod <> 'n')::bigint,
                    (SELECT count(*) FROM pg_dist_cleanup WHERE node_group_id = $1)::bigint",
            &[&group_id],
        )
        .await
        .map_err(q("counting what is left on the node", FIX_CITUS))?;
    Ok((r.get(0), r.get(1)))
}

/// Tables with shards on a node group that have no replica identity.
pub async fn tables_without_identity_on(client: &Client, group_id: i32) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT DISTINCT s.logicalrelid::regclass::text
               FROM pg_dist_placement p
               JOIN pg_dist_shard s USING (shardid)
               JOIN pg_dist_partition t ON t.logicalrelid = s.logicalrelid
               JOIN pg_class c ON c.oid = s.logicalrelid
              WHERE p.groupid = $1 AND t.partmethod <> 'n'
                AND NOT (c.relreplident IN ('f', 'i') OR (c.relreplident = 'd' AND EXISTS
                    (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)))
              ORDER BY 1",
            &[&group_id],
        )
        .await
        .map_err(q("checking replica identities", FIX_CITUS))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Result of a generic query, every value as text (the report's pg_dist_* dumps).
pub async fn dump_as_json(client: &Client, sql: &str) -> Result<serde_json::Value> {
    let msgs = client.simple_query(sql).await.map_err(q(&format!("running {sql}"), FIX_CITUS))?;
    let mut rows = Vec::new();
    for m in msgs {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            let mut obj = serde_json::Map::new();
            for (i, c) in r.columns().iter().enumerate() {
                let v = r.get(i).map(|s| serde_json::Value::String(s.to_owned())).unwrap_or(serde_json::Value::Null);
                obj.insert(c.name().to_owned(), v);
            }
            rows.push(serde_json::Value::Object(obj));
        }
    }
    Ok(serde_json::Value::Array(rows))
}
