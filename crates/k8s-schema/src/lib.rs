//! Strict validation of rendered Kubernetes manifests.
//!
//! Built-in kinds are checked against the strict (`additionalProperties: false`) OpenAPI schemas of one
//! Kubernetes version, as published by kubernetes-validate; CRD kinds against the CRD files in `crds/`,
//! made strict the same way. A kind without a schema is an error, never a silent pass. A few checks the
//! API server makes beyond the schema (names, labels, duplicates, dangling mounts) run too.

#![forbid(unsafe_code)]

mod crd;
mod error;
mod semantic;
mod set;

pub use error::{SchemaError, ValidationFailure, Violation};
pub use set::{available_versions, schema_dir, SchemaSet};
