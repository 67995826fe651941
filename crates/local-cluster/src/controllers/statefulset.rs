//! The StatefulSet controller's part: pods `<sts>-<n>` with stable names and claims, created in parallel or
//! one after another (podManagementPolicy), removed highest ordinal first, and replaced highest ordinal
//! first when the pod template changed (RollingUpdate; each replacement must become ready). `partition`
//! and `maxUnavailable` are not emulated.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::kubelet::node::{template_labels, Node};
use crate::kubelet::pod::{Owner, PodConfig};
use crate::kubelet::podspec::PodSpec;
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct StatefulSet {
    pub name: String,
    pub replicas: u32,
    /// Whether the object sets spec.replicas (a server-side default of 1 otherwise).
    pub replicas_set: bool,
    service: String,
    ordered: bool,
    rolling: bool,
    template: Value,
    spec: PodSpec,
    claim_templates: Vec<String>,
}

impl StatefulSet {
    pub fn parse(v: &Value) -> Result<Self> {
        let name = v.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
        let bad = |what: &str| Error::Manifest(format!("StatefulSet {name}: {what}"));
        let spec = v.get("spec").ok_or_else(|| bad("no spec"))?;
        let replicas_set = !matches!(spec.get("replicas"), None | Some(Value::Null));
        let replicas = match spec.get("replicas") {
            None | Some(Value::Null) => 1,
            Some(r) => r.as_u64().and_then(|r| u32::try_from(r).ok()).ok_or_else(|| bad("replicas"))?,
        };
        let template = spec.get("template").cloned().ok_or_else(|| bad("no template"))?;
        let pod_spec = template.get("spec").ok_or_else(|| bad("no template.spec"))?;
        let claim_templates = spec
            .get("volumeClaimTemplates")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| {
                c.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| bad("claim template name"))
            })
            .collect::<Result<_>>()?;
        let policy = spec.get("podManagementPolicy").and_then(Value::as_str).unwrap_or("OrderedReady");
        let strategy = spec.pointer("/updateStrategy/type").and_then(Value::as_str).unwrap_or("RollingUpdate");
        if spec.pointer("/updateStrategy/rollingUpdate").is_some() {
            return Err(Error::Unsupported(format!("StatefulSet {name}: updateStrategy.rollingUpdate settings")));
        }
        Ok(StatefulSet {
            spec: PodSpec::from_value(&format!("StatefulSet {name}"), pod_spec)?,
            service: spec.get("serviceName").and_then(Value::as_str).ok_or_else(|| bad("no serviceName"))?.to_owned(),
            ordered: policy == "OrderedReady",
            rolling: strategy == "RollingUpdate",
            template,
            replicas,
            replicas_set,
            claim_templates,
            name,
        })
    }

    pub fn pod_name(&self, ordinal: u32) -> String {
        format!("{}-{ordinal}", self.name)
    }

    pub fn pod_config(&self, ordinal: u32, namespace: &str, command_override: Option<Vec<String>>) -> PodConfig {
        let name = self.pod_name(ordinal);
        let mut labels = template_labels(&self.template);
        labels.insert("statefulset.kubernetes.io/pod-name".to_owned(), name.clone());
        PodConfig {
            claim_templates: self
                .claim_templates
                .iter()
                .map(|t| (t.clone(), format!("{t}-{name}")))
                .collect::<BTreeMap<_, _>>(),
            bound_claims: BTreeMap::new(),
            name,
            namespace: namespace.to_owned(),
            spec: self.spec.clone(),
            labels,
            subdomain: Some(self.service.clone()),
            command_override,
            owner: Owner::StatefulSet { name: self.name.clone(), ordinal, template: self.template.clone() },
            api_access: None,
        }
    }
}

/// Reconciles one StatefulSet: pods above `replicas` deleted highest ordinal first, pods with an old
/// template replaced highest ordinal first (RollingUpdate, each ready before the next), missing pods created
/// (OrderedReady: each after the previous one is ready). A Pending pod (a fault) blocks what follows it as
/// it would in Kubernetes.
pub fn reconcile(node: &mut Node, store: &Store, set: &StatefulSet, ready_timeout: std::time::Duration) -> Result<()> {
    let mut existing: Vec<(u32, String, bool)> = node
        .pods
        .values()
        .filter_map(|p| match &p.config.owner {
            Owner::StatefulSet { name, ordinal, template } if *name == set.name => {
                Some((*ordinal, p.name().to_owned(), *template == set.template))
            }
            _ => None,
        })
        .collect();
    existing.sort_by_key(|e| std::cmp::Reverse(e.0));
    for (_, name, _) in existing.iter().filter(|(ordinal, ..)| *ordinal >= set.replicas) {
        node.delete_pod(name, store)?;
    }
    let namespace = node.namespace.clone();
    if set.rolling {
        for (ordinal, name, _) in existing.iter().filter(|(o, _, same)| *o < set.replicas && !same) {
            node.delete_pod(name, store)?;
            node.create_pod(set.pod_config(*ordinal, &namespace, None), store)?;
            if node.is_pending(name) {
                return Ok(());
            }
            node.wait_ready(name, ready_timeout)?;
        }
    }
    for ordinal in 0..set.replicas {
        let name = set.pod_name(ordinal);
        if node.pods.contains_key(&name) {
            continue;
        }
        if set.ordered && ordinal > 0 {
            let previous = set.pod_name(ordinal - 1);
            if node.is_pending(&previous) {
                return Ok(());
            }
            node.wait_ready(&previous, ready_timeout)?;
        }
        node.create_pod(set.pod_config(ordinal, &namespace, None), store)?;
    }
    Ok(())
}

/// Deletes the pods of StatefulSets that no longer exist.
pub fn remove_orphans(node: &mut Node, store: &Store, sets: &[StatefulSet]) -> Result<()> {
    let orphans: Vec<String> = node
        .pods
        .values()
        .filter(|p| matches!(&p.config.owner, Owner::StatefulSet { name, .. } if !sets.iter().any(|s| &s.name == name)))
        .map(|p| p.name().to_owned())
        .collect();
    for name in orphans {
        node.delete_pod(&name, store)?;
    }
    Ok(())
}
