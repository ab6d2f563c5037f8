//! A process started in a running container (`<runtime> exec`), talked to through the probe.

use oci_spec::runtime::Process;
use palisade_probe::{Reply, Request};

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
    helper: Option<std::process::Child>,
    /// The process spec it was started with.
    pub process: Process,
}

impl ExecProcess {
    pub fn new(channel: ProbeChannel, execed: Execed, process: Process) -> ExecProcess {
        ExecProcess {
            channel,
            host_pid: execed.host_pid,
            helper: execed.helper,
            process,
        }
    }

    /// The process's pid on the host: the driver's word for it, or what the probe says of itself
    /// (the outermost NSpid) when the driver cannot tell.
    pub fn host_pid(&mut self) -> Result<i32, HarnessError> {
        if let Some(pid) = self.host_pid {
            return Ok(pid);
        }
        let facts = crate::run::scenario::expect_facts(self.ask(&Request::Facts)?)?;
        let pid = facts.nspid.first().copied().unwrap_or(facts.pid);
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
