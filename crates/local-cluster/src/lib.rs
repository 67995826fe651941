//! A node agent for a real Kubernetes control plane (issue 16): it registers this machine as a Node, runs the
//! pods bound to it as process trees in their own network namespaces, each container with its volumes in a
//! private mount namespace and as the pod's uid, with real PostgreSQL and Citus for the Citus images, and
//! reports them back as a kubelet does. See README.md for what is real, what is the project's own, and the
//! image contracts. The `testbed` crate starts the control plane and this agent for the scenarios and
//! benchmarks.
//!
//! Layers, each depending only on those before it:
//! - [`sandbox`]: the container runtime's OS part (namespaces, mounts, spawning); no Kubernetes types;
//! - [`store`]: the objects the node last read from the API server (Secrets, ConfigMaps, Services,
//!   EndpointSlices);
//! - [`kubelet`]: pods (containers, images, env, volumes, probes, restarts) and the node's name service;
//! - [`agent`]: the kubelet as a node of the control plane: Node and Lease, pod status, the kubelet API
//!   (exec, logs, port-forward), Service virtual IPs, volume provisioning, and the faults scenarios inject.
//! - [`host`]: what this machine must provide, as the reasons scenarios report when it does not.

pub mod agent;
mod error;
pub mod host;
pub mod kubelet;
pub mod sandbox;
pub mod store;

pub use error::{Error, Result};
pub use kubelet::image::{Images, Postgres, IMAGES_ENV};
pub use kubelet::pod::{ExecOutput, Pod};
