//! The StatefulSet controller's part: pods `<sts>-<n>` with stable names and claims, created in parallel or
//! one after another (podManagementPolicy), removed highest ordinal first, and replaced highest ordinal
//! first when the pod template changed (RollingUpdate; each replacement must become ready). `partition`
//! and `maxUnavailable` are not emulated.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::cluster::{template_labels, Cluster};
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::pod::{Owner, PodConfig};
use crate::podspec::PodSpec;

struct StatefulSet {
    name: String,
    replicas: u32,
    service: String,
    ordered: bool,
    rolling: bool,
    template: Value,
    spec: PodSpec,
    claim_templates: Vec<String>,
}

impl StatefulSet {
    fn parse(v: &Value) -> Result<Self> {
        let name = v
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let bad = |what: &str| Error::Manifest(format!("StatefulSet {name}: {what}"));
        let spec = v.get("spec").ok_or_else(|| bad("no spec"))?;
        let replicas = match spec.get("replicas") {
            None | Some(Value::Null) => 1,
            Some(r) => r
                .as_u64()
                .and_then(|r| u32::try_from(r).ok())
                .ok_or_else(|| bad("replicas"))?,
        };
        let template = spec
            .get("template")
            .cloned()
            .ok_or_else(|| bad("no template"))?;
        let pod_spec = template
            .get("spec")
            .ok_or_else(|| bad("no template.spec"))?;
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
        let policy = spec
            .get("podManagementPolicy")
            .and_then(Value::as_str)
            .unwrap_or("OrderedReady");
        let strategy = spec
            .pointer("/updateStrategy/type")
            .and_then(Value::as_str)
            .unwrap_or("RollingUpdate");
        if spec.pointer("/updateStrategy/rollingUpdate").is_some() {
            return Err(Error::Unsupported(format!(
                "StatefulSet {name}: updateStrategy.rollingUpdate settings"
            )));
        }
        Ok(StatefulSet {
            spec: PodSpec::from_value(&format!("StatefulSet {name}"), pod_spec)?,
            service: spec
                .get("serviceName")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("no serviceName"))?
                .to_owned(),
            ordered: policy == "OrderedReady",
            rolling: strategy == "RollingUpdate",
            template,
            replicas,
            claim_templates,
            name,
        })
    }

    fn pod_name(&self, ordinal: u32) -> String {
        format!("{}-{ordinal}", self.name)
    }

    fn pod_config(
        &self,
        ordinal: u32,
        namespace: &str,
        command_override: Option<Vec<String>>,
    ) -> PodConfig {
        let name = self.pod_name(ordinal);
        let mut labels = template_labels(&self.template);
        labels.insert(
            "statefulset.kubernetes.io/pod-name".to_owned(),
            name.clone(),
        );
        PodConfig {
            claim_templates: self
                .claim_templates
                .iter()
                .map(|t| (t.clone(), format!("{t}-{name}")))
                .collect::<BTreeMap<_, _>>(),
            name,
            namespace: namespace.to_owned(),
            spec: self.spec.clone(),
            labels,
            subdomain: Some(self.service.clone()),
            command_override,
            owner: Owner::StatefulSet {
                name: self.name.clone(),
                ordinal,
                template: self.template.clone(),
            },
        }
    }
}

fn statefulsets(manifest: &Manifest) -> Result<Vec<StatefulSet>> {
    manifest
        .resources()
        .iter()
        .filter(|v| v.get("kind").and_then(Value::as_str) == Some("StatefulSet"))
        .map(StatefulSet::parse)
        .collect()
}

impl Cluster {
    /// Applies the release: objects, then each StatefulSet reconciled (pods of StatefulSets that are no
    /// longer rendered are deleted).
    pub fn apply(&mut self, manifest: &Manifest) -> Result<()> {
        self.apply_objects(manifest)?;
        let sets = statefulsets(manifest)?;
        let orphans: Vec<String> = self
            .pods
            .values()
            .filter(|p| matches!(&p.config.owner, Owner::StatefulSet { name, .. } if !sets.iter().any(|s| &s.name == name)))
            .map(|p| p.name().to_owned())
            .collect();
        for name in orphans {
            self.delete_pod(&name)?;
        }
        for set in &sets {
            self.reconcile(set)?;
        }
        Ok(())
    }

    fn reconcile(&mut self, set: &StatefulSet) -> Result<()> {
        let mut existing: Vec<(u32, String, bool)> = self
            .pods
            .values()
            .filter_map(|p| match &p.config.owner {
                Owner::StatefulSet {
                    name,
                    ordinal,
                    template,
                } if *name == set.name => {
                    Some((*ordinal, p.name().to_owned(), *template == set.template))
                }
                _ => None,
            })
            .collect();
        existing.sort_by_key(|e| std::cmp::Reverse(e.0));
        for (_, name, _) in existing
            .iter()
            .filter(|(ordinal, ..)| *ordinal >= set.replicas)
        {
            self.delete_pod(name)?;
        }
        if set.rolling {
            for (ordinal, name, _) in existing
                .iter()
                .filter(|(o, _, same)| *o < set.replicas && !same)
            {
                self.delete_pod(name)?;
                self.create_pod(set.pod_config(*ordinal, &self.settings.namespace, None))?;
                self.wait_ready(name, self.settings.ready_timeout)?;
            }
        }
        for ordinal in 0..set.replicas {
            if self.pods.contains_key(&set.pod_name(ordinal)) {
                continue;
            }
            if set.ordered && ordinal > 0 {
                self.wait_ready(&set.pod_name(ordinal - 1), self.settings.ready_timeout)?;
            }
            self.create_pod(set.pod_config(ordinal, &self.settings.namespace, None))?;
        }
        Ok(())
    }

    /// Starts pod `ordinal` of a StatefulSet of `manifest` by itself, optionally with its command and args
    /// replaced (like `kubectl debug --copy-to`). Returns the pod name.
    pub fn start_statefulset_pod(
        &mut self,
        manifest: &Manifest,
        set: &str,
        ordinal: u32,
        command: Option<Vec<String>>,
    ) -> Result<String> {
        let value = manifest
            .get("StatefulSet", set)
            .ok_or_else(|| Error::Manifest(format!("no StatefulSet {set}")))?;
        let set = StatefulSet::parse(value)?;
        let config = set.pod_config(ordinal, &self.settings.namespace, command);
        let name = config.name.clone();
        self.create_pod(config)?;
        Ok(name)
    }

    /// Deletes a StatefulSet pod and recreates it as its controller would (new address, same claims), then
    /// waits until it is ready.
    pub fn restart_pod(&mut self, name: &str) -> Result<()> {
        let mut config = self.pod(name)?.config.clone();
        if !matches!(config.owner, Owner::StatefulSet { .. }) {
            return Err(Error::Manifest(format!(
                "pod {name} does not belong to a StatefulSet"
            )));
        }
        config.command_override = None;
        self.delete_pod(name)?;
        self.create_pod(config)?;
        self.wait_ready(name, self.settings.ready_timeout)
    }
}
