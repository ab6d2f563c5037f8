//! A process started in a running container (`<runtime> exec`), talked to through the probe.

use oci_spec::runtime::Process;
use palisade_probe::{Reply, Request};

use super::ContainerStdio;
use super::channel::ProbeChannel;
use crate::error::HarnessError;
use crate::exec::ProcessHandle;

/// What an `exec` started: the process's host pid, where the driver knows it, and a helper
/// process that lives as long as it (to be reaped after it).
#[derive(Debug)]
pub struct Execed {
    pub host_pid: Option<i32>,
    pub helper: Option<std::process::Child>,
}

/// A probe started in a running container. Dropping it kills the process.
pub struct ExecProcess {
    pub channel: ProbeChannel,
    host_pid: Option<i32>,
    /// The container's init on the host, whose pid namespace the process was started in.
    init_pid: i32,
    helper: Option<std::process::Child>,
    /// The process spec it was started with.
    pub process: Process,
}

impl ExecProcess {
    pub fn new(
        channel: ProbeChannel,
        execed: Execed,
        init_pid: i32,
        process: Process,
    ) -> ExecProcess {
        ExecProcess {
            channel,
            host_pid: execed.host_pid,
            init_pid,
            helper: execed.helper,
            process,
        }
    }

    /// The process's pid on the host: the driver's word for it or, when the driver cannot tell
    /// (an engine's `exec`, nsenter), the host process that has the probe's own pid in the pid
    /// namespace of the container's init. (The probe's NSpid cannot say it: the container's
    /// /proc shows only the levels from its own pid namespace down.)
    pub fn host_pid(&mut self) -> Result<i32, HarnessError> {
        if let Some(pid) = self.host_pid {
            return Ok(pid);
        }
        let facts = crate::run::scenario::expect_facts(self.ask(&Request::Facts)?)?;
        let found = crate::lab::host::host_pid_in_pid_namespace_of(self.init_pid, facts.pid)
            .map_err(|source| HarnessError::Io {
                what: "finding the exec'd process on the host",
                source,
            })?;
        let pid = found.ok_or_else(|| HarnessError::ProbeFailed {
            op: "find the exec'd process on the host".into(),
            message: format!(
                "no host process is pid {} in the pid namespace of the container's init (host pid {}): the process is not in the container's pid namespace",
                facts.pid, self.init_pid
            ),
        })?;
        self.host_pid = Some(pid);
        Ok(pid)
    }

    pub fn ask(&mut self, request: &Request) -> Result<Reply, HarnessError> {
        self.channel.ask(request)
    }
}

impl Drop for ExecProcess {
    fn drop(&mut self) {
        self.channel.close_stdin();
        if let Some(pid) = self.host_pid
            && let Ok(Some(handle)) = ProcessHandle::open(pid)
        {
            handle.kill();
        }
        if let Some(mut helper) = self.helper.take() {
            let _ = helper.kill();
            let _ = helper.wait();
        }
    }
}

/// A simulated runtime defect: the process joins the init's namespaces by itself, as `nsenter`
/// does, leaving `skip` out; it keeps the caller's cgroup, user and capabilities.
pub(crate) fn nsenter_exec(
    init_pid: i32,
    skip: Option<oci_spec::runtime::LinuxNamespaceType>,
    process: &oci_spec::runtime::Process,
    stdio: ContainerStdio,
) -> Result<Execed, HarnessError> {
    use oci_spec::runtime::LinuxNamespaceType as Ns;
    let nsenter = crate::exec::find_program("nsenter").ok_or_else(|| {
        HarnessError::ControlNotApplied("`nsenter` (util-linux) is not installed".into())
    })?;
    let own = crate::lab::host::process_namespaces(std::process::id() as i32).unwrap_or_default();
    let theirs = crate::lab::host::process_namespaces(init_pid).unwrap_or_default();
    let mut command = std::process::Command::new(nsenter);
    command.arg("--target").arg(init_pid.to_string());
    let flags = [
        (Ns::User, "--user"),
        (Ns::Mount, "--mount"),
        (Ns::Uts, "--uts"),
        (Ns::Ipc, "--ipc"),
        (Ns::Network, "--net"),
        (Ns::Pid, "--pid"),
        (Ns::Cgroup, "--cgroup"),
        (Ns::Time, "--time"),
    ];
    for (kind, flag) in flags {
        let name = palisade_common::namespaces::proc_name(kind);
        // Only namespaces that differ from the caller's can (and need to) be entered.
        let differs = own.get(name) != theirs.get(name);
        if Some(kind) != skip && differs && theirs.contains_key(name) {
            command.arg(flag);
        }
    }
    let args = process.args().clone().unwrap_or_default();
    let ContainerStdio {
        stdin,
        stdout,
        stderr,
    } = stdio;
    let helper = command
        .arg("--")
        .args(&args)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|source| HarnessError::Io {
            what: "running nsenter",
            source,
        })?;
    Ok(Execed {
        host_pid: None,
        helper: Some(helper),
    })
}
