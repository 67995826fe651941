//! The control plane's processes: each logs to its own file and dies with the process that started it
//! (a test binary that panics or is killed leaves nothing running). The kernel sends the death signal when
//! the spawning *thread* ends, and test harnesses start scenarios on short-lived threads: every component is
//! spawned by one thread that lives as long as the process.

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::{Error, Result};

pub struct Component {
    pub name: &'static str,
    pub log: PathBuf,
    child: Child,
}

impl Component {
    pub fn spawn(name: &'static str, binary: &Path, args: &[String], logs: &Path) -> Result<Component> {
        let log = logs.join(format!("{name}.log"));
        let file =
            std::fs::File::create(&log).map_err(|source| Error::Io { what: "creating", path: log.clone(), source })?;
        let err = file.try_clone().map_err(|source| Error::Io { what: "opening", path: log.clone(), source })?;
        let mut command = Command::new(binary);
        command.args(args).stdin(Stdio::null()).stdout(file).stderr(err);
        let child =
            spawn_for_life(command).map_err(|source| Error::Io { what: "starting", path: binary.into(), source })?;
        Ok(Component { name, log, child })
    }

    /// An error when the process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                Err(Error::Exited { component: self.name, status, log: self.log.clone(), tail: tail(&self.log) })
            }
            _ => Ok(()),
        }
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Request = (Command, Sender<std::io::Result<Child>>);

/// Spawns `command` from the process-long spawner thread, with SIGKILL as its parent-death signal.
fn spawn_for_life(command: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (requests, incoming) = channel::<Request>();
        std::thread::spawn(move || {
            for (mut command, reply) in incoming {
                // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of the parent.
                unsafe {
                    command.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from));
                }
                let _ = reply.send(command.spawn());
            }
        });
        Mutex::new(requests)
    });
    let (reply, result) = channel();
    let gone = || std::io::Error::other("the spawner thread is gone");
    spawner.lock().map_err(|_| gone())?.send((command, reply)).map_err(|_| gone())?;
    result.recv().map_err(|_| gone())?
}

/// Runs kubectl with `kubeconfig`; Ok((stdout, stderr)) when it exits 0.
pub fn run(kubectl: &Path, kubeconfig: &Path, args: &[&str], stdin: Option<&[u8]>) -> Result<(String, String)> {
    let mut child = Command::new(kubectl)
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Io { what: "starting", path: kubectl.into(), source })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input).map_err(|source| Error::Io { what: "writing to", path: kubectl.into(), source })?;
    }
    let out =
        child.wait_with_output().map_err(|source| Error::Io { what: "waiting for", path: kubectl.into(), source })?;
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    if out.status.success() {
        Ok((stdout, stderr))
    } else {
        Err(Error::Kubectl { args: args.join(" "), stderr })
    }
}

/// The last 20 lines of a log.
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
