//! One run of the suite: its id, its directory, the host facts and the runtimes under test.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::driver::Driver;
use crate::driver::oci::{FindRuntimeError, Materials, OciCli};
use crate::engine::driver::{Endpoint, EngineDriver, EngineOptions};
use crate::lab::host::HostFacts;

/// Every file, cgroup, namespace and container id of a run starts with this, then the run id.
pub const PREFIX: &str = "palisade-";

/// How long one runtime verb may take before it is declared hung.
pub fn runtime_timeout() -> Duration {
    env_secs("PALISADE_RUNTIME_TIMEOUT", 10)
}

/// How long one scenario may take in all.
pub fn scenario_timeout() -> Duration {
    env_secs("PALISADE_SCENARIO_TIMEOUT", 30)
}

fn env_secs(var: &str, default: u64) -> Duration {
    let secs = std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Duration::from_secs(secs)
}

/// What a run leaves in its directory so `palisade cleanup` can undo a run that was killed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    /// The palisade process and its start time (clock ticks), to tell a live run from a dead one.
    pub owner_pid: i32,
    pub owner_start: u64,
    /// Each runtime used, with its `--root` state directory.
    pub runtimes: Vec<RuntimeRecord>,
    /// Each engine used. A Palisade-owned one lives in the run directory and its lab host;
    /// an operator's is reached through its socket to remove what the run made there.
    #[serde(default)]
    pub engines: Vec<EngineRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineRecord {
    /// `docker` or `podman`.
    pub engine: String,
    /// The operator's daemon socket; `None` for an engine Palisade started.
    pub socket: Option<PathBuf>,
    /// The probe image's reference.
    pub image: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuntimeRecord {
    pub path: PathBuf,
    pub root: PathBuf,
}

pub const RECORD_FILE: &str = "run.json";

/// The name the bundled runtime answers to.
pub const BUNDLED_RUNTIME: &str = "palisade-runtime";

/// A hard link of `from` at `to` (same filesystem, no copy), or a copy.
fn link_or_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    match fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(e),
        Err(_) => fs::copy(from, to).map(drop),
    }
}

/// The run's shared environment, handed to every scenario.
pub struct RunEnv {
    pub id: String,
    pub dir: PathBuf,
    pub host: HostFacts,
    /// The run's copy of the probe, hard-linked into every rootfs.
    pub probe: PathBuf,
    /// Every container that exists right now.
    pub live: Arc<crate::run::live::Live>,
    record: std::sync::Mutex<RunRecord>,
    /// The engines set up for this run, stopped at its end.
    engines: std::sync::Mutex<Vec<Arc<EngineDriver>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunSetupError {
    #[error("creating the run directory {}: {source}", path.display())]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the probe binary {} is missing ({source}); build it with `cargo build --bin palisade-probe`", path.display())]
    Probe {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Runtime(#[from] FindRuntimeError),
    #[error("engine `{name}`: {source}")]
    Engine {
        name: String,
        source: Box<crate::engine::EngineError>,
    },
}

impl RunEnv {
    /// Creates `<tmp>/palisade-<run id>/` with a copy of the probe.
    ///
    /// The directory appears under its final name only once it holds its record (the owner's pid
    /// and start time): a run starting at the same moment never mistakes it for a dead run's.
    /// Nothing is left behind when setting up fails. What dead runs left is removed first. The run is registered with the interrupt
    /// handler ([`crate::run::interrupt`]) until [`crate::run::orchestrate::end_run`].
    pub fn new(probe: &Path) -> Result<Arc<RunEnv>, RunSetupError> {
        crate::run::orchestrate::sweep_dead_runs();
        Self::new_in(&std::env::temp_dir(), probe)
    }

    /// [`RunEnv::new`] with the run directory under `tmp`, without the sweep.
    pub fn new_in(tmp: &Path, probe: &Path) -> Result<Arc<RunEnv>, RunSetupError> {
        let id = new_run_id();
        let dir = tmp.join(format!("{PREFIX}{id}"));
        let staging = tmp.join(format!(".{PREFIX}{id}-starting"));
        let dir_err = |path: &Path| {
            let path = path.to_owned();
            move |source| RunSetupError::Dir { path, source }
        };
        fs::create_dir_all(&staging).map_err(dir_err(&staging))?;
        let record = RunRecord {
            run_id: id.clone(),
            owner_pid: std::process::id() as i32,
            owner_start: own_start_time(),
            runtimes: Vec::new(),
            engines: Vec::new(),
        };
        let staged = link_or_copy(probe, &staging.join("palisade-probe"))
            .map_err(|source| RunSetupError::Probe {
                path: probe.to_owned(),
                source,
            })
            .and_then(|_| {
                let json = serde_json::to_string_pretty(&record)
                    .map_err(|e| std::io::Error::other(e.to_string()));
                json.and_then(|json| fs::write(staging.join(RECORD_FILE), json))
                    .and_then(|()| fs::rename(&staging, &dir))
                    .map_err(dir_err(&dir))
            });
        if let Err(e) = staged {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
        let env = Arc::new(RunEnv {
            probe: dir.join("palisade-probe"),
            id,
            dir,
            host: HostFacts::detect(),
            live: Arc::default(),
            record: record.into(),
            engines: Default::default(),
        });
        crate::run::interrupt::register(&env);
        Ok(env)
    }

    /// Places the bundled runtime in the run's directory as `palisade-runtime` (a binary that
    /// answers to that name: the runtime itself, or the single `palisade` binary, which dispatches
    /// on its name). From then on the name `palisade-runtime`, unless a program of that name is on
    /// PATH, means this one.
    pub fn add_bundled_runtime(&self, source: &Path) -> Result<(), RunSetupError> {
        let target = self.dir.join(BUNDLED_RUNTIME);
        link_or_copy(source, &target).map_err(|source| RunSetupError::Dir {
            path: target,
            source,
        })
    }

    /// Sets up the driver for one runtime, with a state directory of its own inside the run.
    pub fn runtime(&self, name_or_path: &str) -> Result<Arc<dyn Driver>, RunSetupError> {
        let bundled = self.dir.join(BUNDLED_RUNTIME);
        let name_or_path = if name_or_path == BUNDLED_RUNTIME
            && crate::exec::find_program(BUNDLED_RUNTIME).is_none()
            && bundled.is_file()
        {
            bundled.to_str().unwrap_or(name_or_path)
        } else {
            name_or_path
        };
        let slot = self.record.lock().map(|r| r.runtimes.len()).unwrap_or(0);
        let root = self.dir.join(format!("state-{slot}"));
        let driver =
            OciCli::new(name_or_path, &root, runtime_timeout())?.with_materials(Materials {
                probe: self.probe.clone(),
                os_release: crate::driver::bundle::os_release(&self.id),
            });
        if let Ok(mut record) = self.record.lock() {
            record.runtimes.push(RuntimeRecord {
                path: driver.info().path.clone(),
                root,
            });
        }
        self.save_record();
        Ok(Arc::new(driver))
    }

    /// Sets up an engine (its daemon, lab host and the probe image) as a driver of this run. It
    /// is recorded first, so `palisade cleanup` finds what a run killed during setup made.
    pub fn engine(&self, options: &EngineOptions) -> Result<Arc<dyn Driver>, RunSetupError> {
        if let Ok(mut record) = self.record.lock() {
            record.engines.push(EngineRecord {
                engine: options.choice.kind.name().to_owned(),
                socket: match &options.endpoint {
                    Endpoint::Socket(path) => Some(path.clone()),
                    Endpoint::Owned => None,
                },
                image: crate::engine::image::reference(&self.id),
            });
        }
        self.save_record();
        let name = match &options.choice.runtime {
            Some(runtime) => format!("{}:{runtime}", options.choice.kind.name()),
            None => options.choice.kind.name().to_owned(),
        };
        let driver =
            EngineDriver::setup(self, options).map_err(|source| RunSetupError::Engine {
                name,
                source: Box::new(source),
            })?;
        let driver = driver.share();
        if let Ok(mut engines) = self.engines.lock() {
            engines.push(driver.clone());
        }
        Ok(driver)
    }

    /// What the run's scenarios left in its engines (containers, networks).
    pub fn engine_leftovers(&self) -> Vec<String> {
        let engines = self.engines.lock().map(|e| e.clone()).unwrap_or_default();
        engines.iter().flat_map(|e| e.leftovers()).collect()
    }

    /// Stops every engine of the run (removing what the run made in it); returns the problems.
    pub fn stop_engines(&self) -> Vec<String> {
        let engines = self
            .engines
            .lock()
            .map(|mut e| std::mem::take(&mut *e))
            .unwrap_or_default();
        engines
            .iter()
            .flat_map(|e| {
                e.shutdown()
                    .into_iter()
                    .map(move |p| format!("{}: {p}", e.info().name))
            })
            .collect()
    }

    pub fn record(&self) -> Option<RunRecord> {
        self.record.lock().ok().map(|r| r.clone())
    }

    fn save_record(&self) {
        if let Some(json) = self
            .record()
            .and_then(|r| serde_json::to_string_pretty(&r).ok())
        {
            // Written aside and renamed over: a `palisade cleanup` (or another run's sweep)
            // reading it meanwhile must never see a half-written record and take this live run
            // for a dead one.
            let staged = self.dir.join(format!(".{RECORD_FILE}.new"));
            if fs::write(&staged, json).is_ok() {
                let _ = fs::rename(&staged, self.dir.join(RECORD_FILE));
            }
        }
    }

    /// A name for something this run creates: `palisade-<run id>-<what>`.
    pub fn name(&self, what: &str) -> String {
        format!("{PREFIX}{}-{what}", self.id)
    }

    /// The cgroup every container of this run is placed under (`cgroupsPath` parent).
    pub fn cgroup_parent(&self) -> String {
        format!("/{PREFIX}{}", self.id)
    }
}

/// How many hex digits a run id has.
pub const RUN_ID_LEN: usize = 6;

/// The `palisade-<run id>` that starts the name of everything a run makes, if `name` has one.
/// Only such names are Palisade's to clean up: `palisade-runtime` (the bundled runtime's default
/// cgroup) or a user's `/tmp/palisade-notes` are not.
pub fn run_tag_of(name: &str) -> Option<&str> {
    let id = name.strip_prefix(PREFIX)?.get(..RUN_ID_LEN)?;
    let rest = &name[PREFIX.len() + RUN_ID_LEN..];
    let is_id = id
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    (is_id && (rest.is_empty() || rest.starts_with('-')))
        .then(|| &name[..PREFIX.len() + RUN_ID_LEN])
}

pub fn new_run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:06x}", (nanos ^ (std::process::id() << 12)) & 0xff_ffff)
}

/// The start time of a process in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
pub fn start_time(pid: i32) -> Option<u64> {
    procfs::process::Process::new(pid)
        .ok()?
        .stat()
        .ok()
        .map(|s| s.starttime)
}

fn own_start_time() -> u64 {
    start_time(std::process::id() as i32).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn a_run_that_cannot_start_leaves_nothing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let err = RunEnv::new_in(tmp.path(), Path::new("/nonexistent/palisade-probe"))
            .err()
            .expect("no probe, no run");
        assert!(err.to_string().contains("the probe binary"), "{err}");
        let left: Vec<_> = fs::read_dir(tmp.path()).expect("tmp").flatten().collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }

    #[test]
    fn a_run_directory_appears_with_its_record() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let probe = tmp.path().join("probe");
        fs::write(&probe, b"probe").expect("probe");
        let run = RunEnv::new_in(tmp.path(), &probe).expect("run");
        let record: RunRecord =
            serde_json::from_str(&fs::read_to_string(run.dir.join(RECORD_FILE)).expect("record"))
                .expect("a record");
        assert_eq!(record.owner_pid, std::process::id() as i32);
        crate::run::interrupt::unregister(&run);
    }

    #[rstest]
    #[case("palisade-0a1b2c", Some("palisade-0a1b2c"))]
    #[case("palisade-0a1b2c-net3-host", Some("palisade-0a1b2c"))]
    #[case("palisade-runtime", None)]
    #[case("palisade-0a1b2cd", None)]
    #[case("palisade-investigate", None)]
    #[case("palisade-0A1B2C", None)]
    #[case("pnet", None)]
    fn only_run_tags_are_ours(#[case] name: &str, #[case] tag: Option<&str>) {
        assert_eq!(run_tag_of(name), tag);
    }
}
