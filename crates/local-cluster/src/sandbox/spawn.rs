//! Starting a container process: between fork and exec the child enters the pod's network namespace,
//! gets private mount and UTS namespaces with the pod's volumes (or joins a running container's namespaces,
//! for `kubectl exec`-like commands and probes), then drops to the pod's uid, gid and supplementary groups
//! (fsGroup), sets no_new_privs when privilege escalation is off, and starts a new session.

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::unistd::{chdir, setgroups, sethostname, setresgid, setresuid, setsid, Gid, Uid};

use super::child_error;
use super::mounts::{MountPlan, Op};
use crate::error::{Context, Error, Result};

/// Who the container runs as.
#[derive(Debug, Clone)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: fsGroup and supplementalGroups.
    pub groups: Vec<u32>,
    /// `allowPrivilegeEscalation: false`.
    pub no_new_privs: bool,
}

/// Which namespaces the process lives in.
pub enum Enter<'a> {
    /// A pod's main process: its network namespace plus new mount and UTS namespaces.
    Pod { netns: &'a Path, hostname: &'a str, plan: MountPlan },
    /// A command in a running container (exec, probes): the namespaces of that process.
    Join { pid: u32 },
}

/// What to run, and where its output goes.
pub struct Launch<'a> {
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    pub user: &'a User,
    pub working_dir: &'a str,
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
}

fn step<T>(what: &[u8], r: nix::Result<T>) -> std::io::Result<T> {
    r.map_err(|errno| child_error(what, errno))
}

/// Everything the child needs, prepared before the fork (the child must not allocate).
struct ChildSetup {
    join: Vec<(RawFd, CloneFlags)>,
    pod: Option<(CString, Vec<Op>)>,
    groups: Vec<Gid>,
    uid: Uid,
    gid: Gid,
    no_new_privs: bool,
    cwd: CString,
}

impl ChildSetup {
    fn run(&mut self) -> std::io::Result<()> {
        // A container starts with every signal at its default action. The harness may itself run with SIGINT
        // and SIGQUIT ignored (a shell starts background commands so), and exec would hand that on: the
        // postgres image's stop signal, SIGINT, would then be lost and every pod stop would end in SIGKILL.
        for sig in Signal::iterator().filter(|s| !matches!(s, Signal::SIGKILL | Signal::SIGSTOP)) {
            // SAFETY: SIG_DFL installs no handler; sigaction is async-signal-safe.
            step(b"signal", unsafe { signal(sig, SigHandler::SigDfl) })?;
        }
        for (fd, flags) in &self.join {
            // SAFETY: the parent keeps the namespace file open until the spawn has returned.
            step(b"setns", setns(unsafe { BorrowedFd::borrow_raw(*fd) }, *flags))?;
        }
        if let Some((hostname, ops)) = &mut self.pod {
            step(b"unshare", unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS))?;
            step(b"sethostname", sethostname(OsStr::from_bytes(hostname.as_bytes())))?;
            // Nothing mounted from here on may propagate back to the host.
            let none: Option<&CStr> = None;
            step(b"making / private", mount(none, c"/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none))?;
            for op in ops.iter_mut() {
                op.open_source()?;
            }
            for op in ops.iter() {
                op.run()?;
            }
        }
        step(b"setgroups", setgroups(&self.groups))?;
        step(b"setresgid", setresgid(self.gid, self.gid, self.gid))?;
        step(b"setresuid", setresuid(self.uid, self.uid, self.uid))?;
        if self.no_new_privs {
            step(b"no_new_privs", nix::sys::prctl::set_no_new_privs())?;
        }
        step(b"setsid", setsid())?;
        step(b"chdir", chdir(self.cwd.as_c_str()))
    }
}

/// Starts the process. The namespace files stay open here until the child has exec'd.
pub fn spawn(launch: Launch, enter: Enter) -> Result<Child> {
    let (program, args) =
        launch.argv.split_first().ok_or_else(|| Error::Manifest("a container without command or args".to_owned()))?;
    let mut keep: Vec<File> = Vec::new();
    let mut join = Vec::new();
    let pod = match enter {
        Enter::Pod { netns, hostname, plan } => {
            let file = File::open(netns).context(|| format!("opening {}", netns.display()))?;
            join.push((file.as_raw_fd(), CloneFlags::CLONE_NEWNET));
            keep.push(file);
            let MountPlan { ops } = plan;
            let hostname = CString::new(hostname).map_err(|_| Error::Manifest("hostname with NUL".to_owned()))?;
            Some((hostname, ops))
        }
        Enter::Join { pid } => {
            for (ns, flags) in
                [("net", CloneFlags::CLONE_NEWNET), ("uts", CloneFlags::CLONE_NEWUTS), ("mnt", CloneFlags::CLONE_NEWNS)]
            {
                let path = format!("/proc/{pid}/ns/{ns}");
                let file = File::open(&path).context(|| format!("opening {path} (container not running?)"))?;
                join.push((file.as_raw_fd(), flags));
                keep.push(file);
            }
            None
        }
    };
    let mut setup = ChildSetup {
        join,
        pod,
        groups: launch.user.groups.iter().map(|g| Gid::from_raw(*g)).collect(),
        uid: Uid::from_raw(launch.user.uid),
        gid: Gid::from_raw(launch.user.gid),
        no_new_privs: launch.user.no_new_privs,
        cwd: CString::new(launch.working_dir).map_err(|_| Error::Manifest("workingDir with NUL".to_owned()))?,
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(launch.stdin)
        .stdout(launch.stdout)
        .stderr(launch.stderr);
    // SAFETY: the closure only makes system calls on data prepared above; it neither allocates nor locks,
    // so it is sound in the forked child of a multi-threaded process.
    unsafe {
        cmd.pre_exec(move || setup.run());
    }
    let child = cmd.spawn().context(|| format!("starting {}", launch.argv.join(" ")))?;
    drop(keep);
    Ok(child)
}

/// Waits for a child until `deadline`; `None` if it is still running then.
pub fn wait_until(child: &mut Child, deadline: Instant) -> Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait().context(|| "waiting for a container process".to_owned())? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A container must not inherit ignored signals from the harness (a shell's background job has SIGINT
    /// and SIGQUIT ignored): the postgres image's stop signal is SIGINT.
    #[test]
    fn a_container_starts_with_no_signal_ignored() -> Result<()> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: joining namespaces needs root");
            return Ok(());
        }
        // SAFETY: SIG_IGN installs no handler; only this test process is affected, and nothing in it
        // expects SIGINT.
        unsafe { signal(Signal::SIGINT, SigHandler::SigIgn) }.map_err(|e| Error::Manifest(e.to_string()))?;
        let argv =
            ["/bin/sh".to_owned(), "-c".to_owned(), "sed -n 's/^SigIgn:[[:space:]]*//p' /proc/self/status".to_owned()];
        let user = User { uid: 0, gid: 0, groups: Vec::new(), no_new_privs: false };
        let launch = Launch {
            argv: &argv,
            env: &[],
            user: &user,
            working_dir: "/",
            stdin: Stdio::null(),
            stdout: Stdio::piped(),
            stderr: Stdio::inherit(),
        };
        let out = spawn(launch, Enter::Join { pid: std::process::id() })?
            .wait_with_output()
            .context(|| "waiting for sh".to_owned())?;
        assert!(out.status.success());
        let mask = u64::from_str_radix(String::from_utf8_lossy(&out.stdout).trim(), 16)
            .map_err(|e| Error::Manifest(format!("SigIgn: {e}")))?;
        // Signals 1 to 31; above them are real-time signals, some of which glibc keeps for itself.
        assert_eq!(mask & 0x7fff_ffff, 0, "ignored signals: {mask:#x}");
        Ok(())
    }
}
