//! One container under test: created through the runtime driver, talked to through the probe.

use std::io::{BufRead, BufReader, PipeWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use oci_spec::runtime::{ContainerState, State};
use palisade_probe::{Reply, Request, Response};

use crate::bundle::Bundle;
use crate::driver::{ContainerStdio, RuntimeDriver, RuntimeError};
use crate::error::HarnessError;
use crate::exec;

/// A created container. Dropping it kills and deletes it and removes its bundle, whatever happened.
pub struct Container {
    id: String,
    bundle: Bundle,
    runtime: Arc<dyn RuntimeDriver>,
    host_pid: i32,
    stdin: Option<PipeWriter>,
    stdout: Receiver<String>,
    deadline: Instant,
    deleted: bool,
    /// The config's `cgroupsPath`: Palisade named it, so Palisade removes it if the runtime did not.
    cgroups_path: Option<PathBuf>,
}

impl Container {
    /// Runs the runtime's `create` on a written bundle. The probe is blocked until [`Container::start`].
    pub fn create(
        id: &str,
        bundle: Bundle,
        runtime: Arc<dyn RuntimeDriver>,
        deadline: Instant,
        cgroups_path: Option<PathBuf>,
    ) -> Result<Container, HarnessError> {
        let io_err = |what: &'static str| move |source| HarnessError::Io { what, source };
        let (stdin_reader, stdin_writer) =
            std::io::pipe().map_err(io_err("making the stdin pipe"))?;
        let (stdout_reader, stdout_writer) =
            std::io::pipe().map_err(io_err("making the stdout pipe"))?;
        let stderr = std::fs::File::options()
            .create(true)
            .append(true)
            .read(true)
            .open(bundle.dir.join("stderr.log"))
            .map_err(io_err("creating stderr.log"))?;
        let pid_file = bundle.dir.join("init.pid");
        let stdio = ContainerStdio {
            stdin: stdin_reader.into(),
            stdout: stdout_writer.into(),
            stderr,
        };
        let stdout = spawn_line_reader(stdout_reader);
        // From here on the bundle is ours to remove, even if `create` fails half way.
        let mut container = Container {
            id: id.to_owned(),
            bundle,
            runtime,
            host_pid: 0,
            stdin: Some(stdin_writer),
            stdout,
            deadline,
            deleted: false,
            cgroups_path,
        };
        container
            .runtime
            .create(id, &container.bundle.dir, &pid_file, stdio)?;
        container.host_pid = read_pid_file(&pid_file)?;
        Ok(container)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The init's pid on the host, as the runtime wrote it to `--pid-file`.
    pub fn host_pid(&self) -> i32 {
        self.host_pid
    }

    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    pub fn rootfs(&self) -> PathBuf {
        self.bundle.rootfs()
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
        let line = serde_json::to_string(request).map_err(|e| HarnessError::Io {
            what: "encoding a request",
            source: std::io::Error::other(e),
        })?;
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
        let text = std::fs::read_to_string(self.bundle.dir.join("stderr.log")).unwrap_or_default();
        crate::driver::error_summary(&text, 5)
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
        let _ = std::fs::remove_dir_all(&self.bundle.dir);
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
        for mount in crate::cgroups::mount_points() {
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

fn read_pid_file(path: &std::path::Path) -> Result<i32, HarnessError> {
    let text = std::fs::read_to_string(path).map_err(|_| HarnessError::NoPidFile {
        path: path.to_owned(),
    })?;
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|pid| *pid > 0)
        .ok_or_else(|| HarnessError::BadPidFile {
            path: path.to_owned(),
            text: text.clone(),
        })
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
