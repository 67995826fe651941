//! Runs a rendered Helm chart on this machine without Kubernetes: every pod becomes a process tree in its
//! own network namespace, with its volumes mounted in a private mount namespace, as the pod's uid.
//! See README.md for what is emulated, what is not, and the image contract.
//!
//! ```no_run
//! # fn main() -> Result<(), local_cluster::Error> {
//! use local_cluster::{Cluster, Postgres, Settings};
//! let postgres = Postgres::from_pg_config("/usr/lib/postgresql/15/bin/pg_config".as_ref())?;
//! let mut cluster = Cluster::new(Settings::new("charts/citus", postgres, "/var/tmp"))?;
//! let values = serde_json::json!({"auth": {"postgresPassword": "a", "password": "b"}});
//! let _manifest = cluster.install(&values)?;
//! let out = cluster.exec("my-citus-coordinator-0", &["psql", "-c", "SELECT 1"], &[], None)?;
//! # Ok(()) }
//! ```

mod cluster;
mod error;
mod image;
mod job;
mod manifest;
mod mounts;
mod netns;
mod objects;
mod pod;
mod podspec;
mod probe;
mod process;
mod statefulset;
mod volumes;

pub use cluster::{Cluster, Settings};
pub use error::{Error, Result};
pub use image::Postgres;
pub use job::JobReport;
pub use manifest::{Manifest, Phase, RenderRequest};
pub use pod::{ExecOutput, Pod};
