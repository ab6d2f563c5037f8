//! Cgroups behind one trait; the v1 or v2 implementation is chosen at run time from the statfs
//! magic of /sys/fs/cgroup.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, statfs};
use procfs::process::MountInfo;
use serde::{Deserialize, Serialize};

use crate::spec::Resources;

pub mod devices;
mod freezer;
mod v1;
mod v2;

pub use freezer::Freezer;

pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot detect the cgroup layout: {0}")]
    Detect(String),
    #[error("cannot create cgroup {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: std::io::Error,
    },
    #[error("cannot remove cgroup {path}: {source}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} did not reach {want} within {timeout:?} (it is {have:?})")]
    Freeze {
        path: PathBuf,
        want: &'static str,
        have: String,
        timeout: Duration,
    },
    /// A field of config.json this host's cgroups cannot apply (or failed to apply), by name.
    #[error("{field}: {reason}")]
    Refused { field: String, reason: String },
    /// Loading or attaching the device cgroup's BPF program (cgroup v2).
    #[error("linux.resources.devices: {what}: {source}{log}")]
    Bpf {
        what: &'static str,
        source: nix::errno::Errno,
        /// The verifier's log, if it had something to say (starts with a newline).
        log: String,
    },
}

pub(crate) fn refused(field: &str, reason: impl Into<String>) -> CgroupError {
    CgroupError::Refused {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// One value for one cgroup interface file, and the config field it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The field of config.json, named in errors (`linux.resources.memory.limit`).
    pub field: String,
    /// The controller owning the file (`cgroup` for core files).
    pub controller: String,
    /// (file, value): the first whose file exists is written (kernels name some files
    /// differently, e.g. `blkio.weight` and `blkio.bfq.weight`).
    pub choices: Vec<(String, String)>,
    /// A companion write skipped when no file exists (e.g. the hugetlb reservation limit).
    pub if_present: bool,
    /// Read back after writing: refused if the kernel took the value but does not enforce it.
    pub verify: bool,
}

impl Write {
    pub fn new(field: &str, controller: &str, file: &str, value: impl ToString) -> Self {
        Self {
            field: field.to_owned(),
            controller: controller.to_owned(),
            choices: vec![(file.to_owned(), value.to_string())],
            if_present: false,
            verify: false,
        }
    }

    /// Another file to write if the ones before do not exist.
    pub fn or(mut self, file: &str, value: impl ToString) -> Self {
        self.choices.push((file.to_owned(), value.to_string()));
        self
    }

    pub fn if_present(mut self) -> Self {
        self.if_present = true;
        self
    }

    pub fn verified(mut self) -> Self {
        self.verify = true;
        self
    }

    /// Writes it into the cgroup directory `dir`.
    pub fn apply(&self, dir: &Path) -> Result<(), CgroupError> {
        let Some((file, value)) = self.choices.iter().find(|(f, _)| dir.join(f).exists()) else {
            if self.if_present {
                return Ok(());
            }
            let names: Vec<&str> = self.choices.iter().map(|(f, _)| f.as_str()).collect();
            return Err(refused(
                &self.field,
                format!(
                    "this kernel has no {} (in {})",
                    names.join(" or "),
                    dir.display()
                ),
            ));
        };
        write(dir, file, value).map_err(|e| refused(&self.field, e.to_string()))?;
        if self.verify {
            verify(dir, file, value).map_err(|reason| refused(&self.field, reason))?;
        }
        Ok(())
    }
}

/// `cpu.cpus` and `cpu.mems`: the same cpuset files on v1 and v2.
pub(crate) fn cpuset_writes(c: &crate::spec::Cpu) -> Vec<Write> {
    const R: &str = "linux.resources.cpu";
    let cpus = c
        .cpus
        .as_ref()
        .map(|cpus| Write::new(&format!("{R}.cpus"), "cpuset", "cpuset.cpus", cpus));
    let mems = c
        .mems
        .as_ref()
        .map(|mems| Write::new(&format!("{R}.mems"), "cpuset", "cpuset.mems", mems));
    cpus.into_iter().chain(mems).collect()
}

/// A line of `rdma.max` (same on v1 and v2); an absent limit is "max".
pub(crate) fn rdma_line(r: &crate::spec::Rdma) -> String {
    let n = |v: Option<u32>| v.map_or_else(|| "max".to_owned(), |v| v.to_string());
    format!(
        "{} hca_handle={} hca_object={}",
        r.device,
        n(r.hca_handles),
        n(r.hca_objects)
    )
}

/// The value in `file` is the byte count just written, give or take the kernel's rounding down
/// to a page (some v1 files accept any value and ignore it, e.g. kmem.limit_in_bytes since 5.16).
fn verify(dir: &Path, file: &str, value: &str) -> Result<(), String> {
    let Ok(wanted) = value.parse::<u64>() else {
        return Ok(());
    };
    let text = std::fs::read_to_string(dir.join(file))
        .map_err(|e| format!("cannot read back {file}: {e}"))?;
    let page = 4096;
    match text.trim().parse::<u64>() {
        Ok(seen) if seen <= wanted && wanted - seen < page => Ok(()),
        _ => Err(format!(
            "this kernel accepts {file} but does not enforce it (wrote {wanted}, it reads {})",
            text.trim()
        )),
    }
}

/// What `delete` needs to undo, persisted in state.json.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CgroupRecord {
    /// The container's cgroup directory in every hierarchy it was placed in.
    pub paths: Vec<PathBuf>,
    /// Directories this runtime created (parents before children), so empty parents it made can
    /// be removed too while pre-existing ones are left alone.
    pub created: Vec<PathBuf>,
    /// How `pause` freezes the container (absent in the state of containers created before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freezer: Option<Freezer>,
}

/// One mounted cgroup v1 hierarchy.
#[derive(Debug, Clone)]
pub struct Hierarchy {
    pub mountpoint: PathBuf,
    /// Controllers and `name=` options of the mount (e.g. `["cpu"]`, `["name=systemd"]`).
    pub options: Vec<String>,
}

impl Hierarchy {
    pub fn has(&self, controller: &str) -> bool {
        self.options.iter().any(|o| o == controller)
    }
}

#[derive(Debug, Clone)]
pub enum Layout {
    /// Pure cgroup v2 at /sys/fs/cgroup.
    V2,
    /// cgroup v1 hierarchies, plus the unified (v2) mount of a hybrid setup if there is one.
    V1 {
        hierarchies: Vec<Hierarchy>,
        unified: Option<PathBuf>,
    },
}

pub trait CgroupManager {
    /// Creates the cgroup directories and applies the resource limits.
    fn create(&mut self, resources: &Resources) -> Result<(), CgroupError>;
    /// What to persist for `delete`: the container's directories and the parents created.
    fn record(&self) -> &CgroupRecord;
    /// Moves a process into the cgroup in every hierarchy.
    fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        let pid = pid.to_string();
        for dir in &self.record().paths {
            write(dir, "cgroup.procs", &pid)?;
        }
        Ok(())
    }
}

pub fn detect() -> Result<Layout, CgroupError> {
    let st = statfs(CGROUP_ROOT)
        .map_err(|e| CgroupError::Detect(format!("statfs {CGROUP_ROOT}: {e}")))?;
    if st.filesystem_type() == CGROUP2_SUPER_MAGIC {
        return Ok(Layout::V2);
    }
    let mounts =
        crate::mountinfo::own().map_err(|e| CgroupError::Detect(format!("read mountinfo: {e}")))?;
    v1_layout(&mounts)
}

/// The v1 hierarchies (and the unified mount) under /sys/fs/cgroup.
fn v1_layout(mounts: &[MountInfo]) -> Result<Layout, CgroupError> {
    let mut hierarchies: Vec<Hierarchy> = Vec::new();
    let mut unified = None;
    for m in mounts {
        if !m.mount_point.starts_with(CGROUP_ROOT) {
            continue;
        }
        match m.fs_type.as_str() {
            "cgroup2" => unified = Some(m.mount_point.clone()),
            "cgroup" => {
                let mut options: Vec<String> = m
                    .super_options
                    .iter()
                    .filter(|(k, _)| {
                        !matches!(
                            k.as_str(),
                            "rw" | "ro" | "clone_children" | "noprefix" | "xattr" | "release_agent"
                        )
                    })
                    .map(|(k, v)| match v {
                        Some(v) => format!("{k}={v}"),
                        None => k.clone(),
                    })
                    .collect();
                // procfs hands the options over as a map: sorted, they compare and print the same
                // every time.
                options.sort();
                // The same hierarchy can be mounted twice; one placement is enough.
                if !hierarchies.iter().any(|h| h.options == options) {
                    hierarchies.push(Hierarchy {
                        mountpoint: m.mount_point.clone(),
                        options,
                    });
                }
            }
            _ => {}
        }
    }
    if hierarchies.is_empty() {
        return Err(CgroupError::Detect(
            "no cgroup hierarchy mounted under /sys/fs/cgroup".into(),
        ));
    }
    Ok(Layout::V1 {
        hierarchies,
        unified,
    })
}

/// Picks the implementation for `layout`.
pub fn manager(layout: &Layout, path: &Path) -> Box<dyn CgroupManager> {
    match layout {
        Layout::V2 => Box::new(v2::V2Manager::new(Path::new(CGROUP_ROOT), path)),
        Layout::V1 {
            hierarchies,
            unified,
        } => Box::new(v1::V1Manager::new(
            hierarchies.clone(),
            unified.clone(),
            path,
        )),
    }
}

pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    std::fs::write(&path, value).map_err(|source| CgroupError::Write {
        path,
        value: value.to_owned(),
        source,
    })
}

/// mkdir -p of `rel` under `base`, recording what it created.
pub(crate) fn mkdir_p(
    base: &Path,
    rel: &Path,
    created: &mut Vec<PathBuf>,
) -> Result<PathBuf, CgroupError> {
    let mut dir = base.to_path_buf();
    for comp in rel
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
    {
        dir.push(comp);
        match std::fs::create_dir(&dir) {
            Ok(()) => created.push(dir.clone()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(source) => return Err(CgroupError::Create { path: dir, source }),
        }
    }
    Ok(dir)
}

/// Moves `pid` into the container's cgroup in every hierarchy it was placed in (`exec`).
pub fn enter(record: &CgroupRecord, pid: i32) -> Result<(), CgroupError> {
    let pid = pid.to_string();
    for dir in &record.paths {
        write(dir, "cgroup.procs", &pid)?;
    }
    Ok(())
}

/// Pids in the container's cgroup (any hierarchy).
pub fn pids(record: &CgroupRecord) -> Vec<i32> {
    let mut pids: Vec<i32> = record
        .paths
        .iter()
        .filter_map(|p| std::fs::read_to_string(p.join("cgroup.procs")).ok())
        .flat_map(|s| {
            s.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

pub fn signal_all(record: &CgroupRecord, sig: Signal) {
    for pid in pids(record) {
        // The process may exit between listing and signalling; that is fine.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// Removes the container's cgroups and the empty parents this runtime created.
pub fn destroy(record: &CgroupRecord) -> Result<(), CgroupError> {
    for path in &record.paths {
        rmdir_retry(path)?;
    }
    for dir in record.created.iter().rev() {
        // Parents may be shared with other containers (ENOTEMPTY/EBUSY): leave them.
        let _ = std::fs::remove_dir(dir);
    }
    Ok(())
}

/// A cgroup whose last task just died can stay busy for a moment, so EBUSY is retried briefly.
fn rmdir_retry(path: &Path) -> Result<(), CgroupError> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: path.to_owned(),
                    source,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mountinfo::parse;

    #[test]
    fn v1_hierarchies_and_the_unified_mount() {
        let mounts = [
            parse("25 1 0:22 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755"),
            parse(
                "26 25 0:23 / /sys/fs/cgroup/unified rw shared:10 - cgroup2 cgroup2 rw,nsdelegate",
            ),
            parse(
                "27 25 0:24 / /sys/fs/cgroup/systemd rw shared:11 - cgroup cgroup rw,xattr,name=systemd",
            ),
            parse(
                "30 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw shared:14 - cgroup cgroup rw,cpuacct,cpu",
            ),
            parse(
                "31 25 0:28 / /sys/fs/cgroup/cpuset rw shared:15 - cgroup cgroup rw,cpuset,clone_children",
            ),
            // The same hierarchy again, elsewhere below the root: placed once.
            parse("40 25 0:27 / /sys/fs/cgroup/cpu\\040again rw - cgroup cgroup rw,cpu,cpuacct"),
            // Not below /sys/fs/cgroup.
            parse("41 1 0:29 / /mnt/cg rw - cgroup cgroup rw,memory"),
        ];
        let Layout::V1 {
            hierarchies,
            unified,
        } = v1_layout(&mounts).expect("a v1 layout")
        else {
            panic!("expected v1");
        };
        assert_eq!(unified, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let found: Vec<(String, Vec<String>)> = hierarchies
            .iter()
            .map(|h| (h.mountpoint.display().to_string(), h.options.clone()))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "/sys/fs/cgroup/systemd".to_owned(),
                    vec!["name=systemd".to_owned()]
                ),
                (
                    "/sys/fs/cgroup/cpu,cpuacct".to_owned(),
                    vec!["cpu".to_owned(), "cpuacct".to_owned()]
                ),
                (
                    "/sys/fs/cgroup/cpuset".to_owned(),
                    vec!["cpuset".to_owned()]
                ),
            ]
        );
        assert!(hierarchies[1].has("cpuacct"));
    }

    #[test]
    fn no_hierarchy_is_an_error() {
        let mounts = [parse("22 1 0:21 / /sys rw,nosuid - sysfs sysfs rw")];
        assert!(matches!(v1_layout(&mounts), Err(CgroupError::Detect(_))));
    }
}
