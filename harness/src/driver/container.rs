//! One container under test: created through a driver, talked to through the probe.

use std::io::{BufRead, BufReader, PipeWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use oci_spec::runtime::{ContainerState, State};
use palisade_probe::{Reply, Request, Response};

use super::bundle::ContainerSpec;
use super::{ContainerStdio, Driver, RuntimeError};
use crate::error::HarnessError;
use crate::exec;

/// A created container. Dropping it kills and deletes it and removes its directory, whatever
/// happened.
pub struct Container {
    id: String,
    /// The container's own directory (the bundle, for an OCI runtime; its stderr log).
    dir: PathBuf,
    rootfs: Option<PathBuf>,
    runtime: Arc<dyn Driver>,
    host_pid: i32,
    stdin: Option<PipeWriter>,
    stdout: Receiver<String>,
    deadline: Instant,
    deleted: bool,
    /// The config's `cgroupsPath`: Palisade named it, so Palisade removes it if the runtime did not.
    cgroups_path: Option<PathBuf>,
    /// The run's registry of live containers, which this one leaves when it is gone.
    live: Option<Arc<crate::run::live::Live>>,
    /// The config it was created with (a negative control's edit included).
    spec: ContainerSpec,
    /// How many processes were started in it with `exec`.
    execs: std::sync::atomic::AtomicU32,
}

impl Container {
    /// Creates the container described by `spec` through `runtime`, in `dir` (made here, removed
    /// on drop). The probe is blocked until [`Container::start`].
    pub fn create(
        id: &str,
        spec: &ContainerSpec,
        dir: &Path,
        runtime: Arc<dyn Driver>,
        deadline: Instant,
    ) -> Result<Container, HarnessError> {
        let io_err = |what: &'static str| move |source| HarnessError::Io { what, source };
        std::fs::create_dir_all(dir).map_err(io_err("creating the container's directory"))?;
        let (stdin_reader, stdin_writer) =
            std::io::pipe().map_err(io_err("making the stdin pipe"))?;
        let (stdout_reader, stdout_writer) =
            std::io::pipe().map_err(io_err("making the stdout pipe"))?;
        let stderr = std::fs::File::options()
            .create(true)
            .append(true)
            .read(true)
            .open(dir.join("stderr.log"))
            .map_err(io_err("creating stderr.log"))?;
        let stdio = ContainerStdio {
            stdin: stdin_reader.into(),
            stdout: stdout_writer.into(),
            stderr,
        };
        let stdout = spawn_line_reader(stdout_reader);
        // From here on the directory is ours to remove, even if `create` fails half way.
        let mut container = Container {
            id: id.to_owned(),
            dir: dir.to_owned(),
            rootfs: None,
            runtime,
            host_pid: 0,
            stdin: Some(stdin_writer),
            stdout,
            deadline,
            deleted: false,
            cgroups_path: spec
                .spec
                .linux()
                .as_ref()
                .and_then(|l| l.cgroups_path().clone()),
            live: None,
            spec: spec.clone(),
            execs: std::sync::atomic::AtomicU32::new(0),
        };
        let created = container.runtime.create(id, spec, dir, stdio)?;
        container.host_pid = created.host_pid;
        container.rootfs = created.rootfs;
        Ok(container)
    }

    /// Leaves `live` when dropped (the caller added it there before `create`).
    pub fn registered(mut self, live: Arc<crate::run::live::Live>) -> Container {
        self.live = Some(live);
        self
    }

    /// The config the container was created with, negative control included.
    pub fn spec(&self) -> &ContainerSpec {
        &self.spec
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The init's pid on the host, as the runtime wrote it to `--pid-file`.
    pub fn host_pid(&self) -> i32 {
        self.host_pid
    }

    /// The container's root filesystem as the host sees it; a driver that cannot show it is an
    /// error for scenarios that need it.
    pub fn rootfs(&self) -> Result<&Path, HarnessError> {
        self.rootfs
            .as_deref()
            .ok_or_else(|| HarnessError::Unsupported {
                what: format!(
                    "`{}` does not show the container's rootfs on the host",
                    self.runtime.info().name
                ),
            })
    }

    /// Starts `process` in this running container through the runtime's `exec`, its probe
    /// talking on pipes of its own.
    pub fn exec(
        &self,
        process: oci_spec::runtime::Process,
    ) -> Result<super::exec::ExecProcess, HarnessError> {
        let n = self
            .execs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (stdio, channel) = super::exec::probe_pipes(
            &format!("{} (exec {n})", self.id),
            &self.dir.join(format!("exec-{n}.stderr.log")),
            self.deadline,
        )?;
        let execed = self
            .runtime
            .exec(&self.id, self.host_pid, &process, &self.dir, stdio)?;
        Ok(super::exec::ExecProcess::new(channel, execed, process))
    }

    pub fn start(&self) -> Result<(), HarnessError> {
        Ok(self.runtime.start(&self.id)?)
    }

    pub fn state(&self) -> Result<State, HarnessError> {
        Ok(self.runtime.state(&self.id)?)
    }

    pub fn status(&self) -> Result<ContainerState, HarnessError> {
        Ok(*self.state()?.status())
    }

    pub fn kill(&self, signal: &str) -> Result<(), HarnessError> {
        Ok(self.runtime.kill(&self.id, signal)?)
    }

    /// The next response the probe prints, waiting at most until the scenario's deadline.
    pub fn response(&self) -> Result<Response, HarnessError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        let line = match self.stdout.recv_timeout(left) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                return Err(HarnessError::ProbeSilent {
                    id: self.id.clone(),
                    stderr: self.stderr_tail(),
                });
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(HarnessError::ProbeGone {
                    id: self.id.clone(),
                    stderr: self.stderr_tail(),
                });
            }
        };
        serde_json::from_str(&line).map_err(|e| HarnessError::ProbeGarbage {
            line,
            problem: e.to_string(),
        })
    }

    /// The probe's next reply; a probe that reports an error is a harness error.
    pub fn reply(&self) -> Result<Reply, HarnessError> {
        match self.response()? {
            Response::Ok { reply } => Ok(reply),
            Response::Error { op, message } => Err(HarnessError::ProbeFailed { op, message }),
        }
    }

    /// Sends one request to a probe in `serve` mode and returns its reply.
    pub fn ask(&mut self, request: &Request) -> Result<Reply, HarnessError> {
        let line = request.to_arg();
        let stdin = self.stdin.as_mut().ok_or(HarnessError::StdinClosed)?;
        writeln!(stdin, "{line}").map_err(|source| HarnessError::Io {
            what: "writing to the probe",
            source,
        })?;
        self.reply()
    }

    /// Closes the probe's stdin (a `serve` probe then exits).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the container's init to exit, at most until the scenario's deadline.
    pub fn wait_exit(&self) -> Result<(), HarnessError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        match exec::wait_for_exit(self.host_pid, left) {
            Ok(true) => Ok(()),
            Ok(false) => Err(HarnessError::Timeout {
                what: format!(
                    "container `{}` (host pid {}) to exit",
                    self.id, self.host_pid
                ),
                after: left,
            }),
            Err(source) => Err(HarnessError::Io {
                what: "waiting for the container's init",
                source,
            }),
        }
    }

    /// Deletes the container (it must have stopped) and reports the runtime's error if any.
    pub fn delete(mut self) -> Result<(), HarnessError> {
        self.runtime.delete(&self.id, false)?;
        // A runtime that claims success and deletes nothing is caught by the run's leak check.
        self.deleted = true;
        Ok(())
    }

    /// The last lines the container (and the runtime's `create`) wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default();
        super::error_summary(&text, 5)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.stdin = None;
        if !self.deleted {
            let _ = self.runtime.kill(&self.id, "KILL");
            if let Err(RuntimeError::Failed { .. }) = self.runtime.delete(&self.id, true) {
                // Some runtimes refuse --force on a container that is still dying; wait and retry once.
                let _ = exec::wait_for_exit(self.host_pid, Duration::from_secs(5));
                let _ = self.runtime.delete(&self.id, true);
            }
        }
        self.remove_leftover_cgroups();
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(live) = &self.live {
            live.remove(&self.id);
        }
    }
}

impl Container {
    /// Some runtimes leave the container's cgroup behind after a failed `create` (crun 1.8 on v2
    /// does). The path is Palisade's own, so it is removed here, and the runtime's lapse is said.
    fn remove_leftover_cgroups(&self) {
        let Some(path) = &self.cgroups_path else {
            return;
        };
        let relative = path.strip_prefix("/").unwrap_or(path);
        for mount in crate::lab::cgroups::mount_points() {
            let dir = mount.join(relative);
            if dir.is_dir() && std::fs::remove_dir(&dir).is_ok() {
                eprintln!(
                    "palisade: note: `{}` left the cgroup {} of container {} behind; removed it",
                    self.runtime.info().name,
                    dir.display(),
                    self.id
                );
            }
        }
    }
}

/// Forwards each line the container prints to a channel; the thread ends when the pipe closes.
fn spawn_line_reader(reader: std::io::PipeReader) -> Receiver<String> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}
