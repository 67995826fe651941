//! The kubelet's volume work: each volume of a pod becomes a host directory (or a tmpfs) that
//! [`crate::sandbox::mounts`] binds at each container's mount path (or at its `subPath` inside the volume).
//! - configMap/secret: a fresh directory of files per pod start, mode `defaultMode`/item mode, owned by
//!   root with group fsGroup and group read added (what the kubelet's ownership change does to read-only
//!   volumes). Plain files, not the kubelet's `..data` symlink layout; a sync replaces a changed file by a
//!   rename, as that layout's swap does.
//! - emptyDir: a fresh directory per pod (also for `medium: Memory`, so that every container of the pod
//!   shares it), mode 0777, setgid + fsGroup.
//! - persistentVolumeClaim (also from volumeClaimTemplates, claim `<template>-<pod>`): a directory per
//!   claim that outlives pods. New volumes start as root:root 0755 like a fresh file system; with an fsGroup
//!   every mount applies the ownership change of a block-storage CSI volume (fsGroupPolicy File):
//!   `fsGroupChangePolicy: Always` walks the whole volume, `OnRootMismatch` only when the root differs.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{lchown, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::env::{field, PodFields};
use super::podspec::{file_mode, Container, KeyToPath, PodSpec, ProjectedVolume, Volume};
use crate::error::{Context, Error, Result};
use crate::sandbox::mounts::{Mount, Source};
use crate::store::Store;

/// Where a pod's volumes live on the host.
pub struct VolumeDirs<'a> {
    /// Per pod; removed with the pod.
    pub pod: &'a Path,
    /// volume name -> claim name, from the StatefulSet's volumeClaimTemplates.
    pub claim_templates: &'a BTreeMap<String, String>,
    /// claim name -> the host directory of its bound volume (the agent provisions host paths).
    pub bound_claims: &'a BTreeMap<String, PathBuf>,
    /// What the downward API projects.
    pub fields: &'a PodFields<'a>,
    /// `<volume>/<path>` -> the service account token a node agent requested for that projection.
    pub tokens: &'a BTreeMap<String, String>,
}

/// The host directory of every volume of a pod, made once per pod and shared by its containers.
#[derive(Debug, Clone, Default)]
pub struct PodVolumes {
    dirs: BTreeMap<String, PathBuf>,
}

const SETGID: u32 = 0o2000;

/// Materialises every volume the pod's containers mount.
pub fn prepare(owner: &str, spec: &PodSpec, store: &Store, dirs: &VolumeDirs) -> Result<PodVolumes> {
    let mut prepared = PodVolumes::default();
    for m in spec.init_containers.iter().chain(&spec.containers).flat_map(|c| &c.volume_mounts) {
        if prepared.dirs.contains_key(&m.name) {
            continue;
        }
        let dir = match spec.volumes.iter().find(|v| v.name == m.name) {
            Some(volume) => volume_dir(owner, volume, spec, store, dirs)?,
            None => match dirs.claim_templates.get(&m.name) {
                Some(claim) => claim_dir(claim_path(dirs, claim)?, spec)?,
                None => {
                    return Err(Error::Manifest(format!("{owner} mounts volume {} that it does not define", m.name)))
                }
            },
        };
        prepared.dirs.insert(m.name.clone(), dir);
    }
    Ok(prepared)
}

/// Writes the ConfigMap and Secret volumes again from the store, as the kubelet's periodic sync does for
/// mounted (not subPath) volumes after the object changed. A deleted object leaves the files as they are
/// (the kubelet reports the error and keeps the last content).
pub fn refresh(owner: &str, spec: &PodSpec, store: &Store, volumes: &PodVolumes) -> Result<()> {
    for v in &spec.volumes {
        let source = match (&v.config_map, &v.secret) {
            (Some(cm), _) => ("ConfigMap", &cm.name),
            (_, Some(s)) => ("Secret", &s.secret_name),
            _ => continue,
        };
        if let Some(dir) = volumes.dirs.get(&v.name) {
            if store.get(source.0, source.1).is_some() {
                project_volume(owner, v, spec.security_context.fs_group, store, dir)?;
            }
        }
    }
    Ok(())
}

/// The mounts of one container. A `subPath` is created in the volume when missing, as the kubelet does.
pub fn container_mounts(owner: &str, container: &Container, volumes: &PodVolumes) -> Result<Vec<Mount>> {
    container
        .volume_mounts
        .iter()
        .map(|m| {
            let dir = volumes
                .dirs
                .get(&m.name)
                .ok_or_else(|| Error::Manifest(format!("{owner}: volume {} was not prepared", m.name)))?;
            let source = match m.sub_path.as_deref().filter(|p| !p.is_empty()) {
                None => dir.clone(),
                Some(sub) if Path::new(sub).is_absolute() || sub.split('/').any(|c| c == "..") => {
                    return Err(Error::Manifest(format!(
                        "{owner}: subPath {sub:?} of volume {} must be relative without ..",
                        m.name
                    )))
                }
                Some(sub) => {
                    let path = dir.join(sub);
                    if !path.exists() {
                        create_dir(&path)?;
                    }
                    path
                }
            };
            Ok(Mount { target: PathBuf::from(&m.mount_path), source: Source::Path(source), read_only: m.read_only })
        })
        .collect()
}

fn volume_dir(owner: &str, v: &Volume, spec: &PodSpec, store: &Store, dirs: &VolumeDirs) -> Result<PathBuf> {
    let fs_group = spec.security_context.fs_group;
    let dir = dirs.pod.join("volumes").join(&v.name);
    if let Some(projected) = &v.projected {
        if v.config_map.is_some() || v.secret.is_some() || v.empty_dir.is_some() || v.persistent_volume_claim.is_some()
        {
            return Err(Error::Manifest(format!("{owner}: volume {} has more than one source", v.name)));
        }
        project_sources(owner, &v.name, projected, fs_group, store, dirs, &dir)?;
        return Ok(dir);
    }
    match (&v.config_map, &v.secret, &v.empty_dir, &v.persistent_volume_claim) {
        (Some(_), None, None, None) | (None, Some(_), None, None) => {
            project_volume(owner, v, fs_group, store, &dir)?;
            Ok(dir)
        }
        // medium Memory is a directory too: it must be one file system shared by all containers of the pod.
        (None, None, Some(e), None) if e.medium.is_empty() || e.medium == "Memory" => {
            create_dir(&dir)?;
            set_owner_mode(&dir, fs_group, 0o777)?;
            Ok(dir)
        }
        (None, None, Some(e), None) => Err(Error::Unsupported(format!("{owner}: emptyDir medium {}", e.medium))),
        (None, None, None, Some(c)) => claim_dir(claim_path(dirs, &c.claim_name)?, spec),
        _ => Err(Error::Unsupported(format!(
            "{owner}: volume {} is not exactly one of configMap, secret, emptyDir, persistentVolumeClaim, projected",
            v.name
        ))),
    }
}

fn project_volume(owner: &str, v: &Volume, fs_group: Option<u32>, store: &Store, dir: &Path) -> Result<()> {
    let (ctx, default_mode) = match (&v.config_map, &v.secret) {
        (Some(cm), _) => (
            Projection { owner, kind: "ConfigMap", name: &cm.name, optional: cm.optional, items: &cm.items },
            cm.default_mode.as_ref(),
        ),
        (_, Some(s)) => (
            Projection { owner, kind: "Secret", name: &s.secret_name, optional: s.optional, items: &s.items },
            s.default_mode.as_ref(),
        ),
        _ => return Ok(()),
    };
    project(&ctx, store, dir, default_mode, fs_group)
}

/// A projected volume: each source's files in one directory (tokens from [`VolumeDirs::tokens`]).
fn project_sources(
    owner: &str,
    volume: &str,
    v: &ProjectedVolume,
    fs_group: Option<u32>,
    store: &Store,
    dirs: &VolumeDirs,
    dir: &Path,
) -> Result<()> {
    let mode = v.default_mode.as_ref();
    create_dir(dir)?;
    for source in &v.sources {
        let objects = [("ConfigMap", &source.config_map), ("Secret", &source.secret)];
        for (kind, object) in objects.into_iter().filter_map(|(k, o)| Some((k, o.as_ref()?))) {
            let p = Projection { owner, kind, name: &object.name, optional: object.optional, items: &object.items };
            project(&p, store, dir, mode, fs_group)?;
        }
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        for item in source.downward_api.iter().flat_map(|d| &d.items) {
            let f = item.field_ref.as_ref().ok_or_else(|| {
                Error::Unsupported(format!("{owner}: downwardAPI item {} without fieldRef", item.path))
            })?;
            files.push((item.path.clone(), field(owner, &f.field_path, dirs.fields)?.into_bytes()));
        }
        if let Some(t) = &source.service_account_token {
            let token = dirs.tokens.get(&format!("{volume}/{}", t.path)).ok_or_else(|| {
                Error::Unsupported(format!(
                    "{owner}: volume {volume} projects a service account token, which only a node of an API server \
                     can request"
                ))
            })?;
            files.push((t.path.clone(), token.clone().into_bytes()));
        }
        if !files.is_empty() {
            let data: BTreeMap<String, Vec<u8>> = files.into_iter().collect();
            let p = Projection { owner, kind: "projection", name: volume, optional: false, items: &[] };
            write_files(&p, &data, dir, mode, fs_group)?;
        }
    }
    Ok(())
}

struct Projection<'a> {
    owner: &'a str,
    kind: &'a str,
    name: &'a str,
    optional: bool,
    items: &'a [KeyToPath],
}

/// Writes a ConfigMap/Secret volume: every key (or the listed items) as a file.
fn project(
    p: &Projection,
    store: &Store,
    dir: &Path,
    default_mode: Option<&Value>,
    fs_group: Option<u32>,
) -> Result<()> {
    create_dir(dir)?;
    let data = match store.data(p.kind, p.name)? {
        Some(data) => data,
        None if p.optional => BTreeMap::new(),
        None => return Err(Error::Manifest(format!("{} mounts {} {}, which does not exist", p.owner, p.kind, p.name))),
    };
    write_files(p, &data, dir, default_mode, fs_group)
}

/// Writes `data` (or the listed items of it) as files of `dir`.
fn write_files(
    p: &Projection,
    data: &BTreeMap<String, Vec<u8>>,
    dir: &Path,
    default_mode: Option<&Value>,
    fs_group: Option<u32>,
) -> Result<()> {
    let mode = default_mode.map(|m| file_mode(p.owner, m)).transpose()?.unwrap_or(0o644);
    let files: Vec<(String, &Vec<u8>, u32)> = if p.items.is_empty() {
        data.iter().map(|(k, v)| (k.clone(), v, mode)).collect()
    } else {
        p.items
            .iter()
            .map(|item| {
                let bytes = data.get(&item.key).ok_or_else(|| {
                    Error::Manifest(format!("{}: {} {} has no key {}", p.owner, p.kind, p.name, item.key))
                })?;
                Ok((
                    item.path.clone(),
                    bytes,
                    item.mode.as_ref().map(|m| file_mode(p.owner, m)).transpose()?.unwrap_or(mode),
                ))
            })
            .collect::<Result<_>>()?
    };
    for (rel, bytes, file_mode) in files {
        if rel.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(Error::Manifest(format!("{}: item path {rel} of {} {}", p.owner, p.kind, p.name)));
        }
        let path = dir.join(&rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).context(|| format!("creating {}", parent.display()))?;
        }
        // The kubelet adds group read for the fsGroup on read-only volumes.
        let mode = file_mode | fs_group.map_or(0, |_| 0o040);
        // Only a changed file is replaced, and by a rename as the kubelet's symlink swap does: a process
        // reading it (a shell reading its script) sees the old or the new content, never a truncated file.
        if fs::read(&path).ok().as_ref() == Some(bytes) {
            set_owner_mode(&path, fs_group, mode)?;
        } else {
            let staged = dir.join(format!(".{}.staged", rel.replace('/', "_")));
            fs::write(&staged, bytes).context(|| format!("writing {}", staged.display()))?;
            set_owner_mode(&staged, fs_group, mode)?;
            fs::rename(&staged, &path).context(|| format!("replacing {}", path.display()))?;
        }
    }
    set_owner_mode(dir, fs_group, 0o755)
}

/// The host directory of the volume bound to `claim`; the scheduler binds a pod only once its claims are.
fn claim_path(dirs: &VolumeDirs, claim: &str) -> Result<PathBuf> {
    dirs.bound_claims
        .get(claim)
        .cloned()
        .ok_or_else(|| Error::Manifest(format!("claim {claim} is not bound to a volume")))
}

fn claim_dir(dir: PathBuf, spec: &PodSpec) -> Result<PathBuf> {
    let fs_group = spec.security_context.fs_group;
    if !dir.exists() {
        create_dir(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).context(|| format!("chmod {}", dir.display()))?;
    }
    if let Some(group) = fs_group {
        let policy = spec.security_context.fs_group_change_policy.as_deref().unwrap_or("Always");
        match policy {
            "Always" => change_ownership(&dir, group)?,
            "OnRootMismatch" => {
                if !root_matches(&dir, group)? {
                    change_ownership(&dir, group)?;
                }
            }
            other => return Err(Error::Manifest(format!("fsGroupChangePolicy {other}"))),
        }
    }
    Ok(dir)
}

fn root_matches(dir: &Path, group: u32) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(dir).context(|| format!("stat {}", dir.display()))?;
    Ok(meta.gid() == group && meta.mode() & 0o2070 == 0o2070)
}

/// The kubelet's recursive fsGroup change: group = fsGroup, group read/write added to everything,
/// and execute + setgid added to directories.
fn change_ownership(path: &Path, group: u32) -> Result<()> {
    let meta = fs::symlink_metadata(path).context(|| format!("stat {}", path.display()))?;
    lchown(path, None, Some(group)).context(|| format!("chgrp {}", path.display()))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.permissions().mode() & 0o7777;
    let added = if meta.is_dir() { 0o060 | 0o010 | SETGID } else { 0o060 };
    fs::set_permissions(path, fs::Permissions::from_mode(mode | added))
        .context(|| format!("chmod {}", path.display()))?;
    if meta.is_dir() {
        for entry in fs::read_dir(path).context(|| format!("reading {}", path.display()))? {
            let entry = entry.context(|| format!("reading {}", path.display()))?;
            change_ownership(&entry.path(), group)?;
        }
    }
    Ok(())
}

fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))
}

/// root:fsGroup (or root:root) with `mode`, plus setgid on directories that have a group.
fn set_owner_mode(path: &Path, fs_group: Option<u32>, mode: u32) -> Result<()> {
    lchown(path, Some(0), Some(fs_group.unwrap_or(0))).context(|| format!("chown {}", path.display()))?;
    let setgid = if fs_group.is_some() && path.is_dir() { SETGID } else { 0 };
    fs::set_permissions(path, fs::Permissions::from_mode(mode | setgid)).context(|| format!("chmod {}", path.display()))
}
