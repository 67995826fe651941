//! Dynamic provisioning for the node: the default StorageClass `local`, a PersistentVolume (a host
//! directory under the agent's `volumes/`) for every claim the PV controller hands to this provisioner, and
//! the directory removed when a released volume's reclaim policy is Delete. The PV controller binds.

use std::path::Path;

use k8s_openapi::api::core::v1::PersistentVolume;
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::json;

use super::api::Clients;
use crate::error::{Context as _, Result};

pub const STORAGE_CLASS: &str = "local";
pub const PROVISIONER: &str = "local-cluster.citus.dev/node-agent";
const PROVISIONER_ANNOTATION: &str = "volume.kubernetes.io/storage-provisioner";
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

/// The default StorageClass, binding at once (one node: nothing to wait for).
pub fn install(api: &Clients) -> Result<()> {
    let class = json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
        "allowVolumeExpansion": true,
    });
    api.apply_cluster::<StorageClass>(STORAGE_CLASS, &class)
}

/// One pass: a volume for every claim waiting for this provisioner, and released volumes deleted.
pub fn sync(api: &Clients, root: &Path) -> Result<()> {
    let volumes = api.volumes()?;
    for claim in api.claims()? {
        let meta = &claim.metadata;
        let ours =
            meta.annotations.as_ref().and_then(|a| a.get(PROVISIONER_ANNOTATION)).is_some_and(|p| p == PROVISIONER);
        let spec = claim.spec.clone().unwrap_or_default();
        let pending = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending");
        let (Some(uid), Some(ns), Some(name)) = (&meta.uid, &meta.namespace, &meta.name) else { continue };
        let pv = format!("pvc-{uid}");
        if !ours
            || !pending
            || spec.volume_name.is_some()
            || volumes.iter().any(|v| v.metadata.name.as_ref() == Some(&pv))
        {
            continue;
        }
        let size = spec.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage")).cloned();
        let volume = json!({
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv, "annotations": {PROVISIONED_BY: PROVISIONER}},
            "spec": {
                "capacity": {"storage": size.map_or_else(|| "1Gi".to_owned(), |q| q.0)},
                "accessModes": spec.access_modes.unwrap_or_else(|| vec!["ReadWriteOnce".to_owned()]),
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": spec.storage_class_name.unwrap_or_else(|| STORAGE_CLASS.to_owned()),
                "volumeMode": "Filesystem",
                "hostPath": {"path": root.join(&pv), "type": "DirectoryOrCreate"},
                "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns, "name": name, "uid": uid},
            },
        });
        api.apply_cluster::<PersistentVolume>(&pv, &volume)?;
    }
    for v in volumes {
        let ours =
            v.metadata.annotations.as_ref().and_then(|a| a.get(PROVISIONED_BY)).is_some_and(|p| p == PROVISIONER);
        let released = v.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
        let delete = v.spec.as_ref().and_then(|s| s.persistent_volume_reclaim_policy.as_deref()) == Some("Delete");
        let Some(name) = v.metadata.name.as_deref() else { continue };
        if ours && released && delete {
            let dir = root.join(name);
            if dir.exists() {
                std::fs::remove_dir_all(&dir).context(|| format!("removing volume {}", dir.display()))?;
            }
            api.delete_volume(name)?;
        }
    }
    Ok(())
}
