//! What a scenario is, and the context it runs in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use palisade_probe::{Facts, Reply, Request};

use crate::driver::Driver;
use crate::driver::bundle::ContainerSpec;
use crate::driver::container::Container;
use crate::error::HarnessError;
use crate::lab::host::HostFacts;
use crate::run::control::{Control, Defect, EditEnv, LabChange};
use crate::run::env::RunEnv;

/// One isolation promise, checked for real, with the runtime mistake under which it must fail.
pub struct Scenario {
    /// `pid`, `namespaces`, ...: the first half of the trial name (`pid::init_is_pid_1`).
    pub area: &'static str,
    pub name: &'static str,
    /// The promise checked, in one sentence (it goes into the README's table).
    pub checks: &'static str,
    /// The negative control: the mistake under which the scenario must FAIL (`selftest`).
    pub control: Control,
    /// What a failure means for a user's security, in one sentence (README table).
    pub means: &'static str,
    pub requires: &'static [Requirement],
    pub schedule: Schedule,
    pub run: fn(&Ctx) -> Outcome,
}

/// When a trial may run, relative to the others: a rule of the runner, applied before the
/// trial's deadline starts, so a trial that hangs never holds up the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// With any other trial.
    Parallel,
    /// Measures CPU time: never at the same time as another such trial, whose burners would
    /// compete for the same CPUs.
    CpuAlone,
    /// Routes through, or changes, the engine host's forwarding (its control sets
    /// `ip_forward=0` there): never at the same time as another such trial.
    UplinkAlone,
}

impl Scenario {
    pub fn full_name(&self) -> String {
        format!("{}::{}", self.area, self.name)
    }
}

/// A scenario either passes, or fails or is skipped with a reason.
pub type Outcome = Result<(), Failure>;

#[derive(Debug)]
pub enum Failure {
    /// The promise does not hold: expected, seen, and what it means.
    Failed(String),
    /// The scenario cannot run here; the reason is printed and counted.
    Skipped(String),
    /// The scenario could not get as far as its checks (the runtime refused, the probe died, a
    /// precondition or a measurement failed). A failure of the scenario; under a negative control
    /// it does NOT count as the control being caught, since no check judged anything.
    Broken(String),
}

impl From<HarnessError> for Failure {
    fn from(error: HarnessError) -> Failure {
        match error {
            HarnessError::ControlNotApplied(reason) => Failure::Skipped(reason),
            // What the driver cannot express (an engine's CLI has no flag for it) is a skip.
            unsupported @ HarnessError::Unsupported { .. } => {
                Failure::Skipped(unsupported.to_string())
            }
            other => Failure::Broken(other.to_string()),
        }
    }
}

impl From<crate::lab::cgroups::CgroupError> for Failure {
    /// A measurement that cannot be made is no verdict on the runtime.
    fn from(error: crate::lab::cgroups::CgroupError) -> Failure {
        Failure::Broken(error.to_string())
    }
}

/// Fails the scenario with a message unless `cond` holds: the check of a promise.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err($crate::run::scenario::Failure::Failed(format!($($msg)+)));
        }
    };
}

/// Stops the scenario as Broken unless `cond` holds: a precondition of the checks (the lab works,
/// the probe could do what the check relies on). Never a verdict, so never a caught control.
#[macro_export]
macro_rules! require {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err($crate::run::scenario::Failure::Broken(format!($($msg)+)));
        }
    };
}

/// Skips the scenario with a reason.
#[macro_export]
macro_rules! skip {
    ($($msg:tt)+) => {
        return Err($crate::run::scenario::Failure::Skipped(format!($($msg)+)))
    };
}

/// Something a scenario needs from the host; an unmet requirement is a skip reason.
#[derive(Debug, Clone, Copy)]
pub enum Requirement {
    /// Root with CAP_SYS_ADMIN: creating containers at all.
    Privileged,
    /// A namespace type the kernel must offer (`time`).
    Namespace(&'static str),
    /// A program that must be on PATH (`nft`).
    Program(&'static str),
    /// A container engine (`--engine`): image layers and engine networks exist only there.
    Engine,
    /// A Palisade-owned engine in a lab host: the host side of the scenario is that lab host's
    /// network, which an operator's engine does not have.
    EngineLab,
    /// An OCI runtime driven directly: the scenario builds the container's world itself (a
    /// network namespace Palisade made), which an engine makes its own way.
    DirectRuntime,
    /// A cgroup freezer (v1 `freezer` hierarchy, or cgroup v2's `cgroup.freeze`): `pause`.
    Freezer,
}

impl Requirement {
    pub fn unmet(&self, host: &HostFacts) -> Option<String> {
        match *self {
            Requirement::Privileged if !host.is_privileged() => Some(format!(
                "needs root with CAP_SYS_ADMIN (running as uid {}{})",
                host.euid,
                if host.euid == 0 {
                    " without CAP_SYS_ADMIN"
                } else {
                    ""
                }
            )),
            Requirement::Namespace(kind) if !host.has_namespace(kind) => {
                Some(format!("the kernel has no {kind} namespace"))
            }
            Requirement::Program(program) if crate::exec::find_program(program).is_none() => {
                Some(format!("`{program}` is not installed"))
            }
            Requirement::Freezer => crate::lab::cgroups::freezer::unavailable(host),
            _ => None,
        }
    }

    /// What keeps the scenario from running on `driver`, if anything.
    pub fn unmet_on(&self, driver: &dyn Driver) -> Option<String> {
        let engine = driver.engine();
        match (*self, engine) {
            (Requirement::Engine | Requirement::EngineLab, None) => Some(format!(
                "needs a container engine (`--engine docker`): `{}` is an OCI runtime driven directly, with no images or engine networks",
                driver.info().name
            )),
            (Requirement::EngineLab, Some(engine)) if engine.is_operators() => Some(format!(
                "needs a Palisade-owned engine in a lab host: against the operator's `{}`, the host side would be the real machine's network",
                driver.info().name
            )),
            (Requirement::DirectRuntime, Some(engine)) => Some(format!(
                "builds the container's network namespace itself, which {} cannot join (the engine_net:: scenarios check the engine's own networking)",
                engine.kind().name()
            )),
            _ => None,
        }
    }
}

/// What a scenario gets: the runtime under test, the host facts, a way to make containers, and
/// (under `selftest`) the negative control it applies on the scenario's behalf.
pub struct Ctx {
    pub run: Arc<RunEnv>,
    pub runtime: Arc<dyn Driver>,
    /// Under `selftest`: the control to apply.
    control: Option<Control>,
    trial: String,
    deadline: Instant,
    containers_made: AtomicU32,
    /// Host pids of the containers made so far, by label (controls join their namespaces).
    pids: Mutex<BTreeMap<String, i32>>,
    /// The lab host's network namespace, once the scenario made a lab.
    lab_host: Mutex<Option<PathBuf>>,
    /// Under an engine: the trial's exclusive use of the engine host's hostname, if it took it.
    host_uts: Mutex<Option<crate::engine::driver::HostLease>>,
}

impl Ctx {
    pub fn new(
        run: Arc<RunEnv>,
        runtime: Arc<dyn Driver>,
        trial: &str,
        control: Option<Control>,
        deadline: Instant,
    ) -> Ctx {
        Ctx {
            trial: trial_tag(&runtime.info().name, trial),
            run,
            runtime,
            control,
            deadline,
            containers_made: AtomicU32::new(0),
            pids: Mutex::new(BTreeMap::new()),
            lab_host: Mutex::new(None),
            host_uts: Mutex::new(None),
        }
    }

    /// The engine under test, if the runtime is one.
    pub fn engine(&self) -> Option<&crate::engine::driver::EngineDriver> {
        self.runtime.engine()
    }

    /// The engine under test, or a skip for a scenario that needs one.
    pub fn require_engine(&self) -> Result<&crate::engine::driver::EngineDriver, HarnessError> {
        self.engine().ok_or_else(|| HarnessError::Unsupported {
            what: format!("`{}` is not a container engine", self.runtime.info().name),
        })
    }

    /// The `/etc/os-release` a container of this runtime should see: its rootfs's (the bundle's,
    /// or the probe image's).
    pub fn own_os_release(&self) -> String {
        match self.engine() {
            Some(_) => crate::engine::image::os_release(),
            None => crate::driver::bundle::os_release(&self.run.id),
        }
    }

    /// The cgroup the containers of this runtime live under.
    pub fn containers_cgroup_parent(&self) -> String {
        match self.engine().and_then(|e| e.lab()) {
            Some(lab) => lab.cgroup_parent(self.engine().map_or("docker", |e| e.kind().name())),
            None => self.run.cgroup_parent(),
        }
    }

    /// The namespaces of "the host" the containers are compared with: the engine's host (its lab
    /// host, or an operator's machine), or this scenario's thread for an OCI runtime.
    pub fn host_namespaces(&self) -> Result<BTreeMap<String, u64>, HarnessError> {
        let io = |source| HarnessError::Io {
            what: "reading the host's namespaces",
            source,
        };
        match self.engine() {
            Some(engine) => crate::lab::host::process_namespaces(engine.host_pid()).map_err(io),
            None => crate::lab::host::thread_namespaces().map_err(io),
        }
    }

    /// The hostname of "the host": the engine's host, or this scenario's thread's.
    pub fn host_hostname(&self) -> Result<String, HarnessError> {
        match self.engine() {
            Some(engine) => engine.host_hostname(),
            None => Ok(crate::lab::host::current_hostname()),
        }
    }

    pub fn host(&self) -> &HostFacts {
        &self.run.host
    }

    /// True while `selftest` runs this scenario's negative control.
    pub fn under_control(&self) -> bool {
        self.control.is_some()
    }

    /// The lab change in force, if this trial's control is one.
    pub fn lab_change(&self) -> Option<LabChange> {
        match self.control {
            Some(Control::Lab(change)) => Some(change),
            _ => None,
        }
    }

    /// The tag of this trial in container ids and the live-container registry.
    pub fn trial(&self) -> &str {
        &self.trial
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Records the lab host's network namespace (a control may make a container join it).
    pub fn set_lab_host(&self, path: &Path) {
        if let Ok(mut slot) = self.lab_host.lock() {
            *slot = Some(path.to_owned());
        }
    }

    /// Gives this scenario's thread, and so every runtime command it starts, a throwaway UTS
    /// namespace with a known hostname. It plays the host in hostname scenarios, so a negative
    /// control that lets the container change "the host's" hostname never touches the real one.
    ///
    /// Under an engine, the host is the engine's lab host (throwaway too): the trial takes it
    /// for itself until it ends, and its hostname is restored then.
    pub fn isolate_host_uts(&self) -> Result<String, HarnessError> {
        if let Some(engine) = self.engine() {
            let lease = engine.lease_host_uts(self.deadline)?;
            if let Ok(mut slot) = self.host_uts.lock() {
                *slot = Some(lease);
            }
            return engine.host_hostname();
        }
        let io = |source: nix::Error| HarnessError::Io {
            what: "isolating the host's UTS namespace",
            source: source.into(),
        };
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUTS).map_err(io)?;
        let name = self.run.name("host");
        nix::unistd::sethostname(&name).map_err(io)?;
        Ok(name)
    }

    /// Gives this scenario's thread, and so every runtime command it starts, a throwaway IPC
    /// namespace that plays the host: objects made there vanish with the thread, whatever happens.
    ///
    /// Under an engine, the host's IPC namespace is the engine's host's (the lab host's, which
    /// dies with the run): nothing to isolate.
    pub fn isolate_host_ipc(&self) -> Result<(), HarnessError> {
        if self.engine().is_some() {
            return Ok(());
        }
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWIPC).map_err(|source| {
            HarnessError::Io {
                what: "isolating the host's IPC namespace",
                source: source.into(),
            }
        })
    }

    /// Gives this scenario's thread a mount namespace of its own that plays the host: a copy of
    /// the host's mount tree that receives the host's mounts (slave) but sends nothing back, and
    /// shares its own mounts with the containers it starts. Mounts made there die with the thread.
    pub fn isolate_host_mounts(&self) -> Result<(), HarnessError> {
        use nix::mount::{MsFlags, mount};
        if let Some(engine) = self.engine() {
            return Err(HarnessError::Unsupported {
                what: format!(
                    "the host side of this scenario is palisade's own mount namespace; {} makes its mounts in its host's",
                    engine.kind().name()
                ),
            });
        }
        let io = |source: nix::Error| HarnessError::Io {
            what: "isolating the host's mount namespace",
            source: source.into(),
        };
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(io)?;
        for flags in [MsFlags::MS_SLAVE, MsFlags::MS_SHARED] {
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                flags | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(io)?;
        }
        Ok(())
    }

    /// Runs the probe on the host side (this thread's namespaces, or the engine's host) with
    /// `request`, one-shot. Against an operator's engine the host is the real machine, where
    /// the probe only looks.
    pub fn host_probe(&self, request: &Request) -> Result<Reply, HarnessError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        let mut command = match self.engine() {
            Some(engine) => {
                if engine.is_operators() && matches!(request, Request::CreateIpc { .. }) {
                    return Err(HarnessError::Unsupported {
                        what: "creating IPC objects in the real machine's namespace (the host of an operator's engine)".into(),
                    });
                }
                engine.host_command(&self.run.probe)
            }
            None => std::process::Command::new(&self.run.probe),
        };
        let done = crate::exec::run(command.arg(request.to_arg()), left).map_err(|e| {
            HarnessError::Io {
                what: "running the probe on the host",
                source: std::io::Error::other(e),
            }
        })?;
        let line = done.stdout.lines().next().unwrap_or_default().to_owned();
        let response: palisade_probe::Response =
            serde_json::from_str(&line).map_err(|e| HarnessError::ProbeGarbage {
                line: line.clone(),
                problem: e.to_string(),
            })?;
        match response {
            palisade_probe::Response::Ok { reply } => Ok(reply),
            palisade_probe::Response::Error { op, message } => {
                Err(HarnessError::ProbeFailed { op, message })
            }
        }
    }

    /// The reference container for this scenario, its probe answering requests on stdin
    /// ([`ContainerSpec::one_shot`] gives it a single request instead). `label` names it in
    /// container ids, and is what a control's target matches.
    pub fn spec(&self, label: &str) -> Result<ContainerSpec, HarnessError> {
        Ok(self.runtime.reference(ContainerSpec::new(label)?))
    }

    /// Applies the control (under `selftest`), then creates the container; the probe waits for
    /// `start`.
    pub fn create(&self, spec: ContainerSpec) -> Result<Container, HarnessError> {
        if crate::run::interrupt::interrupted() {
            return Err(HarnessError::Interrupted);
        }
        let mut spec = spec;
        let mut runtime = self.runtime.clone();
        match self.control {
            Some(control @ Control::Config { .. }) => {
                if let Some(edit) = control.edit_for(&spec.name) {
                    spec = edit
                        .apply(spec, self)
                        .map_err(|e| HarnessError::ControlNotApplied(e.to_string()))?;
                }
            }
            Some(Control::Defect(defect)) => {
                let (variant, edited) = self.with_defect(defect, spec)?;
                runtime = variant;
                spec = edited;
            }
            Some(Control::Lab(_)) | None => {}
        }
        let n = self.containers_made.fetch_add(1, Ordering::Relaxed);
        let suffix = if self.under_control() { "-ctl" } else { "" };
        let id = self.run.name(&format!("{}{suffix}-{n}", self.trial));
        // An engine places its containers itself (under its cgroup parent).
        if let Some(linux) = spec
            .spec
            .linux_mut()
            .as_mut()
            .filter(|l| l.cgroups_path().is_none() && self.runtime.engine().is_none())
        {
            linux.set_cgroups_path(Some(format!("{}/{id}", self.run.cgroup_parent()).into()));
        }
        let dir = self.run.dir.join("bundles").join(&id);
        // Registered before `create`: a runtime that hangs there still leaves a container to stop.
        self.run.live.add(&id, &self.trial, runtime.clone());
        let container = Container::create(&id, &spec, &dir, runtime, self.deadline)
            .map(|c| c.registered(self.run.live.clone()));
        match &container {
            Ok(c) => self.record_pid(c),
            Err(_) => self.run.live.remove(&id),
        }
        container
    }

    /// Remembers the container's init pid by label, once it is known (controls join its
    /// namespaces).
    fn record_pid(&self, container: &Container) {
        if let (Ok(mut pids), Ok(pid)) = (self.pids.lock(), container.host_pid()) {
            pids.insert(container.spec().name.clone(), pid);
        }
    }

    /// The runtime with the control's defect, and the spec as that defect needs it.
    fn with_defect(
        &self,
        defect: Defect,
        spec: ContainerSpec,
    ) -> Result<(Arc<dyn Driver>, ContainerSpec), HarnessError> {
        match defect {
            Defect::EscapableJail => {
                // The bundled runtime has a bare-chroot mode for exactly this; runtimes that only
                // offer --no-pivot (not escapable by the climb alone, see the README) also get a
                // leaked host directory fd, when they can pass one on.
                let spec = spec.edit(|s| {
                    let mut map = s.annotations().clone().unwrap_or_default();
                    for key in [
                        palisade_common::annotations::NO_PIVOT,
                        palisade_common::annotations::CHROOT_ONLY,
                    ] {
                        map.insert(key.to_owned(), "true".to_owned());
                    }
                    s.set_annotations(Some(map));
                });
                let with_leak = crate::driver::Defect {
                    create_flags: vec!["--no-pivot".into()],
                    leaked_dir: Some("/".into()),
                    ..crate::driver::Defect::default()
                };
                let without_leak = crate::driver::Defect {
                    leaked_dir: None,
                    ..with_leak.clone()
                };
                let variant = self
                    .runtime
                    .variant(&with_leak)
                    .or_else(|| self.runtime.variant(&without_leak))
                    .ok_or_else(|| {
                        HarnessError::ControlNotApplied(format!(
                            "`{}` cannot be driven with the control's defect",
                            self.runtime.info().name
                        ))
                    })?;
                Ok((variant, spec))
            }
            Defect::ExecMissesNamespace(kind) => self
                .variant(crate::driver::Defect {
                    exec: Some(crate::driver::ExecDefect::Nsenter { skip: Some(kind) }),
                    ..crate::driver::Defect::default()
                })
                .map(|v| (v, spec)),
            Defect::ExecOutsideCgroup | Defect::ExecIgnoresProcess => self
                .variant(crate::driver::Defect {
                    exec: Some(crate::driver::ExecDefect::Nsenter { skip: None }),
                    ..crate::driver::Defect::default()
                })
                .map(|v| (v, spec)),
            Defect::ExecLeaksHostDir => self
                .variant(crate::driver::Defect {
                    exec: Some(crate::driver::ExecDefect::LeakedDir("/".into())),
                    ..crate::driver::Defect::default()
                })
                .map(|v| (v, spec)),
            Defect::StateReportsWrongPid => self
                .variant(crate::driver::Defect {
                    state_pid: Some(std::process::id() as i32),
                    ..crate::driver::Defect::default()
                })
                .map(|v| (v, spec)),
            Defect::PauseDoesNothing => self
                .variant(crate::driver::Defect {
                    pause_noop: true,
                    ..crate::driver::Defect::default()
                })
                .map(|v| (v, spec)),
        }
    }

    /// The runtime with `defect`, or a skip saying it cannot be made.
    fn variant(&self, defect: crate::driver::Defect) -> Result<Arc<dyn Driver>, HarnessError> {
        self.runtime.variant(&defect).ok_or_else(|| {
            HarnessError::ControlNotApplied(format!(
                "`{}` cannot be driven with the control's defect",
                self.runtime.info().name
            ))
        })
    }

    /// Creates and starts a container.
    pub fn launch(&self, spec: ContainerSpec) -> Result<Container, HarnessError> {
        let container = self.create(spec)?;
        container.start()?;
        self.record_pid(&container);
        Ok(container)
    }

    /// The whole life of a one-shot container: create, start, take the probe's reply, wait for
    /// it to exit, delete.
    pub fn run_once(&self, spec: ContainerSpec) -> Result<Reply, HarnessError> {
        let container = self.launch(spec)?;
        let reply = container.reply()?;
        container.wait_exit()?;
        container.delete()?;
        Ok(reply)
    }

    /// [`Ctx::run_once`] for a probe asked for its facts.
    pub fn facts_of(&self, spec: ContainerSpec) -> Result<Facts, HarnessError> {
        expect_facts(self.run_once(spec.one_shot(&Request::Facts))?)
    }
}

impl EditEnv for Ctx {
    fn run_dir(&self) -> &Path {
        &self.run.dir
    }

    fn pid_of(&self, label: &str) -> Option<i32> {
        self.pids.lock().ok()?.get(label).copied()
    }

    fn lab_host_network(&self) -> Option<PathBuf> {
        self.lab_host.lock().ok()?.clone()
    }

    fn host_namespace_path(&self, kind: &str) -> PathBuf {
        let pid = match self.engine() {
            Some(engine) => engine.host_pid(),
            None => std::process::id() as i32,
        };
        PathBuf::from(format!("/proc/{pid}/ns/{kind}"))
    }

    fn trial_name(&self, what: &str) -> String {
        self.run.name(&format!("{}-{what}", self.trial))
    }

    fn image_layer_holding(&self, path: &Path) -> Option<PathBuf> {
        let layers = self.engine()?.image_layers().ok()?;
        let relative = path.strip_prefix("/").unwrap_or(path);
        std::iter::once(layers.upper)
            .chain(layers.lower)
            .find(|layer| layer.join(relative).exists())
    }
}

/// Unwraps a `facts` reply.
pub fn expect_facts(reply: Reply) -> Result<Facts, HarnessError> {
    match reply {
        Reply::Facts(facts) => Ok(*facts),
        other => Err(HarnessError::ProbeFailed {
            op: "facts".into(),
            message: format!("unexpected reply {other:?}"),
        }),
    }
}

/// The runtime is part of every container id: with several runtimes in one run, the same trial
/// on two runtimes at once must not share a bundle, a pid file or a cgroup.
fn trial_tag(runtime: &str, trial: &str) -> String {
    let runtime_tag: String = slug(runtime).chars().take(16).collect();
    slug(&format!("{runtime_tag}-{trial}"))
}

/// `pid::init_is_pid_1` → `pid-init-is-pid-1`, usable in container ids and cgroup names.
pub fn slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '-'
        };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    out.trim_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_id_safe() {
        assert_eq!(slug("pid::init_is_pid_1"), "pid-init-is-pid-1");
        assert_eq!(slug("runc/pid::x"), "runc-pid-x");
        assert_eq!(trial_tag("runc", "pid::x"), "runc-pid-x");
    }
}
