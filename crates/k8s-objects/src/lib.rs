//! The object model every crate of the workspace shares (the role `kube-core` plays for kube-rs): a rendered
//! document, the key that names it, the Helm hook it declares and the pod template of any workload kind.
//! No IO: parsing manifests is helm-engine's job, validating them k8s-schema's, running them local-cluster's.

#![forbid(unsafe_code)]

mod document;
mod hook;
mod pod_template;

pub use document::{Document, ObjectKey};
pub use hook::{sort_hooks, DeletePolicy, Hook, HookEvent, KIND_INSTALL_ORDER};
pub use pod_template::{containers, PodTemplate};

/// What is wrong with an object, naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A field every object needs is absent or not a string.
    #[error("{object}: {field} is missing or not a string")]
    MissingField { object: String, field: &'static str },
    /// A `helm.sh/hook*` annotation Helm would misread.
    #[error("{object}: annotation {annotation}={value:?} {reason}")]
    BadHook { object: String, annotation: &'static str, value: String, reason: String },
}
