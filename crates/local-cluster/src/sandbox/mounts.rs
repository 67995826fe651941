//! A pod's file system view: planned in the harness, carried out in the child between fork and exec,
//! inside a private mount namespace, so the host never sees any of it.
//!
//! Mount paths that exist on the host (`/tmp`, `/var/run/postgresql`, `/dev/shm`) get the volume bound on
//! top. Paths that do not (`/etc/citus/conf`, `/opt/citus/scripts`, `/var/lib/postgresql/data`) need a
//! mount point: the nearest existing ancestor gets an overlay whose lower layer is the host directory
//! itself and whose upper layer, in the pod's scratch directory, holds the missing directories. The
//! ancestor must not be `/` and must have no mounts below it (the overlay would hide them).
//!
//! Bind sources are opened (O_PATH) in the child before any mount and bound through `/proc/self/fd/N`, so a
//! mount over `/tmp` or an overlay cannot hide or shadow a source below it. (They cannot be opened before
//! the fork: a bind source must belong to the child's own, new mount namespace.)

use std::ffi::{CStr, CString};
use std::fs::{self, File};
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::Mode;

use crate::error::{Context, Error, Result};
/// Where a mount's content comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A host directory or file, bound.
    Path(PathBuf),
    /// Host directories stacked read-only over the mount point, first one on top (an image layer).
    Layers(Vec<PathBuf>),
}

/// One mount of a container.
#[derive(Debug, Clone)]
pub struct Mount {
    pub target: PathBuf,
    pub source: Source,
    pub read_only: bool,
}

/// One mount system call, with a description for the error message.
#[derive(Debug)]
pub(crate) struct Op {
    what: CString,
    source: CallSource,
    target: CString,
    fstype: Option<CString>,
    flags: MsFlags,
    data: Option<CString>,
}

/// The `source` argument: fixed, or a host path bound through `/proc/self/fd/N` once opened in the child.
#[derive(Debug)]
enum CallSource {
    Fixed(Option<CString>),
    Bind {
        path: CString,
        proc_path: [u8; 40],
    },
    /// Not a mount: the chroot into a root built by the plan (`target`).
    Chroot,
}

/// The operations of one pod start, in order.
#[derive(Debug)]
pub struct MountPlan {
    pub(crate) ops: Vec<Op>,
}

fn cstring(s: impl AsRef<[u8]>) -> Result<CString> {
    CString::new(s.as_ref().to_vec()).map_err(|_| Error::Manifest("a path contains a NUL byte".to_owned()))
}

fn depth(p: &Path) -> usize {
    p.components().count()
}

/// Splits `target` into its nearest existing ancestor (symlinks resolved) and the missing rest.
fn resolve(target: &Path) -> Result<(PathBuf, PathBuf)> {
    if !target.is_absolute() || target.components().any(|c| c == Component::ParentDir) {
        return Err(Error::Manifest(format!("mount path {} must be absolute and without ..", target.display())));
    }
    let mut existing = target.to_path_buf();
    let mut missing = Vec::new();
    loop {
        if let Ok(canonical) = fs::canonicalize(&existing) {
            let rest: PathBuf = missing.iter().rev().collect();
            return Ok((canonical, rest));
        }
        match (existing.file_name().map(ToOwned::to_owned), existing.parent().map(Path::to_path_buf)) {
            (Some(name), Some(parent)) => {
                missing.push(name);
                existing = parent;
            }
            _ => return Err(Error::Manifest(format!("cannot resolve mount path {}", target.display()))),
        }
    }
}

/// Mount points of the harness's own mount namespace (octal escapes of /proc/self/mountinfo decoded).
fn host_mount_points() -> Result<Vec<PathBuf>> {
    let info = fs::read_to_string("/proc/self/mountinfo").context(|| "reading /proc/self/mountinfo".to_owned())?;
    Ok(info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|escaped| PathBuf::from(escaped.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")))
        .collect())
}

/// Plans the mounts of a container start. `scratch` is a fresh per-start directory for overlay layers and,
/// when a mount path needs a new directory in `/`, for a root of its own: every entry of the host's `/`
/// bound into it, the new directories beside them, then a chroot into it. `read_only_root` makes the
/// root file system read-only, volumes excepted.
pub fn plan(mounts: &[Mount], scratch: &Path, read_only_root: bool) -> Result<MountPlan> {
    let host_mounts = host_mount_points()?;
    let new_root = scratch.join("root");
    let mut ops = Vec::new();
    let mut root_binds = Vec::new();
    if mounts
        .iter()
        .map(|m| resolve(&m.target))
        .any(|r| r.is_ok_and(|(a, m)| a == Path::new("/") && !m.as_os_str().is_empty()))
    {
        root_binds = build_root(&new_root, &mut ops)?;
    }
    let mut targets = Vec::new();
    for m in mounts {
        let (existing, missing) = resolve(&m.target)?;
        let target = if missing.as_os_str().is_empty() { existing.clone() } else { existing.join(&missing) };
        targets.push((target, existing, missing, m));
    }
    let mut overlays: Vec<(PathBuf, PathBuf)> = Vec::new(); // (ancestor, upper dir)
    for (target, ancestor, missing, m) in &targets {
        if missing.as_os_str().is_empty() {
            continue;
        }
        if let Some((outer, ..)) = targets.iter().find(|(t, ..)| ancestor.starts_with(t)) {
            return Err(Error::Unsupported(format!(
                "mount path {} would need a directory created inside the volume mounted at {}",
                target.display(),
                outer.display()
            )));
        }
        if ancestor == Path::new("/") {
            let dir = new_root.join(missing);
            fs::create_dir_all(&dir).context(|| format!("creating mount point {}", dir.display()))?;
            continue;
        }
        if let Some(sub) = host_mounts.iter().find(|p| p.starts_with(ancestor) && *p != ancestor) {
            return Err(Error::Unsupported(format!(
                "mount path {} needs an overlay on {}, which would hide the host mount {}",
                target.display(),
                ancestor.display(),
                sub.display()
            )));
        }
        let upper = match overlays.iter().find(|(a, _)| a == ancestor) {
            Some((_, upper)) => upper.clone(),
            None => {
                let upper = scratch.join(format!("overlay-{}", overlays.len())).join("upper");
                overlays.push((ancestor.clone(), upper.clone()));
                upper
            }
        };
        let point = upper.join(missing);
        let is_file = matches!(&m.source, Source::Path(p) if p.is_file());
        let dir = if is_file { point.parent().unwrap_or(&upper).to_path_buf() } else { point.clone() };
        fs::create_dir_all(&dir).context(|| format!("creating mount point {}", dir.display()))?;
        if is_file {
            File::create(&point).context(|| format!("creating mount point {}", point.display()))?;
        }
    }

    overlays.sort_by_key(|(a, _)| depth(a));
    for (ancestor, upper) in &overlays {
        let work = upper.with_file_name("work");
        fs::create_dir_all(&work).context(|| format!("creating {}", work.display()))?;
        let layers = [ancestor, upper, &work];
        if layers.iter().any(|p| p.as_os_str().as_bytes().iter().any(|b| b",:\\".contains(b))) {
            return Err(Error::Unsupported(format!("overlay paths with ',', ':' or '\\': {}", upper.display())));
        }
        let options =
            format!("lowerdir={},upperdir={},workdir={}", ancestor.display(), upper.display(), work.display());
        ops.push(Op {
            what: cstring(format!("overlay on {}", ancestor.display()))?,
            source: CallSource::Fixed(Some(cstring("overlay")?)),
            target: cstring(ancestor.as_os_str().as_bytes())?,
            fstype: Some(cstring("overlay")?),
            flags: MsFlags::empty(),
            data: Some(cstring(options)?),
        });
    }

    targets.sort_by_key(|(target, ..)| depth(target));
    for (target, _, _, m) in &targets {
        let target_c = cstring(target.as_os_str().as_bytes())?;
        match &m.source {
            Source::Path(path) => ops.push(Op {
                what: cstring(format!("bind {} on {}", path.display(), target.display()))?,
                source: CallSource::Bind { path: cstring(path.as_os_str().as_bytes())?, proc_path: [0; 40] },
                target: target_c.clone(),
                fstype: None,
                flags: MsFlags::MS_BIND,
                data: None,
            }),
            Source::Layers(layers) => {
                // The mount point itself is the bottom layer: files not in any layer stay visible.
                let lower: Vec<String> = layers.iter().chain([target]).map(|p| p.display().to_string()).collect();
                if lower.iter().any(|p| p.contains([',', ':', '\\'])) {
                    return Err(Error::Unsupported(format!("layer paths with ',', ':' or '\\': {lower:?}")));
                }
                ops.push(Op {
                    what: cstring(format!("layers {lower:?} on {}", target.display()))?,
                    source: CallSource::Fixed(Some(cstring("overlay")?)),
                    target: target_c.clone(),
                    fstype: Some(cstring("overlay")?),
                    flags: MsFlags::MS_RDONLY,
                    data: Some(cstring(format!("lowerdir={}", lower.join(":")))?),
                })
            }
        }
        if m.read_only {
            ops.push(read_only(target_c, format!("read-only remount of {}", target.display()))?);
        }
    }
    if read_only_root {
        ops.push(read_only(cstring("/")?, "read-only remount of /".to_owned())?);
        for dir in root_binds {
            let target = cstring(dir.as_os_str().as_bytes())?;
            ops.push(read_only(target, format!("read-only remount of {}", dir.display()))?);
        }
    }
    Ok(MountPlan { ops })
}

/// Fills `root` with the host's `/` (directories bound, symlinks copied) and plans the binds and the chroot.
/// Returns the bound directories that belong to the root file system (they follow readOnlyRootFilesystem).
fn build_root(root: &Path, ops: &mut Vec<Op>) -> Result<Vec<PathBuf>> {
    use std::os::unix::fs::MetadataExt;
    fs::create_dir_all(root).context(|| format!("creating {}", root.display()))?;
    let root_c = cstring(root.as_os_str().as_bytes())?;
    // A bind of the directory onto itself makes it a mount point, which a read-only remount needs.
    ops.push(bind(root_c.clone(), root_c.clone(), MsFlags::MS_BIND, format!("bind {} on itself", root.display()))?);
    let root_dev = fs::metadata("/").context(|| "reading /".to_owned())?.dev();
    let mut same_fs = Vec::new();
    for entry in fs::read_dir("/").context(|| "reading /".to_owned())? {
        let entry = entry.context(|| "reading /".to_owned())?;
        let host = Path::new("/").join(entry.file_name());
        let inside = root.join(entry.file_name());
        let meta = fs::symlink_metadata(&host).context(|| format!("reading {}", host.display()))?;
        if meta.file_type().is_symlink() {
            let link = fs::read_link(&host).context(|| format!("reading {}", host.display()))?;
            std::os::unix::fs::symlink(link, &inside).context(|| format!("creating {}", inside.display()))?;
            continue;
        }
        if meta.is_dir() {
            fs::create_dir_all(&inside).context(|| format!("creating {}", inside.display()))?;
        } else {
            File::create(&inside).context(|| format!("creating {}", inside.display()))?;
        }
        if meta.is_dir() && meta.dev() == root_dev {
            same_fs.push(host.clone());
        }
        let (source, target) = (cstring(host.as_os_str().as_bytes())?, cstring(inside.as_os_str().as_bytes())?);
        let what = format!("bind {} into the pod's root", host.display());
        ops.push(bind(source, target, MsFlags::MS_BIND | MsFlags::MS_REC, what)?);
    }
    ops.push(Op {
        what: cstring(format!("chroot into {}", root.display()))?,
        source: CallSource::Chroot,
        target: root_c,
        fstype: None,
        flags: MsFlags::empty(),
        data: None,
    });
    Ok(same_fs)
}

fn bind(source: CString, target: CString, flags: MsFlags, what: String) -> Result<Op> {
    Ok(Op { what: cstring(what)?, source: CallSource::Fixed(Some(source)), target, fstype: None, flags, data: None })
}

fn read_only(target: CString, what: String) -> Result<Op> {
    Ok(Op {
        what: cstring(what)?,
        source: CallSource::Fixed(None),
        target,
        fstype: None,
        flags: MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
        data: None,
    })
}

fn fail(what: &CStr, errno: nix::Error) -> std::io::Error {
    super::child_error(what.to_bytes(), errno)
}

/// Writes "/proc/self/fd/<fd>\0" into `buf` (no allocation).
fn proc_fd_path(fd: RawFd, buf: &mut [u8; 40]) {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut digits = [0u8; 12];
    let (mut n, mut len) = (fd.unsigned_abs(), 0);
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[PREFIX.len() + i] = digits[len - 1 - i];
    }
    buf[PREFIX.len() + len] = 0;
}

impl Op {
    /// In the forked child, before any mount: opens a bind source (O_PATH; closed by the exec).
    pub(crate) fn open_source(&mut self) -> std::io::Result<()> {
        if let CallSource::Bind { path, proc_path } = &mut self.source {
            let fd = open(path.as_c_str(), OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(|e| fail(&self.what, e))?;
            proc_fd_path(fd, proc_path);
        }
        Ok(())
    }

    /// Runs in the forked child: system calls only, no allocation. On failure the description goes to the
    /// container log (fd 2), the errno to the spawn error.
    pub(crate) fn run(&self) -> std::io::Result<()> {
        let source = match &self.source {
            CallSource::Fixed(source) => source.as_deref(),
            CallSource::Bind { proc_path, .. } => CStr::from_bytes_until_nul(proc_path).ok(),
            CallSource::Chroot => {
                nix::unistd::chroot(self.target.as_c_str()).map_err(|e| fail(&self.what, e))?;
                return nix::unistd::chdir(c"/").map_err(|e| fail(&self.what, e));
            }
        };
        mount(source, self.target.as_c_str(), self.fstype.as_deref(), self.flags, self.data.as_deref())
            .map_err(|errno| fail(&self.what, errno))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_split_into_existing_ancestor_and_missing_rest() -> Result<()> {
        let (existing, missing) = resolve(Path::new("/proc/self/no/such/dir"))?;
        assert!(existing.starts_with("/proc"), "{}", existing.display());
        assert_eq!(missing, Path::new("no/such/dir"));
        assert_eq!(resolve(Path::new("/"))?, (PathBuf::from("/"), PathBuf::new()));
        assert!(resolve(Path::new("relative")).is_err());
        assert!(resolve(Path::new("/a/../b")).is_err());
        Ok(())
    }

    #[test]
    fn proc_fd_paths_are_written_without_allocation() {
        let mut buf = [0u8; 40];
        proc_fd_path(1234, &mut buf);
        assert_eq!(CStr::from_bytes_until_nul(&buf).ok(), Some(c"/proc/self/fd/1234"));
        proc_fd_path(0, &mut buf);
        assert_eq!(CStr::from_bytes_until_nul(&buf).ok(), Some(c"/proc/self/fd/0"));
    }
}
