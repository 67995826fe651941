//! Runs a rendered Helm chart on this machine without Kubernetes: every pod becomes process trees in its
//! own network namespace, each container with its volumes in a private mount namespace, as the pod's uid.
//! See README.md for what is emulated, what is not, and the image contracts.
//!
//! Layers, each depending only on those before it:
//! - [`sandbox`]: the container runtime's OS part (namespaces, mounts, spawning); no Kubernetes types;
//! - [`store`]: the API server's storage (objects by release);
//! - [`kubelet`]: pods (containers, images, env, volumes, probes, restarts) and the node's name service;
//! - [`controllers`]: StatefulSet and Job controllers;
//! - `helm` (rendering, hooks) and [`Cluster`], the facade with Helm and kubectl verbs and faults;
//! - [`agent`]: the same kubelet as a node of a real control plane (issue 16); every scenario runs there, and
//!   the simulation above (`controllers`, `helm`, [`Cluster`]) remains only for the benchmarks.
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

pub mod agent;
mod cluster;
pub mod controllers;
mod error;
mod helm;
pub mod host;
pub mod kubelet;
pub mod sandbox;
pub mod store;

pub use cluster::{Cluster, Settings};
pub use controllers::job::{JobReport, JobStatus};
pub use error::{Error, Result};
pub use helm::{HookObject, Manifest, RenderRequest};
pub use k8s_objects::HookEvent;
pub use kubelet::image::{Images, Postgres, IMAGES_ENV};
pub use kubelet::pod::{ExecOutput, Pod};
