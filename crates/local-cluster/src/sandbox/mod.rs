//! The container runtime's operating-system part (what runc does for a kubelet): network namespaces joined
//! by a bridge, mount plans carried out between fork and exec, processes started as a uid in those
//! namespaces. Nothing here knows a Kubernetes object.

pub mod mounts;
pub mod netns;
pub mod spawn;

use std::os::fd::BorrowedFd;

/// Reports a failed system call of the forked child on its stderr (the container log) without allocating,
/// and turns the errno into the spawn error.
pub(crate) fn child_error(what: &[u8], errno: nix::Error) -> std::io::Error {
    // SAFETY: fd 2 is the child's stderr, open for the whole pre-exec phase; it is only borrowed here.
    let fd = unsafe { BorrowedFd::borrow_raw(2) };
    for part in [b"local-cluster: ".as_slice(), what, b": ", errno.desc().as_bytes(), b"\n"] {
        let _ = nix::unistd::write(fd, part); // nowhere else to report to
    }
    std::io::Error::from(errno)
}
