//! One running pod: its network namespace, materialised volumes, resolved environment and the container's
//! process. A pod is started once and stopped once; a "restart" is a new pod with the same name (as a
//! StatefulSet controller recreates it), which gets a new address but the same claims.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::error::{Context, Error, Result};
use crate::image::{self, Postgres};
use crate::mounts;
use crate::netns::PodNet;
use crate::objects::{Objects, PodFields};
use crate::podspec::PodSpec;
use crate::process::{self, Enter, Launch, User};
use crate::volumes::{self, Mount, VolumeDirs};

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
    /// `kubectl debug --copy-to`-style replacement of command and args.
    pub command_override: Option<Vec<String>>,
    /// Who created the pod.
    pub owner: Owner,
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
}

/// Output of a command run in a pod.
#[derive(Debug)]
pub struct ExecOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

pub struct Pod {
    pub(crate) config: PodConfig,
    net: PodNet,
    dir: PathBuf,
    log: PathBuf,
    env: Vec<(String, String)>,
    user: User,
    child: Child,
    started: Instant,
    execs: AtomicU32,
}

/// Where the cluster keeps files.
pub struct ClusterDirs<'a> {
    pub pods: &'a Path,
    pub claims: &'a Path,
    pub logs: &'a Path,
}

fn user_of(owner: &str, spec: &PodSpec) -> Result<User> {
    let (pod, c) = (&spec.security_context, &spec.container.security_context);
    let uid = c
        .run_as_user
        .or(pod.run_as_user)
        .unwrap_or(image::DEFAULT_UID);
    if uid == 0 && c.run_as_non_root.or(pod.run_as_non_root).unwrap_or(false) {
        return Err(Error::Manifest(format!(
            "{owner}: runAsNonRoot is set but the container would run as root"
        )));
    }
    Ok(User {
        uid,
        // The image's passwd has no entry for an arbitrary uid, so the runtime's default group is 0.
        gid: c.run_as_group.or(pod.run_as_group).unwrap_or(0),
        groups: pod
            .fs_group
            .into_iter()
            .chain(pod.supplemental_groups.iter().copied())
            .collect(),
        no_new_privs: c.allow_privilege_escalation == Some(false),
    })
}

impl Pod {
    /// Creates the pod's volumes and starts its container in `net`.
    pub fn start(
        config: PodConfig,
        net: PodNet,
        objects: &Objects,
        postgres: &Postgres,
        dirs: &ClusterDirs,
        extra_mounts: &[Mount],
    ) -> Result<Pod> {
        let owner = format!("pod {}", config.name);
        let spec = &config.spec;
        let user = user_of(&owner, spec)?;
        let ip = net.ip.to_string();
        let fields = PodFields {
            name: &config.name,
            namespace: &config.namespace,
            ip: &ip,
        };
        let mut env = postgres.base_env(&config.name);
        for (k, v) in objects.container_env(&owner, &spec.container, &fields)? {
            match env.iter_mut().find(|(n, _)| *n == k) {
                Some(slot) => slot.1 = v,
                None => env.push((k, v)),
            }
        }
        let dir = dirs
            .pods
            .join(format!("{}-{}", config.name, net.netns.name()));
        fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
        let volume_dirs = VolumeDirs {
            pod: &dir,
            claims: dirs.claims,
            claim_templates: &config.claim_templates,
        };
        let mut all_mounts = volumes::materialise(&owner, spec, objects, &volume_dirs)?;
        all_mounts.extend_from_slice(extra_mounts);
        let plan = mounts::plan(&all_mounts, &dir.join("mounts"))?;

        let argv = match &config.command_override {
            Some(argv) => argv.clone(),
            None if spec.container.command.is_empty() => {
                return Err(Error::Unsupported(format!(
                    "{owner}: no command (the image's ENTRYPOINT is not emulated)"
                )))
            }
            None => spec
                .container
                .command
                .iter()
                .chain(&spec.container.args)
                .cloned()
                .collect(),
        };
        let log = dirs.logs.join(format!("{}.log", config.name));
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .context(|| format!("opening {}", log.display()))?;
        writeln!(
            file,
            "==== local-cluster: {} starts at {} as uid {}: {}",
            config.name,
            net.ip,
            user.uid,
            argv.join(" ")
        )
        .context(|| format!("writing {}", log.display()))?;
        let stderr = file
            .try_clone()
            .context(|| format!("opening {}", log.display()))?;
        let read_only_root = spec
            .container
            .security_context
            .read_only_root_filesystem
            .unwrap_or(false);
        let launch = Launch {
            argv: &argv,
            env: &env,
            user: &user,
            working_dir: spec.container.working_dir.as_deref().unwrap_or("/"),
            stdin: Stdio::null(),
            stdout: Stdio::from(file),
            stderr: Stdio::from(stderr),
        };
        let enter = Enter::Pod {
            netns: &net.netns.path(),
            hostname: &config.name,
            plan,
            read_only_root,
        };
        let child = process::spawn(launch, enter)?;
        Ok(Pod {
            config,
            net,
            dir,
            log,
            env,
            user,
            child,
            started: Instant::now(),
            execs: AtomicU32::new(0),
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn ip(&self) -> std::net::Ipv4Addr {
        self.net.ip
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The process ids of everything running in the pod (for inspecting arguments, environment, uid).
    pub fn processes(&self) -> Vec<Pid> {
        self.net.netns.processes()
    }

    /// The container's exit status, once it has ended.
    pub fn exit_status(&mut self) -> Result<Option<ExitStatus>> {
        self.child
            .try_wait()
            .context(|| format!("waiting for pod {}", self.config.name))
    }

    /// Waits until the container ends.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        match process::wait_until(&mut self.child, Instant::now() + timeout)? {
            Some(status) => Ok(status),
            None => Err(Error::Timeout {
                what: format!("pod {} to exit", self.config.name),
                waited: timeout,
                log_tail: log_tail(&self.log),
            }),
        }
    }

    /// Runs a command in the running container (like `kubectl exec`): same namespaces, user and env, plus
    /// `extra_env`.
    pub fn exec(
        &self,
        argv: &[String],
        extra_env: &[(&str, &str)],
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ExecOutput> {
        let n = self.execs.fetch_add(1, Ordering::Relaxed);
        let base = self.dir.join(format!("exec-{n}"));
        let path = |ext: &str| base.with_extension(ext);
        let stdin = match stdin {
            Some(bytes) => {
                fs::write(path("in"), bytes)
                    .context(|| format!("writing {}", path("in").display()))?;
                Stdio::from(
                    File::open(path("in"))
                        .context(|| format!("opening {}", path("in").display()))?,
                )
            }
            None => Stdio::null(),
        };
        let out =
            File::create(path("out")).context(|| format!("creating {}", path("out").display()))?;
        let err =
            File::create(path("err")).context(|| format!("creating {}", path("err").display()))?;
        let mut env = self.env.clone();
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let launch = Launch {
            argv,
            env: &env,
            user: &self.user,
            working_dir: self
                .config
                .spec
                .container
                .working_dir
                .as_deref()
                .unwrap_or("/"),
            stdin,
            stdout: Stdio::from(out),
            stderr: Stdio::from(err),
        };
        let mut child = process::spawn(
            launch,
            Enter::Join {
                pid: self.child.id(),
            },
        )?;
        let status = match process::wait_until(&mut child, Instant::now() + timeout)? {
            Some(status) => status,
            None => {
                // The command leads its own session: take down everything it started.
                let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                let _ = child.wait();
                return Err(Error::Timeout {
                    what: format!("`{}` in pod {}", argv.join(" "), self.config.name),
                    waited: timeout,
                    log_tail: log_tail(&path("err")),
                });
            }
        };
        let read =
            |p: PathBuf| fs::read_to_string(&p).context(|| format!("reading {}", p.display()));
        let output = ExecOutput {
            status,
            stdout: read(path("out"))?,
            stderr: read(path("err"))?,
        };
        for ext in ["in", "out", "err"] {
            let _ = fs::remove_file(path(ext)); // missing "in" is fine
        }
        Ok(output)
    }

    /// Sends the image's stop signal (first step of a deletion).
    pub fn signal_stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(Pid::from_raw(self.child.id() as i32), image::STOP_SIGNAL);
            // may just have exited
        }
    }

    /// Deletes the pod: the image's stop signal, `terminationGracePeriodSeconds`, then SIGKILL to
    /// everything left in its network namespace, which is then removed.
    pub fn stop(mut self) -> Result<()> {
        let grace = Duration::from_secs(
            self.config
                .spec
                .termination_grace_period_seconds
                .unwrap_or(30),
        );
        if self
            .child
            .try_wait()
            .context(|| format!("waiting for pod {}", self.config.name))?
            .is_none()
        {
            let _ = kill(Pid::from_raw(self.child.id() as i32), image::STOP_SIGNAL); // may just have exited
            process::wait_until(&mut self.child, Instant::now() + grace)?;
        }
        self.net.netns.kill_all(Duration::from_secs(10));
        let _ = self.child.wait(); // reaped or already reaped
        drop(self.net);
        fs::remove_dir_all(&self.dir).context(|| format!("removing {}", self.dir.display()))
    }

    /// The last lines of the container log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }
}

/// "\n--- last lines of <file> ---\n..." for error messages.
pub fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
    format!("\n--- last lines of {} ---\n{tail}", path.display())
}
