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

    /// The v2 reader against a real cgroup2 hierarchy: the pure v2 one, or a hybrid host's
    /// unified mount (which has no controllers, so only `usage_usec` is there to read). A shell
    /// burning CPU is moved into a fresh cgroup; the cgroup is found through /proc/<pid>/cgroup
    /// and its usage must match the CPU time the kernel reports for the process itself.
    #[test]
    fn finds_and_measures_a_real_process_in_the_unified_hierarchy() {
        use std::process::Command;
        let Some(unified) = super::super::hierarchies()
            .ok()
            .and_then(|all| all.into_iter().find(|h| h.unified))
        else {
            eprintln!("skipped: no cgroup2 hierarchy is mounted");
            return;
        };
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: moving a process between cgroups needs root");
            return;
        }
        let v2 = V2::with(unified.clone());
        let path = format!(
            "{}/palisade-unittest-{}",
            unified.root.trim_end_matches('/'),
            std::process::id()
        );
        let dir = unified.dir_of(&path).expect("inside the mount");
        std::fs::create_dir(&dir).expect("create a cgroup");
        let mut child = Command::new("sh")
            .args([
                "-c",
                "read go; i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done",
            ])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("sh");
        let pid = child.id() as i32;
        let moved = std::fs::write(dir.join("cgroup.procs"), pid.to_string());
        let located = v2.cpu_counters(pid);
        let seen = v2.cgroup_of(pid, "unified");
        // Let it burn (in its new cgroup) and end; read its own CPU time before reaping it.
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            let _ = writeln!(stdin, "go");
        }
        let _ = crate::exec::wait_for_exit(pid, std::time::Duration::from_secs(60));
        let ticks = procfs::ticks_per_second() as f64;
        let own = procfs::process::Process::new(pid)
            .and_then(|p| p.stat())
            .map(|s| (s.utime + s.stime) as f64 / ticks);
        let _ = child.wait();
        let usage = located.as_ref().map(|c| c.read());
        let _ = std::fs::remove_dir(&dir);

        moved.expect("moved the shell into the cgroup");
        assert_eq!(seen.expect("/proc/<pid>/cgroup names it"), path);
        let usage = usage
            .expect("located")
            .expect("read cpu.stat")
            .usage
            .as_secs_f64();
        let own = own.expect("the process's own CPU time");
        eprintln!("cgroup {path}: usage {usage:.3} s; the process's own CPU time {own:.3} s");
        // The process's time is in clock ticks and includes the moments before the move.
        assert!(
            usage > 0.05 && usage <= own + 0.03 && usage >= own * 0.8 - 0.03,
            "cgroup usage {usage:.3} s vs the process's own {own:.3} s"
        );
    }
}
