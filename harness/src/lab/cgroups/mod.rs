//! Where a container's cgroup is, and what the kernel's accounting says it used.
//!
//! The cgroup is found from `/proc/<pid>/cgroup` (runtimes differ in how they turn `cgroupsPath`
//! into directories, so the path is never assumed) and resolved against the mount points that
//! `/proc/self/mountinfo` gives each hierarchy. The version-specific files live behind
//! [`CgroupVersion`], chosen at run time from [`HostFacts::cgroup_mode`]: v1 (and the hybrid
//! layout, where every controller is on v1) in [`v1`], the unified hierarchy in [`v2`]. Whether a
//! cgroup is frozen (`pause`) is read in [`freezer`].

pub mod freezer;
pub mod v1;
pub mod v2;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::lab::host::{CgroupMode, HostFacts};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup mode {0} is not one Palisade can measure")]
    UnknownMode(CgroupMode),
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} does not look like the kernel's format: {problem}", path.display())]
    Format { path: PathBuf, problem: String },
    #[error("no mounted cgroup hierarchy holds the `{0}` controller")]
    NoHierarchy(String),
    #[error("process {pid} is in no `{controller}` cgroup (per /proc/{pid}/cgroup)")]
    NotMember { pid: i32, controller: String },
    #[error("cgroup path {path} is outside the `{controller}` mount's root {root}")]
    OutsideMount {
        controller: String,
        path: String,
        root: String,
    },
}

/// A cgroup hierarchy as mounted here: which controllers, the mount's root within the hierarchy
/// (not `/` inside a cgroup namespace, or for a bind mount), and where it is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// v1: the controllers bound to it (`cpu`, `cpuacct`, `name=systemd`); v2: empty.
    pub controllers: Vec<String>,
    pub root: String,
    pub mount_point: PathBuf,
    pub unified: bool,
}

impl Hierarchy {
    /// The directory of cgroup `path` (as `/proc/<pid>/cgroup` writes it) in this hierarchy.
    pub fn dir_of(&self, path: &str) -> Result<PathBuf, CgroupError> {
        let outside = || CgroupError::OutsideMount {
            controller: self.name(),
            path: path.to_owned(),
            root: self.root.clone(),
        };
        let rel = Path::new(path)
            .strip_prefix(&self.root)
            .map_err(|_| outside())?;
        Ok(self.mount_point.join(rel))
    }

    pub fn name(&self) -> String {
        if self.unified {
            "unified".to_owned()
        } else {
            self.controllers.join(",")
        }
    }
}

/// The mount points of every cgroup hierarchy (v1 controllers and the unified one), whatever
/// their controllers: where cleanup looks for cgroups by name.
pub fn mount_points() -> Vec<PathBuf> {
    palisade_common::mountinfo::read("self")
        .map(|mounts| {
            mounts
                .into_iter()
                .filter(|m| m.fs_type == "cgroup" || m.fs_type == "cgroup2")
                .map(|m| m.mount_point)
                .collect()
        })
        .unwrap_or_default()
}

/// Every cgroup hierarchy mounted in this mount namespace, from `/proc/self/mountinfo`.
pub fn hierarchies() -> Result<Vec<Hierarchy>, CgroupError> {
    let read = |path: &str| {
        std::fs::read_to_string(path).map_err(|source| CgroupError::Read {
            path: path.into(),
            source,
        })
    };
    let known = known_controllers(&read("/proc/cgroups")?);
    let mounts =
        palisade_common::mountinfo::read("self").map_err(|problem| CgroupError::Format {
            path: "/proc/self/mountinfo".into(),
            problem,
        })?;
    Ok(mounts
        .iter()
        .filter_map(|mount| hierarchy_of(mount, &known))
        .collect())
}

/// The controller names the kernel knows (first column of `/proc/cgroups`).
pub fn known_controllers(proc_cgroups: &str) -> Vec<String> {
    proc_cgroups
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// A mount's hierarchy: v1 controllers are the super options that name a known controller (the
/// others are flags like `rw`, `xattr`, `clone_children`), plus a named hierarchy's `name=`.
pub fn hierarchy_of(mount: &procfs::process::MountInfo, known: &[String]) -> Option<Hierarchy> {
    let unified = match mount.fs_type.as_str() {
        "cgroup2" => true,
        "cgroup" => false,
        _ => return None,
    };
    let mut controllers: Vec<String> = if unified {
        Vec::new()
    } else {
        mount
            .super_options
            .iter()
            .filter_map(|(key, value)| match (key.as_str(), value) {
                ("name", Some(name)) => Some(format!("name={name}")),
                (key, None) if known.iter().any(|k| k == key) => Some(key.to_owned()),
                _ => None,
            })
            .collect()
    };
    controllers.sort();
    Some(Hierarchy {
        controllers,
        root: mount.root.clone(),
        mount_point: mount.mount_point.clone(),
        unified,
    })
}

/// `/proc/<pid>/cgroup` as a map: controller (`cpu`, `name=systemd`; `""` for the unified
/// hierarchy) to the cgroup path. Co-mounted controllers (`cpu,cpuacct`) each get an entry.
pub fn memberships(pid: i32) -> Result<BTreeMap<String, String>, CgroupError> {
    let path = PathBuf::from(format!("/proc/{pid}/cgroup"));
    let groups = procfs::process::Process::new(pid)
        .and_then(|p| p.cgroups())
        .map_err(|e| CgroupError::Read {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
    let mut map = BTreeMap::new();
    for group in groups {
        if group.controllers.is_empty() {
            map.insert(String::new(), group.pathname.clone());
        }
        for controller in &group.controllers {
            map.insert(controller.clone(), group.pathname.clone());
        }
    }
    Ok(map)
}

/// CPU counters of one cgroup at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSample {
    /// CPU time used by every task in the cgroup since it was created.
    pub usage: Duration,
    /// Bandwidth-control counters: `None` where the kernel does not report them (v2 without the
    /// cpu controller enabled for the cgroup).
    pub nr_periods: Option<u64>,
    pub nr_throttled: Option<u64>,
    pub throttled: Option<Duration>,
}

/// Where one cgroup's CPU counters are; [`CpuCounters::read`] samples them.
#[derive(Debug, Clone)]
pub struct CpuCounters {
    /// The cgroup path, as `/proc/<pid>/cgroup` shows it.
    pub path: String,
    pub(crate) files: CpuFiles,
}

#[derive(Debug, Clone)]
pub(crate) enum CpuFiles {
    V1 { cpuacct: PathBuf, cpu: PathBuf },
    V2 { dir: PathBuf },
}

impl CpuCounters {
    pub fn read(&self) -> Result<CpuSample, CgroupError> {
        match &self.files {
            CpuFiles::V1 { cpuacct, cpu } => v1::read_cpu(cpuacct, cpu),
            CpuFiles::V2 { dir } => v2::read_cpu(dir),
        }
    }
}

/// What changed in a cgroup's CPU counters over a measurement window.
#[derive(Debug, Clone, Copy)]
pub struct CpuWindow {
    /// Wall time from just before the first read to just after the last: an upper bound on the
    /// interval the usage was accrued in, so fractions are never overstated.
    pub wall: Duration,
    pub usage: Duration,
    pub periods: Option<u64>,
    pub throttled_periods: Option<u64>,
    pub throttled: Option<Duration>,
}

impl CpuWindow {
    /// Average CPUs used over the window (0.3 = 30 % of one CPU).
    pub fn cpus(&self) -> f64 {
        self.usage.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }
}

/// The measurement window every CPU check uses: ten CFS periods of 100 ms.
pub const WINDOW: Duration = Duration::from_secs(1);

/// Samples every cgroup, lets `window` of wall time pass, samples again. This wait IS the
/// measurement (usage over an interval), not a sleep to synchronise with anything.
pub fn measure(counters: &[&CpuCounters], window: Duration) -> Result<Vec<CpuWindow>, CgroupError> {
    let t0 = Instant::now();
    let before = counters
        .iter()
        .map(|c| c.read())
        .collect::<Result<Vec<_>, _>>()?;
    let end = t0 + window;
    measurement_window(end);
    let after = counters
        .iter()
        .map(|c| c.read())
        .collect::<Result<Vec<_>, _>>()?;
    let wall = t0.elapsed();
    let delta = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?));
    Ok(before
        .iter()
        .zip(&after)
        .map(|(b, a)| CpuWindow {
            wall,
            usage: a.usage.saturating_sub(b.usage),
            periods: delta(b.nr_periods, a.nr_periods),
            throttled_periods: delta(b.nr_throttled, a.nr_throttled),
            throttled: match (b.throttled, a.throttled) {
                (Some(b), Some(a)) => Some(a.saturating_sub(b)),
                _ => None,
            },
        })
        .collect())
}

/// Lets wall time pass until `end`: the measurement interval itself.
fn measurement_window(end: Instant) {
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left);
    }
}

/// The most CPU time a cgroup with `quota` per `period` can be charged over `wall`, and why:
/// - `wall / period` periods' worth of quota;
/// - plus one period's quota: the window is not aligned with the periods, so the two it cuts can
///   each have spent their whole quota inside it;
/// - plus, per CPU, one bandwidth slice (`sched_cfs_bandwidth_slice_us`, runtime a CPU takes from
///   the pool ahead of use and may carry into the next period) and 10 ms (a scheduler tick at
///   HZ=100 or more: the overrun before the throttle takes effect; it is paid back in the next
///   period, so it does not accumulate).
pub fn quota_allowance(quota: Duration, period: Duration, wall: Duration, cpus: u32) -> Duration {
    let periods = wall.as_secs_f64() / period.as_secs_f64();
    let jitter = (bandwidth_slice() + Duration::from_millis(10)) * cpus;
    quota.mul_f64(periods) + quota + jitter
}

/// The kernel's CFS bandwidth slice (5 ms unless tuned).
pub fn bandwidth_slice() -> Duration {
    std::fs::read_to_string("/proc/sys/kernel/sched_cfs_bandwidth_slice_us")
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .map(Duration::from_micros)
        .unwrap_or(Duration::from_millis(5))
}

/// The CPUs this process may run on (what a burner can use at most).
pub fn online_cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// The cgroup version in use here, behind one interface.
pub trait CgroupVersion: Send + Sync {
    /// `v1` or `v2`.
    fn name(&self) -> &'static str;
    /// The hierarchies a container must be placed in, by controller (`unified` on v2).
    fn placement_controllers(&self) -> Vec<String>;
    /// Where cgroup `path` lives (whether or not it exists) in the hierarchy of `controller`.
    fn dir(&self, controller: &str, path: &str) -> Result<PathBuf, CgroupError>;
    /// The cgroup of process `pid` in the hierarchy of `controller` (per `/proc/<pid>/cgroup`).
    fn cgroup_of(&self, pid: i32, controller: &str) -> Result<String, CgroupError>;
    /// The CPU counters of process `pid`'s cgroup.
    fn cpu_counters(&self, pid: i32) -> Result<CpuCounters, CgroupError>;
    /// Creates cgroup `path` (if needed) with a raised CPU weight, so load elsewhere on the host
    /// does not starve what runs below it. Only the quotas under test cap it.
    fn favour(&self, path: &str) -> Result<(), CgroupError>;
}

/// The implementation for this host's cgroup mode.
pub fn for_host(host: &HostFacts) -> Result<Box<dyn CgroupVersion>, CgroupError> {
    match host.cgroup_mode {
        // Hybrid hosts keep every controller on v1; the unified mount only tracks processes.
        CgroupMode::V1 | CgroupMode::Hybrid => Ok(Box::new(v1::V1::detect()?)),
        CgroupMode::V2 => Ok(Box::new(v2::V2::detect()?)),
        CgroupMode::Unknown => Err(CgroupError::UnknownMode(host.cgroup_mode)),
    }
}

fn read_file(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_owned(),
        source,
    })
}

fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_owned(),
        source,
    })
}

fn create_dir(path: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(CgroupError::Write {
            path: path.to_owned(),
            source,
        }),
    }
}

/// `key value` lines (`cpu.stat`) as a map.
pub fn parse_flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let key = parts.next()?;
            let value = parts.next()?.parse().ok()?;
            Some((key.to_owned(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memberships_list_every_controller_of_this_process() {
        let map = memberships(std::process::id() as i32).expect("reads /proc/self/cgroup");
        assert!(!map.is_empty());
        assert!(map.values().all(|path| path.starts_with('/')), "{map:?}");
    }

    fn mount(line: &str) -> procfs::process::MountInfo {
        procfs::process::MountInfo::from_line(line).expect("mountinfo line")
    }

    #[test]
    fn controllers_come_from_super_options() {
        let known: Vec<String> = ["cpu", "cpuacct", "memory"].map(String::from).to_vec();
        let co = hierarchy_of(
            &mount("32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct,clone_children"),
            &known,
        )
        .expect("cgroup");
        assert_eq!(co.controllers, ["cpu", "cpuacct"]);
        let named = hierarchy_of(
            &mount("40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd"),
            &known,
        )
        .expect("cgroup");
        assert_eq!(named.controllers, ["name=systemd"]);
        let unified = hierarchy_of(
            &mount("41 31 0:38 /sub /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate"),
            &known,
        )
        .expect("cgroup2");
        assert!(unified.unified);
        assert_eq!(
            unified.dir_of("/sub/a/b").expect("inside"),
            Path::new("/sys/fs/cgroup/a/b")
        );
        assert!(unified.dir_of("/other").is_err());
        assert!(hierarchy_of(&mount("1 0 0:1 / /tmp rw - tmpfs tmpfs rw"), &known).is_none());
    }

    #[test]
    fn allowance_is_quota_share_plus_one_period_plus_per_cpu_jitter() {
        let ms = Duration::from_millis;
        let allowed = quota_allowance(ms(30), ms(100), Duration::from_secs(1), 2);
        let jitter = (bandwidth_slice() + ms(10)) * 2;
        assert_eq!(allowed, ms(300) + ms(30) + jitter);
    }
}
