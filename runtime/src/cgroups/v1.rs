//! cgroup v1 (and the hybrid layout's unified mount, where the container is only placed).

use std::path::{Path, PathBuf};

use super::{CgroupError, CgroupManager, CgroupRecord, Freezer, Hierarchy, mkdir_p, write};
use crate::spec::Resources;

pub struct V1Manager {
    hierarchies: Vec<Hierarchy>,
    unified: Option<PathBuf>,
    rel: PathBuf,
    record: CgroupRecord,
}

impl V1Manager {
    pub fn new(hierarchies: Vec<Hierarchy>, unified: Option<PathBuf>, rel: &Path) -> Self {
        Self {
            hierarchies,
            unified,
            rel: rel.to_owned(),
            record: CgroupRecord::default(),
        }
    }
}

/// A new v1 cpuset cgroup starts with empty cpus/mems and refuses tasks (ENOSPC) until they are
/// set. Every level from the mount point down is checked, not only the ones this process made:
/// another container may have just created a shared parent and not filled it in yet.
fn ensure_cpuset(mountpoint: &Path, dir: &Path) -> Result<(), CgroupError> {
    let Ok(rel) = dir.strip_prefix(mountpoint) else {
        return Ok(());
    };
    let mut level = mountpoint.to_path_buf();
    for component in rel.components() {
        let parent = level.clone();
        level.push(component);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let current = std::fs::read_to_string(level.join(file)).unwrap_or_default();
            if current.trim().is_empty() {
                let inherited = std::fs::read_to_string(parent.join(file)).unwrap_or_default();
                write(&level, file, inherited.trim())?;
            }
        }
    }
    Ok(())
}

impl CgroupManager for V1Manager {
    fn create(&mut self, r: &Resources) -> Result<(), CgroupError> {
        for h in &self.hierarchies {
            let cpuset = h.has("cpuset");
            let dir = mkdir_p(&h.mountpoint, &self.rel, &mut self.record.created)?;
            if cpuset {
                ensure_cpuset(&h.mountpoint, &dir)?;
            }
            self.record.paths.push(dir.clone());
            if h.has("freezer") {
                self.record.freezer = Some(Freezer::V1(dir.clone()));
            }
            if h.has("cpu") {
                // Period before quota: the kernel validates quota against the current period.
                if let Some(p) = r.cpu_period {
                    write(&dir, "cpu.cfs_period_us", &p.to_string())?;
                }
                if let Some(q) = r.cpu_quota {
                    write(&dir, "cpu.cfs_quota_us", &q.to_string())?;
                }
                if let Some(s) = r.cpu_shares {
                    write(&dir, "cpu.shares", &s.to_string())?;
                }
            }
            if cpuset {
                if let Some(c) = &r.cpuset_cpus {
                    write(&dir, "cpuset.cpus", c)?;
                }
                if let Some(m) = &r.cpuset_mems {
                    write(&dir, "cpuset.mems", m)?;
                }
            }
            if h.has("memory") {
                if let Some(l) = r.memory_limit {
                    write(&dir, "memory.limit_in_bytes", &l.to_string())?;
                }
                // memsw only exists when the kernel accounts swap.
                if let Some(s) = r.memory_swap
                    && dir.join("memory.memsw.limit_in_bytes").exists()
                {
                    write(&dir, "memory.memsw.limit_in_bytes", &s.to_string())?;
                }
            }
            if h.has("pids")
                && let Some(l) = r.pids_limit
            {
                let v = if l > 0 { l.to_string() } else { "max".into() };
                write(&dir, "pids.max", &v)?;
            }
        }
        if let Some(unified) = &self.unified {
            // Placement only: controllers stay on v1 (enabling any here would break crun/runc).
            let dir = mkdir_p(unified, &self.rel, &mut self.record.created)?;
            // Without a v1 freezer hierarchy, cgroup v2's own freezer does (its core files
            // exist with no controller enabled).
            if self.record.freezer.is_none() {
                self.record.freezer = Some(Freezer::V2(dir.clone()));
            }
            self.record.paths.push(dir);
        }
        Ok(())
    }

    fn record(&self) -> &CgroupRecord {
        &self.record
    }
}
