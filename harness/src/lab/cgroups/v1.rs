//! cgroup v1: one hierarchy per controller group, each with its own mount point.
//!
//! Usage is `cpuacct.usage` (ns) in the cpuacct hierarchy; bandwidth counters are `nr_periods`,
//! `nr_throttled` and `throttled_time` (ns) in the cpu hierarchy's `cpu.stat`. The two may be
//! mounted together (`cpu,cpuacct`) or apart (this project's dev host): the mount table decides.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{
    CgroupError, CgroupVersion, CpuCounters, CpuFiles, CpuSample, Hierarchy, create_dir,
    hierarchies, memberships, parse_flat_keyed, read_file, write_file,
};

/// The controllers whose placement the suite checks: CPU time and its accounting, memory, and the
/// task count limit.
pub const PLACEMENT: &[&str] = &["cpu", "cpuacct", "memory", "pids"];

/// `cpu.shares` of a favoured cgroup: 8 times a plain task's, enough to outweigh a few busy host
/// tasks, not so much that the host's own work (the runtime's commands included) stalls.
const FAVOURED_SHARES: u64 = 8 * 1024;

pub struct V1 {
    hierarchies: Vec<Hierarchy>,
}

impl V1 {
    pub fn detect() -> Result<V1, CgroupError> {
        let hierarchies = hierarchies()?.into_iter().filter(|h| !h.unified).collect();
        Ok(V1 { hierarchies })
    }

    fn hierarchy(&self, controller: &str) -> Result<&Hierarchy, CgroupError> {
        self.hierarchies
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
            .ok_or_else(|| CgroupError::NoHierarchy(controller.to_owned()))
    }

    fn dir_of_process(&self, pid: i32, controller: &str) -> Result<PathBuf, CgroupError> {
        let path = self.cgroup_of(pid, controller)?;
        self.hierarchy(controller)?.dir_of(&path)
    }
}

impl CgroupVersion for V1 {
    fn name(&self) -> &'static str {
        "v1"
    }

    fn placement_controllers(&self) -> Vec<String> {
        PLACEMENT.iter().map(|c| (*c).to_owned()).collect()
    }

    fn dir(&self, controller: &str, path: &str) -> Result<PathBuf, CgroupError> {
        self.hierarchy(controller)?.dir_of(path)
    }

    fn cgroup_of(&self, pid: i32, controller: &str) -> Result<String, CgroupError> {
        memberships(pid)?
            .remove(controller)
            .ok_or_else(|| CgroupError::NotMember {
                pid,
                controller: controller.to_owned(),
            })
    }

    fn cpu_counters(&self, pid: i32) -> Result<CpuCounters, CgroupError> {
        Ok(CpuCounters {
            path: self.cgroup_of(pid, "cpu")?,
            files: CpuFiles::V1 {
                cpuacct: self.dir_of_process(pid, "cpuacct")?,
                cpu: self.dir_of_process(pid, "cpu")?,
            },
        })
    }

    fn favour(&self, path: &str) -> Result<(), CgroupError> {
        let dir = self.dir("cpu", path)?;
        create_dir(&dir)?;
        write_file(&dir.join("cpu.shares"), &FAVOURED_SHARES.to_string())
    }
}

pub(super) fn read_cpu(cpuacct: &Path, cpu: &Path) -> Result<CpuSample, CgroupError> {
    let usage_file = cpuacct.join("cpuacct.usage");
    let usage_text = read_file(&usage_file)?;
    let usage_ns: u64 = usage_text.trim().parse().map_err(|_| CgroupError::Format {
        path: usage_file.clone(),
        problem: format!("{usage_text:?} is not a count of nanoseconds"),
    })?;
    let stat = parse_flat_keyed(&read_file(&cpu.join("cpu.stat"))?);
    Ok(CpuSample {
        usage: Duration::from_nanos(usage_ns),
        nr_periods: stat.get("nr_periods").copied(),
        nr_throttled: stat.get("nr_throttled").copied(),
        throttled: stat
            .get("throttled_time")
            .copied()
            .map(Duration::from_nanos),
    })
}
