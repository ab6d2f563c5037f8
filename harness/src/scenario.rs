//! What a scenario is, and the context it runs in.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use palisade_probe::{Facts, Reply, Request};

use crate::bundle::{Bundle, ContainerSpec};
use crate::container::Container;
use crate::driver::RuntimeDriver;
use crate::error::HarnessError;
use crate::host::HostFacts;
use crate::run::RunEnv;

/// One isolation promise, checked for real, with the change under which the check must fail.
pub struct Scenario {
    /// `pid`, `namespaces`, ...: the first half of the trial name (`pid::init_is_pid_1`).
    pub area: &'static str,
    pub name: &'static str,
    /// The promise checked, in one sentence (it goes into the README's table).
    pub checks: &'static str,
    /// The negative control: what the scenario changes under `selftest`, where it must FAIL.
    pub control: &'static str,
    /// What a failure means for a user's security, in one sentence (README table).
    pub means: &'static str,
    pub requires: &'static [Requirement],
    pub run: fn(&Ctx) -> Outcome,
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
    /// The scenario could not get as far as its checks (the runtime refused, the probe died...).
    /// A failure of the scenario; under a negative control it does NOT count as the control
    /// being caught, since no check judged anything.
    Broken(String),
}

impl From<HarnessError> for Failure {
    fn from(error: HarnessError) -> Failure {
        Failure::Broken(error.to_string())
    }
}

/// Fails the scenario with a message unless `cond` holds.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err($crate::scenario::Failure::Failed(format!($($msg)+)));
        }
    };
}

/// Skips the scenario with a reason.
#[macro_export]
macro_rules! skip {
    ($($msg:tt)+) => {
        return Err($crate::scenario::Failure::Skipped(format!($($msg)+)))
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
            _ => None,
        }
    }
}

/// What a scenario gets: the runtime under test, the host facts, and a way to make containers.
pub struct Ctx {
    pub run: Arc<RunEnv>,
    pub runtime: Arc<dyn RuntimeDriver>,
    trial: String,
    control: bool,
    deadline: Instant,
    containers_made: AtomicU32,
}

impl Ctx {
    pub fn new(
        run: Arc<RunEnv>,
        runtime: Arc<dyn RuntimeDriver>,
        trial: &str,
        control: bool,
        deadline: Instant,
    ) -> Ctx {
        // The runtime is part of every container id: with several runtimes in one run, the same
        // trial on two runtimes at once must not share a bundle, a pid file or a cgroup.
        let runtime_tag: String = slug(&runtime.info().name).chars().take(16).collect();
        Ctx {
            trial: slug(&format!("{runtime_tag}-{trial}")),
            run,
            runtime,
            control,
            deadline,
            containers_made: AtomicU32::new(0),
        }
    }

    pub fn host(&self) -> &HostFacts {
        &self.run.host
    }

    /// True while `selftest` runs this scenario's negative control: the scenario applies its
    /// change, and must then fail.
    pub fn under_control(&self) -> bool {
        self.control
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Gives this scenario's thread, and so every runtime command it starts, a throwaway UTS
    /// namespace with a known hostname. It plays the host in hostname scenarios, so a negative
    /// control that lets the container change "the host's" hostname never touches the real one.
    pub fn isolate_host_uts(&self) -> Result<String, HarnessError> {
        let io = |source: nix::Error| HarnessError::Io {
            what: "isolating the host's UTS namespace",
            source: source.into(),
        };
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUTS).map_err(io)?;
        let name = self.run.name("host");
        nix::unistd::sethostname(&name).map_err(io)?;
        Ok(name)
    }

    /// This context with the runtime swapped for a variant that has `defect` (negative controls);
    /// `None` if the driver cannot make one. Containers get ids of their own (`tag`).
    pub fn with_defect(&self, defect: &crate::driver::Defect, tag: &str) -> Option<Ctx> {
        let runtime = self.runtime.variant(defect)?;
        Some(Ctx::new(
            self.run.clone(),
            runtime,
            &format!("{}-{tag}", self.trial),
            self.control,
            self.deadline,
        ))
    }

    /// Gives this scenario's thread, and so every runtime command it starts, a throwaway IPC
    /// namespace that plays the host: objects made there vanish with the thread, whatever happens.
    pub fn isolate_host_ipc(&self) -> Result<(), HarnessError> {
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

    /// Runs the probe on the host side (this thread's namespaces) with `request`, one-shot.
    pub fn host_probe(&self, request: &Request) -> Result<Reply, HarnessError> {
        let json = serde_json::to_string(request).map_err(|e| HarnessError::Io {
            what: "encoding a request",
            source: std::io::Error::other(e),
        })?;
        let left = self.deadline.saturating_duration_since(Instant::now());
        let done = crate::exec::run(std::process::Command::new(&self.run.probe).arg(json), left)
            .map_err(|e| HarnessError::Io {
                what: "running the probe on the host",
                source: std::io::Error::other(e),
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

    /// The reference container for this scenario, running the probe with `request`.
    pub fn spec(&self, label: &str, request: &Request) -> Result<ContainerSpec, HarnessError> {
        Ok(ContainerSpec::new(label, request)?)
    }

    /// Writes the bundle and runs the runtime's `create`; the probe waits for `start`.
    pub fn create(&self, spec: ContainerSpec) -> Result<Container, HarnessError> {
        let n = self.containers_made.fetch_add(1, Ordering::Relaxed);
        let suffix = if self.control { "-ctl" } else { "" };
        let id = self.run.name(&format!("{}{suffix}-{n}", self.trial));
        let mut spec = spec;
        if let Some(linux) = spec
            .spec
            .linux_mut()
            .as_mut()
            .filter(|l| l.cgroups_path().is_none())
        {
            linux.set_cgroups_path(Some(format!("{}/{id}", self.run.cgroup_parent()).into()));
        }
        let dir = self.run.dir.join("bundles").join(&id);
        let bundle = Bundle::write(
            &dir,
            &spec,
            &self.run.probe,
            &crate::bundle::os_release(&self.run.id),
        )?;
        let cgroups_path = spec
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().clone());
        Container::create(
            &id,
            bundle,
            self.runtime.clone(),
            self.deadline,
            cgroups_path,
        )
    }

    /// Creates and starts a container.
    pub fn launch(&self, spec: ContainerSpec) -> Result<Container, HarnessError> {
        let container = self.create(spec)?;
        container.start()?;
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
        expect_facts(self.run_once(spec.probe(&Request::Facts))?)
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
    }
}
