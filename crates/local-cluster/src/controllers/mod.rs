//! The controllers' part: StatefulSets (pods with stable names and claims, ordered creation, scale-in,
//! rolling updates) and Jobs (pods run to completion with back-off, deadlines; also a Job made from a
//! CronJob's template). They act through the node's kubelet and read the store; they know nothing of Helm.

pub mod job;
pub mod statefulset;
