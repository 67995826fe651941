//! One pod: its network namespace, its volumes (made once, shared by its containers) and its containers,
//! init containers first, each to completion, then every regular container at once, each in a mount
//! namespace of its own. [`Pod::sync`] is the kubelet's loop for the pod: restarts with back-off, startup and
//! liveness probes (a container failing them is killed and restarted), readiness probes.
//! A pod is started once and stopped once; a recreated pod is a new `Pod` with the same name.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use super::env::{container_env, PodFields};
use super::image::{ImageRuntime, Images, DEFAULT_UID};
use super::podspec::{Container, PodSpec, Probe, RestartPolicy};
use super::probe;
use super::volumes::{self, PodVolumes, VolumeDirs};
use crate::error::{Context, Error, Result};
use crate::sandbox::mounts::{self, Mount};
use crate::sandbox::netns::PodNet;
use crate::sandbox::spawn::{self, Enter, Launch, User};
use crate::store::Store;

/// How to create a pod.
#[derive(Debug, Clone)]
pub struct PodConfig {
    pub name: String,
    pub namespace: String,
    pub spec: PodSpec,
    pub labels: BTreeMap<String, String>,
    /// The governing Service of a StatefulSet pod (`<pod>.<subdomain>` DNS names).
    pub subdomain: Option<String>,
    /// volume name -> claim name (volumeClaimTemplates).
    pub claim_templates: BTreeMap<String, String>,
    /// claim name -> host directory of the volume bound to it (the agent's provisioned volumes).
    pub bound_claims: BTreeMap<String, PathBuf>,
    /// `kubectl debug --copy-to`-style replacement of the first container's command and args.
    pub command_override: Option<Vec<String>>,
    /// Who created the pod.
    pub owner: Owner,
    /// How the pod reaches the API server.
    pub api_access: ApiAccess,
}

/// What a kubelet gives every pod of its API server.
#[derive(Debug, Clone, Default)]
pub struct ApiAccess {
    /// `KUBERNETES_SERVICE_HOST` and the like, in every container (the container's own env wins).
    pub env: Vec<(String, String)>,
    /// `<volume>/<path>` -> the token requested for each projected service account token.
    pub tokens: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Owner {
    /// Pod `ordinal` of a StatefulSet, created from `template` (compared on upgrade).
    StatefulSet {
        name: String,
        ordinal: u32,
        template: serde_json::Value,
    },
    Job(String),
    HookPod,
    /// A pod of the API server, run by the node agent; its uid tells it from a later pod of the same name.
    ApiServer {
        uid: String,
    },
}

/// Output of a command run in a pod.
#[derive(Debug)]
pub struct ExecOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// The kubelet settings that matter here.
#[derive(Debug, Clone, Copy)]
pub struct KubeletConfig {
    /// First restart delay of a container that ended (Kubernetes: 10 s, doubling, at most 5 min).
    pub restart_backoff: Duration,
}

/// Where the cluster keeps files.
pub struct ClusterDirs<'a> {
    pub pods: &'a Path,
    pub logs: &'a Path,
}

/// A probe's schedule and consecutive results.
#[derive(Debug, Default)]
struct ProbeState {
    next: Option<Instant>,
    successes: u32,
    failures: u32,
    last: Option<String>,
}

/// What a kubelet reports of one container (`containerStatuses`).
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerReport {
    pub name: String,
    pub image: String,
    /// When its current run started; None while it waits for a restart or ended for good.
    pub running_since: Option<SystemTime>,
    /// Passed its startup probe (or has none).
    pub started: bool,
    pub ready: bool,
    pub restarts: u32,
    /// Exit code of its last run (128 + signal when killed).
    pub last_exit_code: Option<i32>,
}

/// A running container as a command run in it needs it: usable without holding the pod, so that a long
/// `kubectl exec` does not stop the kubelet's loop.
#[derive(Debug, Clone)]
pub struct ExecTarget {
    pod: String,
    pid: u32,
    user: User,
    env: Vec<(String, String)>,
    working_dir: String,
    /// Where the command's stdin/stdout/stderr files go (the pod's directory).
    base: PathBuf,
}

struct ContainerState {
    spec: Container,
    runtime: ImageRuntime,
    env: Vec<(String, String)>,
    user: User,
    argv: Vec<String>,
    child: Option<Child>,
    started: Instant,
    started_at: SystemTime,
    restarts: u32,
    last_exit: Option<ExitStatus>,
    restart_at: Option<Instant>,
    startup_done: bool,
    ready: bool,
    startup: ProbeState,
    liveness: ProbeState,
    readiness: ProbeState,
}

pub struct Pod {
    pub(crate) config: PodConfig,
    net: PodNet,
    dir: PathBuf,
    log: PathBuf,
    volumes: PodVolumes,
    extra_mounts: Vec<Mount>,
    containers: Vec<ContainerState>,
    kubelet: KubeletConfig,
    started: Instant,
    execs: AtomicU32,
}

fn user_of(owner: &str, spec: &PodSpec, c: &Container) -> Result<User> {
    let (pod, cs) = (&spec.security_context, &c.security_context);
    let uid = cs.run_as_user.or(pod.run_as_user).unwrap_or(DEFAULT_UID);
    if uid == 0 && cs.run_as_non_root.or(pod.run_as_non_root).unwrap_or(false) {
        return Err(Error::Manifest(format!(
            "{owner}: runAsNonRoot is set but container {} would run as root",
            c.name
        )));
    }
    Ok(User {
        uid,
        // The image's passwd has no entry for an arbitrary uid, so the runtime's default group is 0.
        gid: cs.run_as_group.or(pod.run_as_group).unwrap_or(0),
        groups: pod.fs_group.into_iter().chain(pod.supplemental_groups.iter().copied()).collect(),
        no_new_privs: cs.allow_privilege_escalation == Some(false),
    })
}

/// Everything a pod start needs from the cluster.
pub struct StartContext<'a> {
    pub store: &'a Store,
    pub images: &'a Images,
    pub dirs: &'a ClusterDirs<'a>,
    /// Mounts every container gets (the cluster's hosts file and resolv.conf).
    pub extra_mounts: &'a [Mount],
    pub kubelet: KubeletConfig,
    /// How long an init container may run.
    pub init_timeout: Duration,
}

impl ExecTarget {
    /// Runs `argv` in the container with its env plus `extra_env`; its stdin/stdout/stderr go through files
    /// in the pod's directory.
    pub fn run(
        &self,
        argv: &[String],
        extra_env: &[(&str, &str)],
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ExecOutput> {
        let path = |ext: &str| self.base.with_extension(ext);
        let stdin = match stdin {
            Some(bytes) => {
                fs::write(path("in"), bytes).context(|| format!("writing {}", path("in").display()))?;
                Stdio::from(File::open(path("in")).context(|| format!("opening {}", path("in").display()))?)
            }
            None => Stdio::null(),
        };
        let out = File::create(path("out")).context(|| format!("creating {}", path("out").display()))?;
        let err = File::create(path("err")).context(|| format!("creating {}", path("err").display()))?;
        let mut child = self.spawn(argv, extra_env, [stdin, Stdio::from(out), Stdio::from(err)])?;
        let status = match spawn::wait_until(&mut child, Instant::now() + timeout)? {
            Some(status) => status,
            None => {
                // The command leads its own session: take down everything it started.
                let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                let _ = child.wait();
                return Err(Error::Timeout {
                    what: format!("`{}` in pod {}", argv.join(" "), self.pod),
                    waited: timeout,
                    log_tail: log_tail(&path("err")),
                });
            }
        };
        let read = |p: PathBuf| fs::read_to_string(&p).context(|| format!("reading {}", p.display()));
        let output = ExecOutput { status, stdout: read(path("out"))?, stderr: read(path("err"))? };
        for ext in ["in", "out", "err"] {
            let _ = fs::remove_file(path(ext)); // missing "in" is fine
        }
        Ok(output)
    }

    /// Starts `argv` in the container with its env plus `extra_env` and the given stdin, stdout and stderr;
    /// the command leads its own session (kill its process group to take down all it started).
    pub fn spawn(
        &self,
        argv: &[String],
        extra_env: &[(&str, &str)],
        [stdin, stdout, stderr]: [Stdio; 3],
    ) -> Result<Child> {
        let mut env = self.env.clone();
        env.extend(extra_env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let launch =
            Launch { argv, env: &env, user: &self.user, working_dir: &self.working_dir, stdin, stdout, stderr };
        spawn::spawn(launch, Enter::Join { pid: self.pid })
    }

    /// The container's network namespace (a port-forward connects to the pod from inside it).
    pub fn netns(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.pid))
    }

    pub fn pod(&self) -> &str {
        &self.pod
    }
}

impl Pod {
    /// Creates the pod's volumes, runs its init containers to completion and starts its containers in `net`.
    pub fn start(config: PodConfig, net: PodNet, ctx: &StartContext) -> Result<Pod> {
        let owner = format!("pod {}", config.name);
        let ip = net.ip.to_string();
        let fields = PodFields { name: &config.name, namespace: &config.namespace, ip: &ip };
        let dir = ctx.dirs.pods.join(format!("{}-{}", config.name, net.netns.name()));
        fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
        let api = &config.api_access;
        let volume_dirs = VolumeDirs {
            pod: &dir,
            claim_templates: &config.claim_templates,
            bound_claims: &config.bound_claims,
            fields: &fields,
            tokens: &api.tokens,
        };
        let volumes = volumes::prepare(&owner, &config.spec, ctx.store, &volume_dirs)?;
        let log = ctx.dirs.logs.join(format!("{}.log", config.name));
        let state = |c: &Container, first: bool| -> Result<ContainerState> {
            let runtime = ctx.images.runtime(&owner, &c.image, &config.name)?;
            let mut env = runtime.env.clone();
            env.extend(api.env.iter().cloned());
            for (k, v) in container_env(ctx.store, &format!("{owner} container {}", c.name), c, &fields)? {
                match env.iter_mut().find(|(n, _)| *n == k) {
                    Some(slot) => slot.1 = v,
                    None => env.push((k, v)),
                }
            }
            let argv: Vec<String> = match (&config.command_override, first) {
                (Some(argv), true) => argv.clone(),
                _ if !c.command.is_empty() => c.command.iter().chain(&c.args).cloned().collect(),
                _ if !runtime.entrypoint.is_empty() => runtime.entrypoint.iter().chain(&c.args).cloned().collect(),
                _ => {
                    return Err(Error::Unsupported(format!(
                        "{owner}: container {} has no command and its image {} no entrypoint here",
                        c.name, c.image
                    )))
                }
            };
            Ok(ContainerState {
                user: user_of(&owner, &config.spec, c)?,
                spec: c.clone(),
                runtime,
                env,
                argv,
                child: None,
                started: Instant::now(),
                started_at: SystemTime::now(),
                restarts: 0,
                last_exit: None,
                restart_at: None,
                startup_done: c.startup_probe.is_none(),
                ready: false,
                startup: ProbeState::default(),
                liveness: ProbeState::default(),
                readiness: ProbeState::default(),
            })
        };
        let inits = config.spec.init_containers.iter().map(|c| state(c, false)).collect::<Result<Vec<_>>>()?;
        let containers =
            config.spec.containers.iter().enumerate().map(|(i, c)| state(c, i == 0)).collect::<Result<Vec<_>>>()?;
        let mut pod = Pod {
            config,
            net,
            dir,
            log,
            volumes,
            extra_mounts: ctx.extra_mounts.to_vec(),
            containers: inits,
            kubelet: ctx.kubelet,
            started: Instant::now(),
            execs: AtomicU32::new(0),
        };
        for i in 0..pod.containers.len() {
            pod.launch(i)?;
            let name = pod.containers[i].spec.name.clone();
            let deadline = Instant::now() + ctx.init_timeout;
            let child = pod.containers[i]
                .child
                .as_mut()
                .ok_or_else(|| Error::Manifest(format!("{owner}: init container {name} did not start")))?;
            let status = spawn::wait_until(child, deadline)?;
            match status {
                Some(s) if s.success() => {}
                Some(s) => {
                    pod.kill_everything();
                    return Err(Error::PodExited {
                        pod: pod.config.name.clone(),
                        status: s.to_string(),
                        during: format!("in init container {name} (the pod never started)"),
                        log_tail: log_tail(&pod.log),
                    });
                }
                None => {
                    pod.kill_everything();
                    return Err(Error::Timeout {
                        what: format!("init container {name} of pod {}", pod.config.name),
                        waited: ctx.init_timeout,
                        log_tail: log_tail(&pod.log),
                    });
                }
            }
        }
        pod.containers = containers;
        for i in 0..pod.containers.len() {
            pod.launch(i)?;
        }
        pod.started = Instant::now();
        Ok(pod)
    }

    /// Starts container `i` (again): its own mount namespace with the pod's volumes, the image's layers
    /// and the cluster's mounts.
    fn launch(&mut self, i: usize) -> Result<()> {
        let owner = format!("pod {}", self.config.name);
        let c = &self.containers[i];
        let mut all = mounts_of(&owner, c, &self.volumes)?;
        all.extend(self.extra_mounts.iter().cloned());
        let scratch = self.dir.join("containers").join(format!("{}-{}", c.spec.name, c.restarts));
        let read_only_root = c.spec.security_context.read_only_root_filesystem.unwrap_or(false);
        let plan = mounts::plan(&all, &scratch, read_only_root)?;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .context(|| format!("opening {}", self.log.display()))?;
        writeln!(
            file,
            "==== local-cluster: {} container {} starts at {} as uid {} (restart {}): {}",
            self.config.name,
            c.spec.name,
            self.net.ip,
            c.user.uid,
            c.restarts,
            c.argv.join(" ")
        )
        .context(|| format!("writing {}", self.log.display()))?;
        let stderr = file.try_clone().context(|| format!("opening {}", self.log.display()))?;
        let launch = Launch {
            argv: &c.argv,
            env: &c.env,
            user: &c.user,
            working_dir: c.spec.working_dir.as_deref().unwrap_or("/"),
            stdin: Stdio::null(),
            stdout: Stdio::from(file),
            stderr: Stdio::from(stderr),
        };
        let child =
            spawn::spawn(launch, Enter::Pod { netns: &self.net.netns.path(), hostname: &self.config.name, plan })?;
        let c = &mut self.containers[i];
        c.child = Some(child);
        c.started = Instant::now();
        c.started_at = SystemTime::now();
        c.ready = false;
        c.startup_done = c.spec.startup_probe.is_none();
        c.startup = ProbeState::default();
        c.liveness = ProbeState::default();
        c.readiness = ProbeState::default();
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn ip(&self) -> std::net::Ipv4Addr {
        self.net.ip
    }

    pub(crate) fn net(&self) -> &PodNet {
        &self.net
    }

    /// When the pod's containers were started.
    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// How often each container was restarted, by name.
    pub fn restarts(&self) -> BTreeMap<String, u32> {
        self.containers.iter().map(|c| (c.spec.name.clone(), c.restarts)).collect()
    }

    /// The process ids of everything running in the pod (for inspecting arguments, environment, uid).
    pub fn processes(&self) -> Vec<Pid> {
        self.net.netns.processes()
    }

    /// Every regular container's state, as the kubelet reports it.
    pub fn container_reports(&self) -> Vec<ContainerReport> {
        self.containers
            .iter()
            .map(|c| ContainerReport {
                name: c.spec.name.clone(),
                image: c.spec.image.clone(),
                running_since: c.child.as_ref().map(|_| c.started_at),
                started: c.child.is_some() && c.startup_done,
                ready: c.child.is_some() && c.startup_done && c.ready,
                restarts: c.restarts,
                last_exit_code: c.last_exit.map(|s| {
                    use std::os::unix::process::ExitStatusExt as _;
                    s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
                }),
            })
            .collect()
    }

    /// The first container's exit status, once it has ended (and was not restarted since).
    pub fn exit_status(&mut self) -> Result<Option<ExitStatus>> {
        let name = self.config.name.clone();
        let c = &mut self.containers[0];
        if let Some(child) = &mut c.child {
            if let Some(status) = child.try_wait().context(|| format!("waiting for pod {name}"))? {
                c.last_exit = Some(status);
                c.child = None;
            }
        }
        Ok(if c.child.is_none() { c.last_exit } else { None })
    }

    /// Waits until the first container ends.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("pod {} to exit", self.config.name),
                    waited: timeout,
                    log_tail: log_tail(&self.log),
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Every container has ended: Some(true) if all succeeded (a Job pod's completion).
    pub fn completed(&mut self) -> Result<Option<bool>> {
        for i in 0..self.containers.len() {
            self.reap(i)?;
        }
        if self.containers.iter().any(|c| c.child.is_some()) {
            return Ok(None);
        }
        Ok(Some(self.containers.iter().all(|c| c.last_exit.is_some_and(|s| s.success()))))
    }

    fn reap(&mut self, i: usize) -> Result<()> {
        let name = self.config.name.clone();
        let c = &mut self.containers[i];
        if let Some(child) = &mut c.child {
            if let Some(status) = child.try_wait().context(|| format!("waiting for pod {name}"))? {
                c.last_exit = Some(status);
                c.child = None;
                c.ready = false;
            }
        }
        Ok(())
    }

    /// One pass of the kubelet over this pod: reap ended containers, restart them after their back-off
    /// (restartPolicy Always, or OnFailure after a failure), run the probes that are due.
    pub fn sync(&mut self) -> Result<()> {
        let now = Instant::now();
        for i in 0..self.containers.len() {
            self.reap(i)?;
            let policy = self.config.spec.restart_policy;
            let c = &mut self.containers[i];
            if c.child.is_none() {
                let again = match policy {
                    RestartPolicy::Always => true,
                    RestartPolicy::OnFailure => c.last_exit.is_some_and(|s| !s.success()),
                    RestartPolicy::Never => false,
                };
                if !again {
                    continue;
                }
                let at = *c.restart_at.get_or_insert_with(|| {
                    now + self
                        .kubelet
                        .restart_backoff
                        .saturating_mul(1 << c.restarts.min(5))
                        .min(Duration::from_secs(300))
                });
                if now >= at {
                    c.restarts += 1;
                    c.restart_at = None;
                    self.launch(i)?;
                }
                continue;
            }
            self.run_probes(i, now)?;
        }
        Ok(())
    }

    fn run_probes(&mut self, i: usize, now: Instant) -> Result<()> {
        let c = &self.containers[i];
        let started = c.started;
        let (startup, liveness, readiness) =
            (c.spec.startup_probe.clone(), c.spec.liveness_probe.clone(), c.spec.readiness_probe.clone());
        if !c.startup_done {
            if let Some(p) = &startup {
                if let Some(result) = self.probe_if_due(i, p, started, now, |c| &mut c.startup) {
                    let c = &mut self.containers[i];
                    match result {
                        Ok(()) => c.startup_done = true,
                        Err(_) if c.startup.failures >= p.failure_threshold.unwrap_or(3) => {
                            return self.kill_for_restart(i, "startup probe")
                        }
                        Err(_) => {}
                    }
                }
                return Ok(());
            }
        }
        if let Some(p) = &liveness {
            if let Some(Err(_)) = self.probe_if_due(i, p, started, now, |c| &mut c.liveness) {
                if self.containers[i].liveness.failures >= p.failure_threshold.unwrap_or(3) {
                    return self.kill_for_restart(i, "liveness probe");
                }
            }
        }
        match &readiness {
            None => self.containers[i].ready = true,
            Some(p) => {
                if let Some(result) = self.probe_if_due(i, p, started, now, |c| &mut c.readiness) {
                    let c = &mut self.containers[i];
                    c.ready = match result {
                        Ok(()) => c.ready || c.readiness.successes >= p.success_threshold.unwrap_or(1),
                        Err(_) => c.ready && c.readiness.failures < p.failure_threshold.unwrap_or(3),
                    };
                }
            }
        }
        Ok(())
    }

    /// Runs a probe when its time has come and records the result in the state `which` selects.
    fn probe_if_due(
        &mut self,
        i: usize,
        probe: &Probe,
        started: Instant,
        now: Instant,
        which: fn(&mut ContainerState) -> &mut ProbeState,
    ) -> Option<probe::Outcome> {
        let first = started + Duration::from_secs(probe.initial_delay_seconds);
        let due = which(&mut self.containers[i]).next.unwrap_or(first);
        if now < due {
            return None;
        }
        let result = {
            let c = &self.containers[i];
            let exec = |argv: &[String], timeout: Duration| match self.exec_in(i, argv, &[], None, timeout) {
                Ok(out) => Ok((out.status.success(), out.stderr)),
                Err(Error::Timeout { .. }) => Err(format!("probe timed out after {timeout:?}")),
                Err(e) => Err(e.to_string()),
            };
            let target =
                probe::Target { container: &c.spec, netns: self.net.netns.path(), ip: self.net.ip, exec: &exec };
            probe::run(probe, &target)
        };
        let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1));
        let state = which(&mut self.containers[i]);
        state.next = Some(Instant::now() + period);
        match &result {
            Ok(()) => {
                state.successes += 1;
                state.failures = 0;
            }
            Err(why) => {
                state.failures += 1;
                state.successes = 0;
                state.last = Some(why.clone());
            }
        }
        Some(result)
    }

    /// What the kubelet does to a container that failed its startup or liveness probe.
    fn kill_for_restart(&mut self, i: usize, why: &str) -> Result<()> {
        let c = &mut self.containers[i];
        let note = format!(
            "==== local-cluster: container {} failed its {why} ({}); killing it\n",
            c.spec.name,
            c.liveness.last.clone().or(c.startup.last.clone()).unwrap_or_default()
        );
        if let Ok(mut f) = OpenOptions::new().append(true).open(&self.log) {
            let _ = f.write_all(note.as_bytes()); // the log note is informative only
        }
        if let Some(child) = &mut c.child {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL); // its session: all it started
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            c.last_exit = Some(child.wait().context(|| format!("waiting for container {}", c.spec.name))?);
            c.child = None;
        }
        c.ready = false;
        c.restart_at = Some(Instant::now());
        Ok(())
    }

    /// Whether every container runs, passed its startup probe and is ready.
    pub fn is_ready(&self) -> bool {
        self.containers.iter().all(|c| c.child.is_some() && c.startup_done && c.ready)
    }

    /// Why the pod is not ready, for timeouts; Err when it never will be (a container ended for good or
    /// keeps crashing).
    pub fn readiness_problem(&self) -> std::result::Result<String, Error> {
        for c in &self.containers {
            let ended =
                c.child.is_none() && c.restart_at.is_none() && self.config.spec.restart_policy == RestartPolicy::Never;
            if ended || (c.child.is_none() && c.restarts >= 3) {
                return Err(Error::PodExited {
                    pod: self.config.name.clone(),
                    status: c.last_exit.map_or("killed".to_owned(), |s| s.to_string()),
                    during: format!(
                        "(container {}, {} restart(s)) while waiting for it to become ready",
                        c.spec.name, c.restarts
                    ),
                    log_tail: log_tail(&self.log),
                });
            }
        }
        let why: Vec<String> = self
            .containers
            .iter()
            .filter(|c| !(c.child.is_some() && c.startup_done && c.ready))
            .map(|c| {
                let last = c.readiness.last.as_deref().or(c.startup.last.as_deref()).unwrap_or("no probe result yet");
                format!("{}: {}", c.spec.name, if c.child.is_none() { "not running" } else { last })
            })
            .collect();
        Ok(why.join("; "))
    }

    /// Runs a command in the first container (like `kubectl exec`).
    pub fn exec(
        &self,
        argv: &[String],
        extra_env: &[(&str, &str)],
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ExecOutput> {
        self.exec_in(0, argv, extra_env, stdin, timeout)
    }

    /// Runs a command in the named container (`kubectl exec -c`).
    pub fn exec_container(
        &self,
        container: &str,
        argv: &[String],
        extra_env: &[(&str, &str)],
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ExecOutput> {
        let i = self
            .containers
            .iter()
            .position(|c| c.spec.name == container)
            .ok_or_else(|| Error::Manifest(format!("pod {} has no container {container}", self.config.name)))?;
        self.exec_in(i, argv, extra_env, stdin, timeout)
    }

    /// Runs a command in container `i`: same namespaces, user and env, plus `extra_env`.
    fn exec_in(
        &self,
        i: usize,
        argv: &[String],
        extra_env: &[(&str, &str)],
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ExecOutput> {
        self.exec_target_at(i)?.run(argv, extra_env, stdin, timeout)
    }

    /// The container named `container` (else the first) for running commands in it later.
    pub fn exec_target(&self, container: Option<&str>) -> Result<ExecTarget> {
        let i = match container {
            None => 0,
            Some(name) => self
                .containers
                .iter()
                .position(|c| c.spec.name == name)
                .ok_or_else(|| Error::Manifest(format!("pod {} has no container {name}", self.config.name)))?,
        };
        self.exec_target_at(i)
    }

    fn exec_target_at(&self, i: usize) -> Result<ExecTarget> {
        let c = &self.containers[i];
        let pid = c.child.as_ref().map(Child::id).ok_or_else(|| {
            Error::Manifest(format!("container {} of pod {} is not running", c.spec.name, self.config.name))
        })?;
        let n = self.execs.fetch_add(1, Ordering::Relaxed);
        Ok(ExecTarget {
            pod: self.config.name.clone(),
            pid,
            user: c.user.clone(),
            env: c.env.clone(),
            working_dir: c.spec.working_dir.clone().unwrap_or_else(|| "/".to_owned()),
            base: self.dir.join(format!("exec-{n}")),
        })
    }

    /// Writes the pod's ConfigMap and Secret volumes again (the kubelet's periodic volume sync).
    pub fn refresh_volumes(&self, store: &Store) -> Result<()> {
        volumes::refresh(&format!("pod {}", self.config.name), &self.config.spec, store, &self.volumes)
    }

    /// SIGKILL to every process of the pod (a crash of everything; the kubelet restarts what it should).
    pub fn kill_everything(&mut self) {
        self.net.netns.kill_all(Duration::from_secs(10));
    }

    /// Sends each container's stop signal (first step of a deletion).
    pub fn signal_stop(&mut self) {
        for c in &mut self.containers {
            if let Some(child) = &mut c.child {
                if let Ok(None) = child.try_wait() {
                    let _ = kill(Pid::from_raw(child.id() as i32), c.runtime.stop_signal);
                    // may just have exited
                }
            }
        }
    }

    /// Deletes the pod: the stop signals, `terminationGracePeriodSeconds`, then SIGKILL to everything left in
    /// its network namespace, which is then removed.
    pub fn stop(mut self) -> Result<()> {
        let grace = Duration::from_secs(self.config.spec.termination_grace_period_seconds.unwrap_or(30));
        self.signal_stop();
        let deadline = Instant::now() + grace;
        for c in &mut self.containers {
            if let Some(child) = &mut c.child {
                spawn::wait_until(child, deadline)?;
            }
        }
        self.net.netns.kill_all(Duration::from_secs(10));
        for c in &mut self.containers {
            if let Some(child) = &mut c.child {
                let _ = child.wait(); // reaped or already reaped
            }
        }
        drop(self.net);
        fs::remove_dir_all(&self.dir).context(|| format!("removing {}", self.dir.display()))
    }

    /// The last lines of the pod log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }
}

fn mounts_of(owner: &str, c: &ContainerState, volumes: &PodVolumes) -> Result<Vec<Mount>> {
    let mut all = volumes::container_mounts(owner, &c.spec, volumes)?;
    all.extend(c.runtime.layers.iter().cloned());
    Ok(all)
}

/// "\n--- last lines of <file> ---\n..." for error messages.
pub fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
    format!("\n--- last lines of {} ---\n{tail}", path.display())
}
