//! cgroup v2: one unified hierarchy (Documentation/admin-guide/cgroup-v2.rst).
//!
//! `cpu.stat` always has `usage_usec` (core accounting, present with or without the cpu
//! controller); `nr_periods`, `nr_throttled` and `throttled_usec` appear once the cpu controller
//! is enabled for the cgroup (its parent's `cgroup.subtree_control` holds `cpu`), which a runtime
//! does when the config sets CPU limits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{
    CgroupError, CgroupVersion, CpuCounters, CpuFiles, CpuSample, Hierarchy, create_dir,
    hierarchies, memberships, parse_flat_keyed, read_file, write_file,
};

/// The controller key the unified hierarchy has in `/proc/<pid>/cgroup` (`0::/path`).
const UNIFIED: &str = "";
/// `cpu.weight` of a favoured cgroup: 8 times the default (100), as on v1.
const FAVOURED_WEIGHT: u64 = 800;

pub struct V2 {
    hierarchy: Hierarchy,
}

impl V2 {
    pub fn detect() -> Result<V2, CgroupError> {
        let hierarchy = hierarchies()?
            .into_iter()
            .find(|h| h.unified)
            .ok_or_else(|| CgroupError::NoHierarchy("unified (cgroup2)".into()))?;
        Ok(V2 { hierarchy })
    }

    /// Uses the cgroup2 hierarchy mounted at `hierarchy` (a hybrid host's `/sys/fs/cgroup/unified`,
    /// which tracks processes but holds no controllers).
    pub fn with(hierarchy: Hierarchy) -> V2 {
        V2 { hierarchy }
    }

    fn dir_of_process(&self, pid: i32) -> Result<PathBuf, CgroupError> {
        self.hierarchy.dir_of(&self.cgroup_of(pid, "unified")?)
    }
}

impl CgroupVersion for V2 {
    fn name(&self) -> &'static str {
        "v2"
    }

    fn placement_controllers(&self) -> Vec<String> {
        vec!["unified".to_owned()]
    }

    fn dir(&self, _controller: &str, path: &str) -> Result<PathBuf, CgroupError> {
        self.hierarchy.dir_of(path)
    }

    fn cgroup_of(&self, pid: i32, _controller: &str) -> Result<String, CgroupError> {
        memberships(pid)?
            .remove(UNIFIED)
            .ok_or_else(|| CgroupError::NotMember {
                pid,
                controller: "unified".to_owned(),
            })
    }

    fn cpu_counters(&self, pid: i32) -> Result<CpuCounters, CgroupError> {
        Ok(CpuCounters {
            path: self.cgroup_of(pid, "unified")?,
            files: CpuFiles::V2 {
                dir: self.dir_of_process(pid)?,
            },
        })
    }

    fn favour(&self, path: &str) -> Result<(), CgroupError> {
        let dir = self.hierarchy.dir_of(path)?;
        create_dir(&dir)?;
        // cpu.weight exists only if the parent delegates the cpu controller; without it there is
        // no weight to raise (and no quota to test: the scenarios then see no throttle counters).
        let weight = dir.join("cpu.weight");
        if weight.exists() {
            write_file(&weight, &FAVOURED_WEIGHT.to_string())?;
        }
        Ok(())
    }
}

pub(super) fn read_cpu(dir: &Path) -> Result<CpuSample, CgroupError> {
    let path = dir.join("cpu.stat");
    let stat = parse_flat_keyed(&read_file(&path)?);
    let usage = stat
        .get("usage_usec")
        .copied()
        .ok_or_else(|| CgroupError::Format {
            path: path.clone(),
            problem: "no `usage_usec` line".into(),
        })?;
    Ok(CpuSample {
        usage: Duration::from_micros(usage),
        nr_periods: stat.get("nr_periods").copied(),
        nr_throttled: stat.get("nr_throttled").copied(),
        throttled: stat
            .get("throttled_usec")
            .copied()
            .map(Duration::from_micros),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_cpu_stat_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The format from cgroup-v2.rst, with the bandwidth keys the cpu controller adds.
        std::fs::write(
            dir.path().join("cpu.stat"),
            "usage_usec 250000\nuser_usec 200000\nsystem_usec 50000\nnr_periods 10\n\
             nr_throttled 7\nthrottled_usec 420000\nnr_bursts 0\nburst_usec 0\n",
        )
        .expect("write");
        let sample = read_cpu(dir.path()).expect("parses");
        assert_eq!(sample.usage, Duration::from_millis(250));
        assert_eq!(sample.nr_periods, Some(10));
        assert_eq!(sample.nr_throttled, Some(7));
        assert_eq!(sample.throttled, Some(Duration::from_millis(420)));
    }

    #[test]
    fn without_the_cpu_controller_only_usage_is_known() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("cpu.stat"),
            "usage_usec 5\nuser_usec 3\nsystem_usec 2\n",
        )
        .expect("write");
        let sample = read_cpu(dir.path()).expect("parses");
        assert_eq!(sample.usage, Duration::from_micros(5));
        assert_eq!(sample.nr_throttled, None);
    }
}
