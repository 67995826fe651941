//! The kubelet's part: a pod's spec read from the rendered template, its images' stand-ins, volumes and
//! environment, its containers started through the sandbox, probes run and containers restarted.
//! Reads objects from the store; knows nothing of controllers or Helm.

pub mod env;
pub mod image;
pub mod node;
pub mod pod;
pub mod podspec;
pub mod probe;
pub mod volumes;
