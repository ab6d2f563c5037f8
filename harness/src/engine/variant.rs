//! An engine driver with a runtime defect switched on, for negative controls: the engine as it
//! is, except the verb the defect changes. Only what Palisade can simulate from outside the
//! engine is offered (an `exec` that enters the container by itself, with nsenter; a `state`
//! with the wrong pid; a `pause` that does nothing); a defect that needs the runtime's own flags (`--no-pivot`,
//! `--preserve-fds`) cannot go through an engine, and the control is then a skip.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use oci_spec::runtime::{LinuxNamespaceType, State};

use super::driver::EngineDriver;
use crate::driver::bundle::ContainerSpec;
use crate::driver::exec::{Execed, nsenter_exec};
use crate::driver::{
    ContainerStdio, Created, Defect, Driver, ExecDefect, RuntimeError, RuntimeInfo, Status,
};
use crate::error::HarnessError;

pub struct Variant {
    engine: Arc<EngineDriver>,
    /// `exec` enters the container with nsenter, leaving this namespace (if any) out.
    nsenter: Option<Option<LinuxNamespaceType>>,
    /// `state` reports this pid instead of the init's.
    state_pid: Option<i32>,
    /// `pause` succeeds without asking the engine: nothing is frozen.
    pause_noop: bool,
}

impl Variant {
    /// `engine` with `defect`, or `None` if an engine cannot be driven with it.
    pub fn of(engine: Arc<EngineDriver>, defect: &Defect) -> Option<Arc<dyn Driver>> {
        let nsenter = match &defect.exec {
            None => None,
            Some(ExecDefect::Nsenter { skip }) => Some(*skip),
            Some(ExecDefect::LeakedDir(_)) => return None,
        };
        if !defect.create_flags.is_empty() || defect.leaked_dir.is_some() {
            return None;
        }
        Some(Arc::new(Variant {
            engine,
            nsenter,
            state_pid: defect.state_pid,
            pause_noop: defect.pause_noop,
        }))
    }
}

impl Driver for Variant {
    fn info(&self) -> &RuntimeInfo {
        self.engine.info()
    }

    fn create(
        &self,
        id: &str,
        spec: &ContainerSpec,
        dir: &Path,
        stdio: ContainerStdio,
    ) -> Result<Created, HarnessError> {
        self.engine.create(id, spec, dir, stdio)
    }

    fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.engine.start(id)
    }

    fn state(&self, id: &str) -> Result<State, RuntimeError> {
        let mut state = self.engine.state(id)?;
        if let Some(pid) = self.state_pid {
            state.set_pid(Some(pid));
        }
        Ok(state)
    }

    fn status(&self, id: &str) -> Result<Status, RuntimeError> {
        self.engine.status(id)
    }

    fn kill(&self, id: &str, signal: &str) -> Result<(), RuntimeError> {
        self.engine.kill(id, signal)
    }

    fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        if self.pause_noop {
            return Ok(());
        }
        self.engine.pause(id)
    }

    fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.engine.resume(id)
    }

    fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        self.engine.delete(id, force)
    }

    fn exec(
        &self,
        id: &str,
        init_pid: i32,
        process: &oci_spec::runtime::Process,
        dir: &Path,
        stdio: ContainerStdio,
    ) -> Result<Execed, HarnessError> {
        match self.nsenter {
            Some(skip) => {
                // Only a process the engine could start is one the control may stand in for.
                self.engine.exec_command(id, process)?;
                nsenter_exec(init_pid, skip, process, stdio)
            }
            None => self.engine.exec(id, init_pid, process, dir, stdio),
        }
    }

    fn started_pid(&self, id: &str) -> Result<Option<i32>, HarnessError> {
        self.engine.started_pid(id)
    }

    fn wait_stopped(
        &self,
        id: &str,
        host_pid: Option<i32>,
        timeout: Duration,
    ) -> Result<bool, HarnessError> {
        self.engine.wait_stopped(id, host_pid, timeout)
    }

    fn reference(&self, spec: ContainerSpec) -> ContainerSpec {
        self.engine.reference(spec)
    }

    fn engine(&self) -> Option<&EngineDriver> {
        Some(&self.engine)
    }
}
