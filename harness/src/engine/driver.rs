//! The engine driver: runs the suite's containers through `docker` or `podman` the way people
//! do, beside the OCI runtime driver. `palisade run --engine docker`, `--engine docker:crun`,
//! `--engine podman:runc`.
//!
//! - The engine is Palisade's own (a dockerd, or podman with its own storage, in a lab host:
//!   [`super::labhost`]), or an operator's dockerd (`--engine-socket`, `DOCKER_HOST`), where
//!   Palisade only creates and removes its own containers, networks, volumes and image.
//! - A scenario's container (an OCI config, with any negative control's edit) becomes the engine's
//!   own flags ([`super::translate`]); what the flags cannot say is a skip with its reason.
//! - The container runs the probe image ([`super::image`]) with `--interactive`; `start` is
//!   `<engine> start --attach --interactive`, whose stdio are the probe's pipes. The runtime's
//!   container exists only from `start` on, so the init's host pid is learnt then: from the
//!   engine's `start` event and `inspect`, and checked against `/proc` (it must be the probe).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use oci_spec::runtime::{LinuxNamespaceType, State};
use serde::Deserialize;

use super::docker::{DockerClient, DockerConfig, Dockerd};
use super::labhost::LabHost;
use super::podman::{Podman, PodmanConfig};
use super::translate::{EngineDefaults, EngineKind, Joined, TranslateEnv, Untranslatable};
use super::{Engine, EngineError, cli, image};
use crate::driver::bundle::ContainerSpec;
use crate::driver::{ContainerStdio, Created, Driver, RuntimeError, RuntimeInfo, error_summary};
use crate::error::HarnessError;
use crate::exec::{self, ExecError, Finished};
use crate::run::RunEnv;

/// The label every container, network and volume Palisade makes through an engine carries.
pub const RUN_LABEL: &str = image::RUN_LABEL;

/// `docker`, `docker:crun`, `podman:runc`: an engine, and the name its runtime is known by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineChoice {
    pub kind: EngineKind,
    pub runtime: Option<String>,
}

impl std::str::FromStr for EngineChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<EngineChoice, String> {
        let (engine, runtime) = match text.split_once(':') {
            Some((engine, runtime)) => (engine, Some(runtime)),
            None => (text, None),
        };
        let kind = match engine {
            "docker" => EngineKind::Docker,
            "podman" => EngineKind::Podman,
            other => {
                return Err(format!(
                    "unknown engine `{other}` (docker or podman, optionally with a runtime: docker:crun)"
                ));
            }
        };
        match runtime {
            Some("") => Err(format!("`{text}`: the runtime name after `:` is empty")),
            Some(name)
                if !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
            {
                Err(format!(
                    "`{text}`: `{name}` is not a runtime name (the name the engine knows it by)"
                ))
            }
            runtime => Ok(EngineChoice {
                kind,
                runtime: runtime.map(str::to_owned),
            }),
        }
    }
}

/// Where the engine is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Palisade starts its own, in a lab host.
    Owned,
    /// An operator's dockerd, on this unix socket.
    Socket(PathBuf),
}

/// What to set up.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub choice: EngineChoice,
    pub endpoint: Endpoint,
    /// The bundled runtime, registered as `palisade-runtime` when that name is asked for and no
    /// such program is on PATH.
    pub bundled_runtime: Option<PathBuf>,
}

/// The engine behind the driver, and the lab host it runs in.
enum Backend {
    Docker { daemon: Dockerd, lab: Arc<LabHost> },
    Podman { podman: Podman, lab: Arc<LabHost> },
    Operator { client: DockerClient },
}

impl Backend {
    fn engine(&self) -> &dyn Engine {
        match self {
            Backend::Docker { daemon, .. } => daemon,
            Backend::Podman { podman, .. } => podman,
            Backend::Operator { client } => client,
        }
    }

    fn lab(&self) -> Option<&Arc<LabHost>> {
        match self {
            Backend::Docker { lab, .. } | Backend::Podman { lab, .. } => Some(lab),
            Backend::Operator { .. } => None,
        }
    }
}

/// One container of the driver, from `create` to `delete`.
#[derive(Default)]
struct Slot {
    /// The probe's pipes, until `start` hands them to the attach process.
    stdio: Option<ContainerStdio>,
    /// The container's stderr file (the attach process and the engine write there).
    log: Option<File>,
    /// `<engine> start --attach --interactive`, alive as long as the container.
    attach: Option<Child>,
    /// The init's host pid, once started and checked.
    pid: Option<i32>,
    /// The container's process, which the engine's `exec` starts others like.
    process: Option<oci_spec::runtime::Process>,
}

/// Lends the lab host's UTS namespace to one trial at a time (a control renames it), and gives
/// it back with its hostname restored.
#[derive(Default)]
struct UtsLock {
    taken: Mutex<bool>,
    free: Condvar,
}

/// A trial's exclusive use of the engine host's hostname; restores it when dropped.
pub struct HostLease {
    lock: Arc<UtsLock>,
    restore: Option<(Arc<LabHost>, String)>,
}

impl Drop for HostLease {
    fn drop(&mut self) {
        if let Some((lab, name)) = self.restore.take() {
            let mut command = lab.command("hostname");
            command.arg(&name);
            let _ = exec::run(&mut command, Duration::from_secs(10));
        }
        if let Ok(mut taken) = self.lock.taken.lock() {
            *taken = false;
        }
        self.lock.free.notify_all();
    }
}

/// A container's place on one engine network, as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub network: String,
    pub ip: Option<Ipv4Addr>,
    pub gateway: Option<Ipv4Addr>,
}

/// A container's filesystem layers, as the engine reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layers {
    /// Read-only layers, top first (for a container: its init layer, then the image's).
    pub lower: Vec<PathBuf>,
    /// The writable layer (for an image: its top layer).
    pub upper: PathBuf,
}

/// The driver.
pub struct EngineDriver {
    info: RuntimeInfo,
    kind: EngineKind,
    operator: bool,
    /// The `--runtime` value (`None`: the engine's default runtime).
    runtime: Option<String>,
    image: String,
    run_id: String,
    defaults: EngineDefaults,
    backend: RwLock<Option<Backend>>,
    slots: Mutex<BTreeMap<String, Slot>>,
    timeout: Duration,
    next_port: AtomicU16,
    uts: Arc<UtsLock>,
    /// The driver itself, once shared: a negative control's variant wraps it.
    me: std::sync::OnceLock<std::sync::Weak<EngineDriver>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectState {
    status: String,
    #[serde(default)]
    running: bool,
    #[serde(default)]
    pid: i64,
}

impl EngineDriver {
    /// Starts (or reaches) the engine, builds the probe image and reads the engine's defaults.
    /// Every problem is an error that says what is wrong, within seconds where the engine
    /// answers at all (a daemon not running, a socket without permission, an unknown runtime).
    pub fn setup(run: &RunEnv, options: &EngineOptions) -> Result<EngineDriver, EngineError> {
        let kind = options.choice.kind;
        let wanted = options.choice.runtime.clone();
        let (backend, runtime_path) = match (&options.endpoint, kind) {
            (Endpoint::Owned, EngineKind::Docker) => {
                require_lab_rights()?;
                let mut config = DockerConfig::detect()?;
                let path = match wanted.as_deref() {
                    // dockerd knows runc by that name already.
                    None | Some("runc") => exec::find_program("runc"),
                    Some(name) => {
                        let path = resolve_runtime(kind, name, options)?;
                        config = config.with_runtime(name, &path);
                        Some(path)
                    }
                };
                let lab = Arc::new(LabHost::new(run)?);
                let daemon = Dockerd::start(lab.clone(), config)?;
                (Backend::Docker { daemon, lab }, path)
            }
            (Endpoint::Owned, EngineKind::Podman) => {
                require_lab_rights()?;
                let mut config = PodmanConfig::detect()?;
                let path = match wanted.as_deref() {
                    None => None,
                    Some(name) => {
                        let path = resolve_runtime(kind, name, options)?;
                        config = config.with_runtime(name, &path);
                        Some(path)
                    }
                };
                let lab = Arc::new(LabHost::new(run)?);
                let podman = Podman::new(lab.clone(), config)?;
                (Backend::Podman { podman, lab }, path)
            }
            (Endpoint::Socket(socket), EngineKind::Docker) => {
                let program = exec::find_program("docker")
                    .ok_or_else(|| EngineError::Missing("docker".into()))?;
                let config_dir = run.dir.join("docker-client");
                std::fs::create_dir_all(&config_dir)
                    .map_err(super::io_err(format!("creating {}", config_dir.display())))?;
                let client = DockerClient::direct(&program, socket, &config_dir);
                cli(
                    &client,
                    &["version", "--format", "{{.Server.Version}}"],
                    FAST,
                )?;
                if let Some(name) = &wanted {
                    let known = cli(&client, &["info", "--format", "{{json .Runtimes}}"], FAST)?;
                    let runtimes: BTreeMap<String, serde_json::Value> =
                        serde_json::from_str(known.stdout.trim()).unwrap_or_default();
                    if !runtimes.contains_key(name) {
                        return Err(EngineError::UnknownRuntime {
                            engine: "docker",
                            name: name.clone(),
                            message: format!(
                                "the daemon at {} knows {:?}",
                                socket.display(),
                                runtimes.keys().collect::<Vec<_>>()
                            ),
                        });
                    }
                }
                (Backend::Operator { client }, None)
            }
            (Endpoint::Socket(_), EngineKind::Podman) => {
                return Err(EngineError::Lab(
                    "podman has no daemon to reach through a socket: Palisade runs its own podman, in a lab host (drop --engine-socket)".into(),
                ));
            }
        };
        let engine = backend.engine();
        let context = match backend.lab() {
            Some(lab) => lab.dir().join("image"),
            None => run.dir.join("image"),
        };
        let built = image::build(engine, &context, &run.probe, &run.id)?;
        let runtime_name = match &wanted {
            Some(name) => name.clone(),
            None => default_runtime(engine)?,
        };
        let engine_version = engine_version(engine)?;
        let runtime_version = runtime_path
            .or_else(|| exec::find_program(&runtime_name))
            .and_then(|path| first_line_of_version(&path))
            .unwrap_or_else(|| runtime_name.clone());
        let label = format!("{} ({runtime_name})", kind.name());
        let mut driver = EngineDriver {
            info: RuntimeInfo {
                name: label,
                path: exec::find_program(kind.name()).unwrap_or_default(),
                version: format!(
                    "{engine_version}, {}",
                    // `runc version 1.1.5`, `youki version: 0.7.0`: the name and the number.
                    runtime_version
                        .replacen(" version:", "", 1)
                        .replacen(" version", "", 1)
                ),
            },
            kind,
            operator: matches!(options.endpoint, Endpoint::Socket(_)),
            runtime: wanted,
            image: built.reference,
            run_id: run.id.clone(),
            defaults: EngineDefaults::default(),
            backend: RwLock::new(Some(backend)),
            slots: Mutex::new(BTreeMap::new()),
            timeout: crate::run::runtime_timeout().max(Duration::from_secs(30)),
            next_port: AtomicU16::new(20000),
            uts: Arc::default(),
            me: std::sync::OnceLock::new(),
        };
        driver.defaults = driver.discover_defaults(run);
        Ok(driver)
    }

    /// `process` as the flags of `<engine> exec` and its command, for the container `id`; a skip
    /// if the engine cannot start it as its spec says.
    pub fn exec_command(
        &self,
        id: &str,
        process: &oci_spec::runtime::Process,
    ) -> Result<(Vec<String>, Vec<String>), HarnessError> {
        let container = self
            .slots()
            .get(id)
            .and_then(|slot| slot.process.clone())
            .unwrap_or_default();
        super::translate::exec_flags(self.kind, process, &container).map_err(|e| {
            HarnessError::Unsupported {
                what: e.to_string(),
            }
        })
    }

    /// Shares the driver: from here on it can make variants for negative controls.
    pub fn share(self) -> Arc<EngineDriver> {
        let shared = Arc::new(self);
        let _ = shared.me.set(Arc::downgrade(&shared));
        shared
    }

    pub fn kind(&self) -> EngineKind {
        self.kind
    }

    /// An operator's engine (not one Palisade started).
    pub fn is_operators(&self) -> bool {
        self.operator
    }

    /// The probe image's reference.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// What the engine does by default that a config can change: its masked and read-only paths.
    pub fn defaults(&self) -> &EngineDefaults {
        &self.defaults
    }

    /// The lab host the engine runs in (`None` for an operator's engine).
    pub fn lab(&self) -> Option<Arc<LabHost>> {
        self.backend
            .read()
            .ok()
            .and_then(|b| b.as_ref().and_then(|b| b.lab().cloned()))
    }

    /// The engine's client command with `args`, run where the engine's client runs.
    pub fn command(&self, args: &[&str]) -> Result<Command, RuntimeError> {
        let backend = self
            .backend
            .read()
            .map_err(|_| self.gone("a poisoned lock"))?;
        let backend = backend
            .as_ref()
            .ok_or_else(|| self.gone("the engine was shut down"))?;
        let mut command = backend.engine().cli();
        command.args(args);
        Ok(command)
    }

    fn gone(&self, why: &str) -> RuntimeError {
        RuntimeError::Failed {
            runtime: self.info.name.clone(),
            verb: "call",
            status: "not run".into(),
            stderr: why.into(),
        }
    }

    /// Runs the engine's client with `args`: its output, or its error as a runtime error.
    fn call(&self, verb: &'static str, args: &[&str]) -> Result<Finished, RuntimeError> {
        let backend = self
            .backend
            .read()
            .map_err(|_| self.gone("a poisoned lock"))?;
        let backend = backend
            .as_ref()
            .ok_or_else(|| self.gone("the engine was shut down"))?;
        match cli(backend.engine(), args, self.timeout) {
            Ok(done) => Ok(done),
            Err(EngineError::Exec(ExecError::TimedOut { after, .. })) => {
                Err(RuntimeError::Hung { verb, after })
            }
            Err(EngineError::Exec(ExecError::Spawn { source, .. })) => Err(RuntimeError::Spawn {
                path: self.info.path.clone(),
                source,
            }),
            // Engines say what went wrong in a few lines, the cause often last and without the
            // word "error": all of it, on one line.
            Err(other) => Err(RuntimeError::Failed {
                runtime: self.info.name.clone(),
                verb,
                status: "failed".into(),
                stderr: other
                    .to_string()
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(" "),
            }),
        }
    }

    /// `inspect --format <format> <id>`, trimmed.
    fn inspect(&self, format: &str, what: &str) -> Result<String, RuntimeError> {
        self.call("inspect", &["inspect", "--format", format, what])
            .map(|done| done.stdout.trim().to_owned())
    }

    /// The masked and read-only paths the engine gives a container of the image made with no
    /// flags, read from the OCI config it hands its (default) runtime. Falls back to what this
    /// engine's versions are known to use if that config cannot be read.
    fn discover_defaults(&self, run: &RunEnv) -> EngineDefaults {
        let fallback = match self.kind {
            EngineKind::Docker => EngineDefaults {
                masked_paths: oci_spec::runtime::get_default_maskedpaths(),
                readonly_paths: oci_spec::runtime::get_default_readonly_paths(),
                ulimits: Vec::new(),
                seccomp: None,
            },
            EngineKind::Podman => EngineDefaults {
                masked_paths: [
                    "/proc/acpi",
                    "/proc/kcore",
                    "/proc/keys",
                    "/proc/latency_stats",
                    "/proc/timer_list",
                    "/proc/timer_stats",
                    "/proc/sched_debug",
                    "/proc/scsi",
                    "/sys/firmware",
                    "/sys/fs/selinux",
                    "/sys/dev/block",
                ]
                .map(str::to_owned)
                .to_vec(),
                readonly_paths: [
                    "/proc/asound",
                    "/proc/bus",
                    "/proc/fs",
                    "/proc/irq",
                    "/proc/sys",
                    "/proc/sysrq-trigger",
                ]
                .map(str::to_owned)
                .to_vec(),
                ulimits: Vec::new(),
                seccomp: None,
            },
        };
        let name = run.name("defaults");
        let options = self.run_options();
        let label = format!("{RUN_LABEL}={}", self.run_id);
        let mut args = vec![
            "run",
            "--detach",
            "--interactive",
            "--name",
            &name,
            "--label",
            &label,
        ];
        args.extend(options.iter().map(String::as_str));
        args.extend([self.image.as_str(), palisade_probe::protocol::SERVE]);
        let ulimits = match (self.kind, super::podman::ulimits_needed()) {
            (EngineKind::Podman, Some((nofile, nproc))) if !self.operator => vec![
                ("nofile".to_owned(), nofile, nofile),
                ("nproc".to_owned(), nproc, nproc),
            ],
            _ => Vec::new(),
        };
        let discovered = self.call("run", &args).ok().and_then(|_| {
            let path = self.config_path(&name)?;
            let text = std::fs::read_to_string(path).ok()?;
            let config: serde_json::Value = serde_json::from_str(&text).ok()?;
            let list = |key: &str| -> Vec<String> {
                config["linux"][key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            };
            // Kept only if oci-spec reads it: it is compared in that form.
            let seccomp = serde_json::from_value::<oci_spec::runtime::LinuxSeccomp>(
                config["linux"]["seccomp"].clone(),
            )
            .ok()
            .and_then(|s| serde_json::to_value(s).ok());
            Some(EngineDefaults {
                masked_paths: list("maskedPaths"),
                readonly_paths: list("readonlyPaths"),
                ulimits: ulimits.clone(),
                seccomp,
            })
        });
        let _ = self.remove(&name, true);
        discovered.unwrap_or(EngineDefaults {
            ulimits,
            ..fallback
        })
    }

    /// The OCI config the engine handed the runtime for container `name`.
    fn config_path(&self, name: &str) -> Option<PathBuf> {
        match self.kind {
            EngineKind::Podman => self
                .inspect("{{.OCIConfigPath}}", name)
                .ok()
                .map(PathBuf::from),
            EngineKind::Docker => {
                let id = self.inspect("{{.Id}}", name).ok()?;
                let exec_root = match self.backend.read().ok()?.as_ref()? {
                    Backend::Docker { daemon, .. } => daemon.layout().exec_root(),
                    _ => PathBuf::from("/run/docker"),
                };
                let path = exec_root
                    .join("containerd/daemon/io.containerd.runtime.v2.task/moby")
                    .join(id)
                    .join("config.json");
                path.is_file().then_some(path)
            }
        }
    }

    /// Options every `create` gets from the engine (podman: the lab's cgroup parent).
    fn run_options(&self) -> Vec<String> {
        let mut options = self
            .backend
            .read()
            .ok()
            .and_then(|b| b.as_ref().map(|b| b.engine().run_options()))
            .unwrap_or_default();
        if let Some(runtime) = &self.runtime {
            options.push("--runtime".into());
            options.push(runtime.clone());
        }
        options
    }

    fn remove(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        let mut args = vec!["rm"];
        if force {
            args.push("--force");
            if self.kind == EngineKind::Podman {
                args.extend(["--time", "0"]);
            }
        }
        args.push(id);
        self.call("rm", &args).map(drop)
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Slot>> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The process whose namespaces are the engine's host: the lab host's holder, or (for an
    /// operator's engine, which runs on the machine palisade runs on) palisade itself.
    pub fn host_pid(&self) -> i32 {
        self.lab()
            .and_then(|lab| lab.holder_pid().ok())
            .unwrap_or(std::process::id() as i32)
    }

    /// What `path`, a namespace of type `kind`, is to the engine: its host's, or a container's.
    fn joined(&self, kind: LinuxNamespaceType, path: &Path) -> Option<Joined> {
        let name = palisade_common::namespaces::proc_name(kind);
        let inode = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
        let wanted = inode(path)?;
        if inode(
            &Path::new("/proc")
                .join(self.host_pid().to_string())
                .join("ns")
                .join(name),
        ) == Some(wanted)
        {
            return Some(Joined::Host);
        }
        self.slots().iter().find_map(|(id, slot)| {
            let pid = slot.pid?;
            (inode(
                &Path::new("/proc")
                    .join(pid.to_string())
                    .join("ns")
                    .join(name),
            ) == Some(wanted))
            .then(|| Joined::Container(id.clone()))
        })
    }

    fn translate(
        &self,
        spec: &ContainerSpec,
    ) -> Result<super::translate::Translation, Untranslatable> {
        let joined = |kind: LinuxNamespaceType, path: &Path| self.joined(kind, path);
        super::translate::translate(
            spec,
            &TranslateEnv {
                kind: self.kind,
                operator: self.operator,
                defaults: &self.defaults,
                joined: &joined,
                host_device: &host_device,
            },
        )
    }

    // -----------------------------------------------------------------------------------------
    // The host side of scenarios

    /// The hostname of the engine's host.
    pub fn host_hostname(&self) -> Result<String, HarnessError> {
        match self.lab() {
            Some(lab) => lab.hostname().map_err(lab_error),
            None => Ok(crate::lab::host::current_hostname()),
        }
    }

    /// Waits for the exclusive use of the engine host's hostname (another trial's control may
    /// be renaming it), and restores it when the lease is dropped. An operator's host is never
    /// renamed (the translation refuses `--uts=host` there), so its lease holds nothing.
    pub fn lease_host_uts(&self, deadline: Instant) -> Result<HostLease, HarnessError> {
        let Some(lab) = self.lab() else {
            return Ok(HostLease {
                lock: Arc::default(),
                restore: None,
            });
        };
        let mut taken = self
            .uts
            .taken
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while *taken {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(HarnessError::Timeout {
                    what: "the lab host's hostname, held by another trial".into(),
                    after: Duration::ZERO,
                });
            }
            taken = self
                .uts
                .free
                .wait_timeout(taken, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        *taken = true;
        drop(taken);
        let name = lab.initial_hostname().to_owned();
        Ok(HostLease {
            lock: self.uts.clone(),
            restore: Some((lab, name)),
        })
    }

    /// A command that runs `program` on the engine's host (in the lab host's namespaces).
    pub fn host_command(&self, program: &Path) -> Command {
        match self.lab() {
            Some(lab) => lab.command(program),
            None => Command::new(program),
        }
    }

    /// A TCP port no other trial of this engine uses (they share the engine host's network).
    pub fn port(&self) -> u16 {
        self.next_port.fetch_add(1, Ordering::Relaxed)
    }

    fn lab_or_skip(&self, what: &str) -> Result<Arc<LabHost>, HarnessError> {
        self.lab().ok_or_else(|| HarnessError::Unsupported {
            what: format!(
                "{what} against an operator's engine: it would happen in the real machine's network"
            ),
        })
    }

    /// Connects from the engine's host (the lab host's network namespace) to `addr`.
    pub fn host_connect(
        &self,
        addr: SocketAddr,
    ) -> Result<palisade_probe::net::ConnectOutcome, HarnessError> {
        let lab = self.lab_or_skip("connecting from the engine's host")?;
        let ns = lab.netns_path().map_err(lab_error)?.to_owned();
        crate::lab::netlab::in_netns(&ns, || {
            palisade_probe::net::connect_and_read(
                &addr.to_string(),
                crate::lab::netlab::CONNECT_TIMEOUT,
            )
        })
    }

    /// A listener on the engine's host that answers every connection with the peer address it
    /// saw; it closes when dropped.
    pub fn host_listen(&self, addr: SocketAddr) -> Result<HostListener, HarnessError> {
        let lab = self.lab_or_skip("listening on the engine's host")?;
        let ns = lab.netns_path().map_err(lab_error)?.to_owned();
        let listener =
            crate::lab::netlab::in_netns(&ns, || TcpListener::bind(addr))?.map_err(|source| {
                HarnessError::Io {
                    what: "listening in the lab host",
                    source,
                }
            })?;
        let listener = Arc::new(listener);
        let serving = listener.clone();
        let thread = std::thread::spawn(move || {
            palisade_probe::net::answer_peer_addresses(&serving);
        });
        Ok(HostListener {
            listener,
            thread: Some(thread),
        })
    }

    /// Sets `ip_forward` in the engine host's network namespace.
    pub fn set_forwarding(&self, on: bool) -> Result<(), HarnessError> {
        let lab = self.lab_or_skip("changing ip_forward")?;
        let ns = lab.netns_path().map_err(lab_error)?.to_owned();
        crate::lab::netlab::in_netns(&ns, || {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", if on { "1" } else { "0" })
        })?
        .map_err(|source| HarnessError::Io {
            what: "setting ip_forward in the lab host",
            source,
        })
    }

    /// The packets the engine host's MASQUERADE rules have rewritten so far (every such rule
    /// of its nat table, as `iptables-save -c` counts them).
    pub fn masqueraded_packets(&self) -> Result<u64, HarnessError> {
        let lab = self.lab_or_skip("reading the NAT counters")?;
        let mut command = lab.command("iptables-save");
        command.args(["-c", "-t", "nat"]);
        let done =
            exec::run(&mut command, Duration::from_secs(10)).map_err(|e| HarnessError::Io {
                what: "running iptables-save in the lab host",
                source: std::io::Error::other(e),
            })?;
        if !done.status.success() {
            return Err(HarnessError::Net {
                what: "iptables-save -c -t nat in the lab host".into(),
                message: done.stderr.trim().to_owned(),
            });
        }
        Ok(masquerade_count(&done.stdout))
    }

    /// The outside service (198.51.100.1) and the uplink address it sees NATed traffic from.
    pub fn outside(&self) -> Result<(SocketAddr, Ipv4Addr), HarnessError> {
        let lab = self.lab_or_skip("reaching Palisade's outside host")?;
        Ok((lab.outside_addr(), lab.uplink_ip()))
    }

    // -----------------------------------------------------------------------------------------
    // Engine objects scenarios look at

    /// Creates the network `name` (labelled with the run); removed when the guard is dropped.
    pub fn create_network(&self, name: &str) -> Result<NetworkGuard<'_>, HarnessError> {
        let label = format!("{RUN_LABEL}={}", self.run_id);
        self.call(
            "network create",
            &["network", "create", "--label", &label, name],
        )?;
        Ok(NetworkGuard {
            driver: self,
            name: name.to_owned(),
        })
    }

    /// The network a container gets when it names none.
    pub fn default_network(&self) -> &'static str {
        match self.kind {
            EngineKind::Docker => "bridge",
            EngineKind::Podman => "podman",
        }
    }

    /// Where the container `id` is attached, as the engine says.
    pub fn attachments(&self, id: &str) -> Result<Vec<Attachment>, HarnessError> {
        let text = self.inspect("{{json .NetworkSettings.Networks}}", id)?;
        let networks: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(&text).map_err(|e| self.bad(id, &text, e))?;
        let ip = |v: &serde_json::Value, key: &str| {
            v[key].as_str().and_then(|s| s.parse::<Ipv4Addr>().ok())
        };
        Ok(networks
            .into_iter()
            .map(|(network, v)| Attachment {
                ip: ip(&v, "IPAddress"),
                gateway: ip(&v, "Gateway"),
                network,
            })
            .collect())
    }

    fn bad(&self, id: &str, text: &str, e: impl std::fmt::Display) -> HarnessError {
        HarnessError::Runtime(RuntimeError::BadState {
            runtime: self.info.name.clone(),
            problem: format!("inspect {id}: {e}"),
            output: text.chars().take(200).collect(),
        })
    }

    /// The overlay layers `inspect` (of an image or a container) reports for `what`.
    fn layers(&self, inspect: &[&str], what: &str) -> Result<Layers, HarnessError> {
        let mut args = inspect.to_vec();
        args.extend(["--format", "{{json .GraphDriver.Data}}", what]);
        let text = self.call("inspect", &args)?.stdout;
        let data: BTreeMap<String, String> =
            serde_json::from_str(text.trim()).map_err(|e| self.bad(what, &text, e))?;
        let upper = data
            .get("UpperDir")
            .map(PathBuf::from)
            .ok_or_else(|| self.bad(what, &text, "no UpperDir"))?;
        let lower = data
            .get("LowerDir")
            .map(|l| l.split(':').map(PathBuf::from).collect())
            .unwrap_or_default();
        Ok(Layers { lower, upper })
    }

    /// The probe image's layers: `upper` is its top layer.
    pub fn image_layers(&self) -> Result<Layers, HarnessError> {
        self.layers(&["image", "inspect"], &self.image)
    }

    /// The container's layers: its own writable `upper`, and the read-only ones below.
    pub fn container_layers(&self, id: &str) -> Result<Layers, HarnessError> {
        self.layers(&["container", "inspect"], id)
    }

    // -----------------------------------------------------------------------------------------
    // End of the run

    /// What the run left in the engine: containers, networks and volumes of this run.
    pub fn leftovers(&self) -> Vec<String> {
        let label = format!("label={RUN_LABEL}={}", self.run_id);
        let mut found = Vec::new();
        for (what, args) in [
            (
                "container",
                vec!["ps", "--all", "--filter", &label, "--format", "{{.Names}}"],
            ),
            (
                "network",
                vec!["network", "ls", "--filter", &label, "--format", "{{.Name}}"],
            ),
        ] {
            match self.call("ls", &args) {
                Ok(done) => found.extend(
                    done.stdout
                        .split_whitespace()
                        .filter(|name| !name.ends_with("-defaults"))
                        .map(|name| format!("{} {what} {name}", self.kind.name())),
                ),
                Err(e) => found.push(format!("listing {what}s: {e}")),
            }
        }
        found
    }

    /// Removes everything the run made in the engine, then stops a Palisade-owned engine and its
    /// lab host. Returns what it could not do.
    pub fn shutdown(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (_, mut slot) in std::mem::take(&mut *self.slots()) {
            if let Some(mut attach) = slot.attach.take() {
                let _ = attach.kill();
                let _ = attach.wait();
            }
        }
        let backend = self
            .backend
            .write()
            .map(|mut b| b.take())
            .unwrap_or_else(|poisoned| poisoned.into_inner().take());
        match backend {
            None => {}
            Some(Backend::Docker { daemon, lab }) => {
                if let Err(e) = daemon.stop() {
                    problems.push(e.to_string());
                }
                drop(lab);
            }
            Some(Backend::Podman { podman, lab }) => {
                if let Err(e) = podman.close() {
                    problems.push(e.to_string());
                }
                drop(lab);
            }
            Some(Backend::Operator { client }) => {
                problems.extend(remove_run_objects(&client, &self.run_id, &self.image));
            }
        }
        problems
    }
}

/// Removes, through an operator's engine, the containers, networks and volumes labelled (or
/// named) with run `run_id`, and its probe image; returns what failed.
pub fn remove_run_objects(engine: &dyn Engine, run_id: &str, image: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let label = format!("label={RUN_LABEL}={run_id}");
    let prefix = format!("name={}{run_id}", crate::run::PREFIX);
    let list = |args: &[&str]| -> Vec<String> {
        cli(engine, args, CALL_TIMEOUT)
            .map(|d| d.stdout.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let containers = list(&["ps", "--all", "--quiet", "--filter", &label]);
    if !containers.is_empty() {
        let mut args = vec!["rm", "--force"];
        args.extend(containers.iter().map(String::as_str));
        if let Err(e) = cli(engine, &args, CALL_TIMEOUT) {
            problems.push(e.to_string());
        }
    }
    for (kind, args) in [
        (
            "network",
            vec!["network", "ls", "--quiet", "--filter", &label],
        ),
        (
            "volume",
            vec!["volume", "ls", "--quiet", "--filter", &prefix],
        ),
    ] {
        for name in list(&args) {
            if let Err(e) = cli(engine, &[kind, "rm", &name], CALL_TIMEOUT) {
                problems.push(e.to_string());
            }
        }
    }
    let images = list(&["image", "ls", "--quiet", image]);
    if !images.is_empty()
        && let Err(e) = cli(engine, &["image", "rm", "--force", image], CALL_TIMEOUT)
    {
        problems.push(e.to_string());
    }
    problems
}

const FAST: Duration = Duration::from_secs(10);
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

fn lab_error(e: EngineError) -> HarnessError {
    HarnessError::Net {
        what: "the lab host".into(),
        message: e.to_string(),
    }
}

/// Creating a lab host needs root (namespaces, cgroups, mounts).
fn require_lab_rights() -> Result<(), EngineError> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(EngineError::Lab(
            "Palisade runs its own engine in a lab host, which needs root (or point it at your own dockerd with --engine-socket)".into(),
        ))
    }
}

/// The program registered under `name` with a Palisade-owned engine: `name` on PATH, or the
/// bundled runtime for `palisade-runtime`.
fn resolve_runtime(
    kind: EngineKind,
    name: &str,
    options: &EngineOptions,
) -> Result<PathBuf, EngineError> {
    exec::find_program(name)
        .or_else(|| {
            (name == "palisade-runtime")
                .then(|| options.bundled_runtime.clone())
                .flatten()
                .filter(|p| p.is_file())
        })
        .ok_or_else(|| EngineError::UnknownRuntime {
            engine: kind.name(),
            name: name.to_owned(),
            message: format!(
                "no program `{name}` on PATH, so Palisade cannot register it with its {} by that name",
                match kind {
                    EngineKind::Docker => "dockerd",
                    EngineKind::Podman => "podman",
                }
            ),
        })
}

fn default_runtime(engine: &dyn Engine) -> Result<String, EngineError> {
    let format = match engine.name() {
        "podman" => "{{.Host.OCIRuntime.Name}}",
        _ => "{{.DefaultRuntime}}",
    };
    let done = cli(engine, &["info", "--format", format], CALL_TIMEOUT)?;
    Ok(done.stdout.trim().to_owned())
}

fn engine_version(engine: &dyn Engine) -> Result<String, EngineError> {
    let format = match engine.name() {
        "podman" => "{{.Client.Version}}",
        _ => "{{.Server.Version}}",
    };
    let done = cli(engine, &["version", "--format", format], CALL_TIMEOUT)?;
    Ok(done.stdout.trim().to_owned())
}

fn first_line_of_version(path: &Path) -> Option<String> {
    let done = exec::run(Command::new(path).arg("--version"), FAST).ok()?;
    done.status
        .success()
        .then(|| done.stdout.lines().next().unwrap_or("").trim().to_owned())
        .filter(|l| !l.is_empty())
}

/// A host device node of type `kind` (`c`/`b`) and number `major:minor`, in /dev or one level
/// below.
fn host_device(kind: char, major: i64, minor: i64) -> Option<PathBuf> {
    let matches = |path: &Path| {
        std::fs::symlink_metadata(path).ok().is_some_and(|m| {
            let t = m.file_type();
            let right_kind =
                (kind == 'c' && t.is_char_device()) || (kind == 'b' && t.is_block_device());
            right_kind
                && i64::try_from(nix::sys::stat::major(m.rdev())).ok() == Some(major)
                && i64::try_from(nix::sys::stat::minor(m.rdev())).ok() == Some(minor)
        })
    };
    let top: Vec<PathBuf> = std::fs::read_dir("/dev")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    let mut sorted = top.clone();
    sorted.sort();
    sorted.into_iter().find(|p| matches(p)).or_else(|| {
        top.iter()
            .filter(|p| p.is_dir())
            .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
            .map(|e| e.path())
            .find(|p| matches(p))
    })
}

/// The sum of the packet counters of every `-j MASQUERADE` rule in `iptables-save -c` output.
pub fn masquerade_count(save: &str) -> u64 {
    save.lines()
        .filter(|l| l.contains("-j MASQUERADE"))
        .filter_map(|l| {
            let counters = l.strip_prefix('[')?.split(']').next()?;
            counters.split(':').next()?.parse::<u64>().ok()
        })
        .sum()
}

/// A network of the engine, removed on drop (after the containers on it, which the scenario
/// declared later and so drops first).
pub struct NetworkGuard<'a> {
    driver: &'a EngineDriver,
    name: String,
}

impl NetworkGuard<'_> {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The network's gateway: the engine host's address on its bridge.
    pub fn gateway(&self) -> Result<Ipv4Addr, HarnessError> {
        self.driver.network_gateway(&self.name)
    }
}

impl Drop for NetworkGuard<'_> {
    fn drop(&mut self) {
        let _ = self
            .driver
            .call("network rm", &["network", "rm", &self.name]);
    }
}

impl EngineDriver {
    /// The gateway of the engine network `name`.
    pub fn network_gateway(&self, name: &str) -> Result<Ipv4Addr, HarnessError> {
        let text = self
            .call("network inspect", &["network", "inspect", name])?
            .stdout;
        let value: serde_json::Value =
            serde_json::from_str(text.trim()).map_err(|e| self.bad(name, &text, e))?;
        // docker: [{"IPAM":{"Config":[{"Gateway":…}]}}]; podman 4: [{"subnets":[{"gateway":…}]}].
        let network = &value[0];
        let candidates = [
            network["IPAM"]["Config"][0]["Gateway"].as_str(),
            network["subnets"][0]["gateway"].as_str(),
        ];
        candidates
            .into_iter()
            .flatten()
            .find_map(|g| g.parse().ok())
            .ok_or_else(|| self.bad(name, &text, "no IPv4 gateway"))
    }
}

/// A listener in the lab host; closed when dropped.
pub struct HostListener {
    listener: Arc<TcpListener>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for HostListener {
    fn drop(&mut self) {
        // shutdown(2) on a listening socket makes a blocked accept(2) return at once.
        let _ =
            nix::sys::socket::shutdown(self.listener.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What a `start` waits for.
enum StartEvent {
    Started,
    AttachExited,
}

impl Driver for EngineDriver {
    fn info(&self) -> &RuntimeInfo {
        &self.info
    }

    fn create(
        &self,
        id: &str,
        spec: &ContainerSpec,
        dir: &Path,
        stdio: ContainerStdio,
    ) -> Result<Created, HarnessError> {
        let translation = self
            .translate(spec)
            .map_err(|e| HarnessError::Unsupported {
                what: e.to_string(),
            })?;
        let label = format!("{RUN_LABEL}={}", self.run_id);
        let options = self.run_options();
        let mut args: Vec<&str> = vec!["create", "--name", id, "--interactive", "--label", &label];
        args.extend(options.iter().map(String::as_str));
        args.extend(translation.flags.iter().map(String::as_str));
        // The client reads the profile and sends it with the request.
        let profile_flag = match &translation.seccomp_profile {
            Some(profile) => {
                let path = dir.join("seccomp.json");
                std::fs::create_dir_all(dir)
                    .and_then(|()| std::fs::write(&path, profile))
                    .map_err(|source| HarnessError::Io {
                        what: "writing the container's seccomp profile",
                        source,
                    })?;
                Some(format!("seccomp={}", path.display()))
            }
            None => None,
        };
        if let Some(flag) = &profile_flag {
            args.extend(["--security-opt", flag.as_str()]);
        }
        args.push(&self.image);
        args.extend(translation.command.iter().map(String::as_str));
        let mut log = stdio.stderr.try_clone().map_err(RuntimeError::Stdio)?;
        // What Palisade asked the engine for, first in the container's log.
        let _ = writeln!(log, "palisade: {} {}", self.kind.name(), args.join(" "));
        self.call("create", &args)?;
        self.slots().insert(
            id.to_owned(),
            Slot {
                stdio: Some(stdio),
                log: Some(log),
                process: spec.spec.process().clone(),
                ..Slot::default()
            },
        );
        // The container's own layer exists from `create` on (inspect: GraphDriver.Data).
        let write_layer = self.container_layers(id).ok().map(|l| l.upper);
        Ok(Created {
            host_pid: None,
            rootfs: None,
            write_layer,
        })
    }

    /// `<engine> start --attach --interactive`: the attach process holds the probe's pipes and
    /// lives as long as the container. Returns once the engine reports the container started.
    fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let (stdio, log) = {
            let mut slots = self.slots();
            let slot = slots.get_mut(id).ok_or_else(|| RuntimeError::Failed {
                runtime: self.info.name.clone(),
                verb: "start",
                status: "not run".into(),
                stderr: format!("`{id}` was not created by this driver"),
            })?;
            match (
                slot.stdio.take(),
                slot.log.as_ref().and_then(|l| l.try_clone().ok()),
            ) {
                (Some(stdio), Some(log)) => (stdio, log),
                _ => {
                    return Err(RuntimeError::Failed {
                        runtime: self.info.name.clone(),
                        verb: "start",
                        status: "not run".into(),
                        stderr: format!("`{id}` was started already"),
                    });
                }
            }
        };
        // The start event, even one that happened before the watcher was up (`--since`).
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs().saturating_sub(2))
            .unwrap_or(0)
            .to_string();
        let filter = format!("container={id}");
        let mut events = self.command(&[
            "events",
            "--since",
            &since,
            "--filter",
            &filter,
            "--filter",
            "event=start",
            "--format",
            "{{.ID}}",
        ])?;
        events
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut events, 0);
        let mut events = events.spawn().map_err(|source| RuntimeError::Spawn {
            path: self.info.path.clone(),
            source,
        })?;
        let (sender, receiver) = std::sync::mpsc::channel();
        if let Some(out) = events.stdout.take() {
            let sender = sender.clone();
            std::thread::spawn(move || {
                let mut line = String::new();
                if BufReader::new(out)
                    .read_line(&mut line)
                    .is_ok_and(|n| n > 0)
                {
                    let _ = sender.send(StartEvent::Started);
                }
            });
        }
        let ContainerStdio {
            stdin,
            stdout,
            stderr,
        } = stdio;
        let mut attach = self.command(&["start", "--attach", "--interactive", id])?;
        attach.stdin(stdin).stdout(stdout).stderr(stderr);
        // Its own process group: a Ctrl-C for palisade must not cut the probe's pipes first.
        std::os::unix::process::CommandExt::process_group(&mut attach, 0);
        let spawned = attach.spawn();
        let outcome = match spawned {
            Err(source) => Err(RuntimeError::Spawn {
                path: self.info.path.clone(),
                source,
            }),
            Ok(child) => {
                let pid = child.id() as i32;
                let timeout = self.timeout;
                std::thread::spawn(move || {
                    if exec::wait_for_exit(pid, timeout).unwrap_or(false) {
                        let _ = sender.send(StartEvent::AttachExited);
                    }
                });
                if let Some(slot) = self.slots().get_mut(id) {
                    slot.attach = Some(child);
                }
                match receiver.recv_timeout(self.timeout) {
                    Ok(StartEvent::Started) => Ok(()),
                    Ok(StartEvent::AttachExited) => {
                        // A start event may still be on its way if the container ran and ended.
                        match receiver.recv_timeout(Duration::from_millis(500)) {
                            Ok(StartEvent::Started) => Ok(()),
                            _ => Err(RuntimeError::Failed {
                                runtime: self.info.name.clone(),
                                verb: "start",
                                status: "failed".into(),
                                stderr: error_summary(&read_all(&log), 5),
                            }),
                        }
                    }
                    Err(_) => Err(RuntimeError::Hung {
                        verb: "start",
                        after: self.timeout,
                    }),
                }
            }
        };
        let _ = events.kill();
        let _ = events.wait();
        outcome
    }

    /// The init's pid from `inspect`, checked on the host: a process in the container's own
    /// cgroup (its path names the container's full id). `None` once the container has stopped.
    /// (Its command line is no check: the runtime's init may not have exec'd the probe yet when
    /// the engine reports the start.)
    fn started_pid(&self, id: &str) -> Result<Option<i32>, HarnessError> {
        let text = self.inspect("{{.Id}} {{json .State}}", id)?;
        let (full_id, state) = text.split_once(' ').unwrap_or((text.as_str(), ""));
        let state: InspectState =
            serde_json::from_str(state).map_err(|e| self.bad(id, &text, e))?;
        if !state.running || state.pid <= 0 {
            return Ok(None);
        }
        let pid = i32::try_from(state.pid).map_err(|e| self.bad(id, &text, e))?;
        match crate::lab::cgroups::memberships(pid) {
            Ok(groups) if !full_id.is_empty() && groups.values().any(|p| p.contains(full_id)) => {
                if let Some(slot) = self.slots().get_mut(id) {
                    slot.pid = Some(pid);
                }
                Ok(Some(pid))
            }
            // Gone between inspect and now: it ran and ended.
            Err(_) => Ok(None),
            Ok(groups) => Err(self.bad(
                id,
                &text,
                format!(
                    "the engine says the init is pid {pid}, but that process is not in the container's cgroup ({:?})",
                    groups.values().collect::<std::collections::BTreeSet<_>>()
                ),
            )),
        }
    }

    fn state(&self, id: &str) -> Result<State, RuntimeError> {
        let text = self.inspect("{{json .State}}", id)?;
        let state: InspectState =
            serde_json::from_str(&text).map_err(|e| RuntimeError::BadState {
                runtime: self.info.name.clone(),
                problem: e.to_string(),
                output: text.chars().take(200).collect(),
            })?;
        let status = match state.status.as_str() {
            "created" | "configured" | "initialized" => "created",
            // An OCI state has no `paused` (runc's extension): its processes exist, frozen;
            // `status` tells paused from running.
            "running" | "restarting" | "removing" | "paused" if state.running => "running",
            _ => "stopped",
        };
        let mut value = serde_json::json!({
            "ociVersion": crate::driver::bundle::OCI_VERSION,
            "id": id,
            "status": status,
            "bundle": "",
        });
        if state.running && state.pid > 0 {
            value["pid"] = serde_json::json!(state.pid);
        }
        crate::driver::oci::parse_state(&self.info.name, id, &value.to_string())
    }

    fn kill(&self, id: &str, signal: &str) -> Result<(), RuntimeError> {
        self.call("kill", &["kill", "--signal", signal, id])
            .map(drop)
    }

    fn status(&self, id: &str) -> Result<crate::driver::Status, RuntimeError> {
        // `inspect` says `paused` where an OCI state cannot (see `Driver::status`).
        if self.inspect("{{.State.Status}}", id)? == "paused" {
            return Ok(crate::driver::Status::Paused);
        }
        Ok((*self.state(id)?.status()).into())
    }

    fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.call("pause", &["pause", id]).map(drop)
    }

    fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.call("unpause", &["unpause", id]).map(drop)
    }

    fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        let mut outcome = self.remove(id, force);
        if outcome.is_err() && self.kind == EngineKind::Podman {
            // Podman unmounts a stopped container's storage in a cleanup process conmon starts
            // when the container exits; `rm` right after `wait` can find it still mounted
            // ("device or resource busy"). Doing that cleanup here first is what `rm` needs.
            let _ = self.call("container cleanup", &["container", "cleanup", id]);
            outcome = match self.remove(id, force) {
                // The first `rm` removed the container and only failed on its storage.
                Err(RuntimeError::Failed { stderr, .. })
                    if stderr.contains("no such container") =>
                {
                    Ok(())
                }
                other => other,
            };
        }
        if outcome.is_ok() || force {
            let slot = self.slots().remove(id);
            if let Some(mut attach) = slot.and_then(|mut s| s.attach.take()) {
                let _ = attach.kill();
                let _ = attach.wait();
            }
        }
        outcome
    }

    /// `<engine> wait`: returns once the container has stopped.
    fn wait_stopped(
        &self,
        id: &str,
        _host_pid: Option<i32>,
        timeout: Duration,
    ) -> Result<bool, HarnessError> {
        let mut command = self.command(&["wait", id])?;
        match exec::run(&mut command, timeout) {
            Ok(done) if done.status.success() => Ok(true),
            Ok(done) => Err(HarnessError::Runtime(RuntimeError::Failed {
                runtime: self.info.name.clone(),
                verb: "wait",
                status: done.status.to_string(),
                stderr: error_summary(&done.stderr, 5),
            })),
            Err(ExecError::TimedOut { .. }) => Ok(false),
            Err(e) => Err(HarnessError::Io {
                what: "waiting for the container",
                source: std::io::Error::other(e),
            }),
        }
    }

    /// The engine's own masked and read-only paths: the reference every container starts from.
    fn reference(&self, mut spec: ContainerSpec) -> ContainerSpec {
        let seccomp = self
            .defaults
            .seccomp
            .clone()
            .and_then(|v| serde_json::from_value(v).ok());
        if let Some(linux) = spec.spec.linux_mut() {
            linux.set_masked_paths(Some(self.defaults.masked_paths.clone()));
            linux.set_readonly_paths(Some(self.defaults.readonly_paths.clone()));
            linux.set_seccomp(seccomp);
        }
        spec
    }

    fn engine(&self) -> Option<&EngineDriver> {
        Some(self)
    }

    /// `<engine> exec --interactive`: the client process holds the probe's pipes and lives as long
    /// as the process. The engine does not say the process's pid; the probe does.
    fn exec(
        &self,
        id: &str,
        _init_pid: i32,
        process: &oci_spec::runtime::Process,
        _dir: &Path,
        stdio: ContainerStdio,
    ) -> Result<crate::driver::exec::Execed, HarnessError> {
        let (flags, command) = self.exec_command(id, process)?;
        let mut args: Vec<&str> = vec!["exec", "--interactive"];
        args.extend(flags.iter().map(String::as_str));
        args.push(id);
        args.extend(command.iter().map(String::as_str));
        let ContainerStdio {
            stdin,
            stdout,
            mut stderr,
        } = stdio;
        // What Palisade asked the engine for, first in the process's log.
        let _ = writeln!(stderr, "palisade: {} {}", self.kind.name(), args.join(" "));
        let mut client = self.command(&args)?;
        client.stdin(stdin).stdout(stdout).stderr(stderr);
        // Its own process group: a Ctrl-C for palisade must not cut the probe's pipes first.
        std::os::unix::process::CommandExt::process_group(&mut client, 0);
        let helper = client.spawn().map_err(|source| RuntimeError::Spawn {
            path: self.info.path.clone(),
            source,
        })?;
        Ok(crate::driver::exec::Execed {
            host_pid: None,
            helper: Some(helper),
        })
    }

    fn variant(&self, defect: &crate::driver::Defect) -> Option<Arc<dyn Driver>> {
        super::variant::Variant::of(self.me.get()?.upgrade()?, defect)
    }
}

fn read_all(file: &File) -> String {
    use std::io::{Read, Seek};
    let mut text = String::new();
    if let Ok(mut file) = file.try_clone()
        && file.rewind().is_ok()
    {
        let _ = file.read_to_string(&mut text);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("docker", EngineKind::Docker, None)]
    #[case("docker:crun", EngineKind::Docker, Some("crun"))]
    #[case(
        "podman:palisade-runtime",
        EngineKind::Podman,
        Some("palisade-runtime")
    )]
    fn engines_are_named_with_their_runtime(
        #[case] text: &str,
        #[case] kind: EngineKind,
        #[case] runtime: Option<&str>,
    ) {
        let choice: EngineChoice = text.parse().expect("valid");
        assert_eq!(choice.kind, kind);
        assert_eq!(choice.runtime.as_deref(), runtime);
    }

    #[rstest]
    #[case("containerd", "unknown engine `containerd`")]
    #[case("docker:", "is empty")]
    #[case("docker:../x", "is not a runtime name")]
    fn bad_engine_names_are_explained(#[case] text: &str, #[case] problem: &str) {
        let err = text.parse::<EngineChoice>().expect_err("invalid");
        assert!(err.contains(problem), "{err}");
    }

    #[test]
    fn masquerade_counters_are_summed() {
        let save = "*nat\n:POSTROUTING ACCEPT [0:0]\n[3:180] -A POSTROUTING -s 10.201.0.0/24 ! -o docker0 -j MASQUERADE\n[2:120] -A CNI-abc -j MASQUERADE\n[9:9] -A POSTROUTING -j RETURN\nCOMMIT\n";
        assert_eq!(masquerade_count(save), 5);
    }
}
