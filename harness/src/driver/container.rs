//! One container under test: created through a driver, talked to through the probe.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oci_spec::runtime::State;
use palisade_common::mountinfo::{self, MountInfo};
use palisade_probe::protocol::FileRead;
use palisade_probe::{Reply, Request, Response};

use super::bundle::ContainerSpec;
use super::channel::{ProbeChannel, probe_pipes};
use super::{Driver, RuntimeError, Status};
use crate::error::HarnessError;

/// A created container. Dropping it kills and deletes it and removes its directory, whatever
/// happened.
pub struct Container {
    id: String,
    /// The container's own directory (the bundle, for an OCI runtime; its stderr log).
    dir: PathBuf,
    rootfs: Option<PathBuf>,
    write_layer: Option<PathBuf>,
    runtime: Arc<dyn Driver>,
    /// Known after `create` (OCI runtimes) or after `start` (engines).
    host_pid: std::sync::Mutex<Option<i32>>,
    /// The init probe's pipes.
    channel: ProbeChannel,
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
    /// `pause` succeeded and no `resume` since: dropping it thaws it first, since a frozen
    /// process acts on SIGKILL only once thawed.
    paused: std::sync::atomic::AtomicBool,
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
        std::fs::create_dir_all(dir).map_err(|source| HarnessError::Io {
            what: "creating the container's directory",
            source,
        })?;
        let (stdio, channel) = probe_pipes(id, &dir.join("stderr.log"), deadline)?;
        // From here on the directory is ours to remove, even if `create` fails half way.
        let mut container = Container {
            id: id.to_owned(),
            dir: dir.to_owned(),
            rootfs: None,
            write_layer: None,
            runtime,
            host_pid: std::sync::Mutex::new(None),
            channel,
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
            paused: std::sync::atomic::AtomicBool::new(false),
        };
        let created = container.runtime.create(id, spec, dir, stdio)?;
        container.set_host_pid(created.host_pid);
        container.rootfs = created.rootfs;
        container.write_layer = created.write_layer;
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

    /// The init's pid on the host, as the runtime wrote it to `--pid-file` (or the engine
    /// reported and the driver checked, once started). Never a made-up value: a pid that is not
    /// known is an error, so nothing is ever signalled by mistake.
    pub fn host_pid(&self) -> Result<i32, HarnessError> {
        self.known_pid().ok_or_else(|| HarnessError::Unsupported {
            what: format!(
                "the host pid of `{}` is not known (`{}` reports it only while the container runs)",
                self.id,
                self.runtime.info().name
            ),
        })
    }

    fn known_pid(&self) -> Option<i32> {
        self.host_pid.lock().ok().and_then(|pid| *pid)
    }

    fn set_host_pid(&self, pid: Option<i32>) {
        if let (Ok(mut slot), Some(pid)) = (self.host_pid.lock(), pid) {
            *slot = Some(pid);
        }
    }

    /// The container's root filesystem as the host sees it; a driver that cannot show it is an
    /// error for scenarios that need it.
    pub fn rootfs(&self) -> Result<&Path, HarnessError> {
        self.rootfs.as_deref().ok_or_else(|| HarnessError::Unsupported {
            what: if let Some(engine) = self.runtime.engine() {
                format!(
                    "{} keeps no bundle: the container's `/` is an overlay of its image (the image:: scenarios check it)",
                    engine.kind().name()
                )
            } else {
                format!(
                    "`{}` does not show the container's rootfs on the host",
                    self.runtime.info().name
                )
            },
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
        let (stdio, channel) = probe_pipes(
            &format!("{} (exec {n})", self.id),
            &self.dir.join(format!("exec-{n}.stderr.log")),
            self.deadline,
        )?;
        let init_pid = self.host_pid()?;
        let execed = self
            .runtime
            .exec(&self.id, init_pid, &process, &self.dir, stdio)?;
        Ok(super::exec::ExecProcess::new(
            channel, execed, init_pid, process,
        ))
    }

    /// Where a file the container writes under `/` lands, as the host sees it: the bundle's
    /// rootfs, or an engine's writable layer of this container (its overlay's upper directory).
    pub fn write_layer(&self) -> Result<&Path, HarnessError> {
        self.write_layer
            .as_deref()
            .ok_or_else(|| HarnessError::Unsupported {
                what: format!(
                    "`{}` does not show where the container's writes land on the host",
                    self.runtime.info().name
                ),
            })
    }

    pub fn start(&self) -> Result<(), HarnessError> {
        self.runtime.start(&self.id)?;
        if self.known_pid().is_none() {
            self.set_host_pid(self.runtime.started_pid(&self.id)?);
        }
        Ok(())
    }

    pub fn state(&self) -> Result<State, HarnessError> {
        Ok(self.runtime.state(&self.id)?)
    }

    /// The runtime's word on the container's status, `paused` included.
    pub fn status(&self) -> Result<Status, HarnessError> {
        Ok(self.runtime.status(&self.id)?)
    }

    pub fn kill(&self, signal: &str) -> Result<(), HarnessError> {
        Ok(self.runtime.kill(&self.id, signal)?)
    }

    /// Freezes every process of the container through the runtime's `pause`.
    pub fn pause(&self) -> Result<(), HarnessError> {
        self.runtime.pause(&self.id)?;
        self.paused
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Thaws the container through the runtime's `resume`.
    pub fn resume(&self) -> Result<(), HarnessError> {
        self.runtime.resume(&self.id)?;
        self.paused
            .store(false, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// The next response the init's probe prints, waiting at most until the scenario's deadline.
    pub fn response(&self) -> Result<Response, HarnessError> {
        self.channel.response()
    }

    /// The probe's next reply; a probe that reports an error is a harness error.
    pub fn reply(&self) -> Result<Reply, HarnessError> {
        self.channel.reply()
    }

    /// Sends one request to a probe in `serve` mode and returns its reply.
    pub fn ask(&mut self, request: &Request) -> Result<Reply, HarnessError> {
        self.channel.ask(request)
    }

    /// `path` as the container reads it. An unreadable file is an error, never an empty one:
    /// every fact a verdict rests on fails closed.
    pub fn read_file(&mut self, path: &str) -> Result<String, HarnessError> {
        let failed = |message: String| HarnessError::ProbeFailed {
            op: format!("read {path}"),
            message,
        };
        match self.ask(&Request::ReadFiles {
            paths: vec![path.to_owned()],
        })? {
            Reply::Files { files } => {
                match files.into_iter().next() {
                    Some(FileRead {
                        contents: Some(text),
                        ..
                    }) => Ok(text),
                    Some(FileRead { errno, .. }) => Err(failed(errno.unwrap_or_else(|| {
                        "the probe returned no contents and no error".to_owned()
                    }))),
                    None => Err(failed("the probe returned no file".to_owned())),
                }
            }
            other => Err(failed(format!("unexpected reply {other:?}"))),
        }
    }

    /// The container's mount table, as it reads its `/proc/self/mountinfo`.
    pub fn mountinfo(&mut self) -> Result<Vec<MountInfo>, HarnessError> {
        let text = self.read_file("/proc/self/mountinfo")?;
        mountinfo::parse(&text).map_err(|message| HarnessError::ProbeFailed {
            op: "parse the container's /proc/self/mountinfo".to_owned(),
            message: message.to_string(),
        })
    }

    /// Closes the probe's stdin (a `serve` probe then exits).
    pub fn close_stdin(&mut self) {
        self.channel.close_stdin();
    }

    /// Waits for the container's init to exit, at most until the scenario's deadline.
    pub fn wait_exit(&self) -> Result<(), HarnessError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        let pid = self.known_pid();
        if self.runtime.wait_stopped(&self.id, pid, left)? {
            Ok(())
        } else {
            Err(HarnessError::Timeout {
                what: format!(
                    "container `{}` (host pid {}) to exit",
                    self.id,
                    pid.map_or_else(|| "unknown".to_owned(), |p| p.to_string())
                ),
                after: left,
            })
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
        self.channel.stderr_tail()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.channel.close_stdin();
        if !self.deleted {
            if self.paused.load(std::sync::atomic::Ordering::Relaxed) {
                // Runtimes thaw on `delete --force`, but not all of them on `kill`; an engine
                // may do neither.
                let _ = self.runtime.resume(&self.id);
            }
            let _ = self.runtime.kill(&self.id, "KILL");
            if let Err(RuntimeError::Failed { .. }) = self.runtime.delete(&self.id, true) {
                // Some runtimes refuse --force on a container that is still dying; wait and retry once.
                let _ =
                    self.runtime
                        .wait_stopped(&self.id, self.known_pid(), Duration::from_secs(5));
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
