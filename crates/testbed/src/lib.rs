//! What the end-to-end scenarios and the benchmarks run on (issue 16): the real control plane of
//! `control-plane`, started once per process; this machine as its only node, run by `local-cluster`'s node
//! agent; and a [`Space`] per scenario or benchmark: a namespace of its own with Helm pointed at it, deleted
//! with its pods at the end.
//!
//! A test-support crate: its errors are `anyhow`'s, with what the cluster said of itself for a failure's
//! message, because every caller is a test or benchmark binary.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! testbed::init(std::env::temp_dir());
//! let postgres = local_cluster::Postgres::from_pg_config("/usr/lib/postgresql/15/bin/pg_config".as_ref())?;
//! let space = testbed::Space::create(&postgres, "example", None)?;
//! space.install(serde_json::json!({}))?;
//! println!("{}", space.sql("SELECT count(*) FROM pg_dist_node")?);
//! drop(space);
//! testbed::stop();
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod chart;
mod psql;
mod run;
mod space;

pub use chart::{
    chart_dir, values, APP_PASSWORD, COORDINATOR, COORDINATOR_SERVICE, NODES, POSTGRES_PASSWORD, READY, SERVING,
};
pub use psql::{psql, psql_argv, tcp, try_psql, Login, SOCKET};
pub use run::{control_plane, init, node_agent, stop};
pub use space::Space;
