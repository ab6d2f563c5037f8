//! Pure cgroup v2.

use std::path::{Path, PathBuf};

use super::{CgroupError, CgroupManager, CgroupRecord, Freezer, write};
use crate::spec::Resources;

pub struct V2Manager {
    root: PathBuf,
    rel: PathBuf,
    record: CgroupRecord,
}

impl V2Manager {
    pub fn new(root: &Path, rel: &Path) -> Self {
        Self {
            root: root.to_owned(),
            rel: rel.to_owned(),
            record: CgroupRecord::default(),
        }
    }
}

/// cgroup v1 `cpu.shares` (2..262144) to v2 `cpu.weight` (1..10000), the conversion runc uses.
fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 100;
    }
    1 + (shares.saturating_sub(2) * 9999) / 262_142
}

impl CgroupManager for V2Manager {
    fn create(&mut self, r: &Resources) -> Result<(), CgroupError> {
        let mut controllers = Vec::new();
        if r.cpu_shares.is_some() || r.cpu_quota.is_some() || r.cpu_period.is_some() {
            controllers.push("cpu");
        }
        if r.cpuset_cpus.is_some() || r.cpuset_mems.is_some() {
            controllers.push("cpuset");
        }
        if r.memory_limit.is_some() || r.memory_swap.is_some() {
            controllers.push("memory");
        }
        if r.pids_limit.is_some() {
            controllers.push("pids");
        }
        let enable: String = controllers
            .iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(" ");
        // Controllers must be enabled in every ancestor's subtree_control before the leaf has them.
        let mut dir = self.root.clone();
        for comp in self
            .rel
            .components()
            .filter(|c| matches!(c, std::path::Component::Normal(_)))
        {
            if !enable.is_empty() {
                write(&dir, "cgroup.subtree_control", &enable)?;
            }
            dir.push(comp);
            match std::fs::create_dir(&dir) {
                Ok(()) => self.record.created.push(dir.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(source) => return Err(CgroupError::Create { path: dir, source }),
            }
        }
        self.record.paths.push(dir.clone());
        self.record.freezer = Some(Freezer::V2(dir.clone()));
        if r.cpu_quota.is_some() || r.cpu_period.is_some() {
            let period = r.cpu_period.unwrap_or(100_000);
            let quota = match r.cpu_quota {
                Some(q) if q > 0 => q.to_string(),
                _ => "max".into(),
            };
            write(&dir, "cpu.max", &format!("{quota} {period}"))?;
        }
        if let Some(s) = r.cpu_shares {
            write(&dir, "cpu.weight", &shares_to_weight(s).to_string())?;
        }
        if let Some(c) = &r.cpuset_cpus {
            write(&dir, "cpuset.cpus", c)?;
        }
        if let Some(m) = &r.cpuset_mems {
            write(&dir, "cpuset.mems", m)?;
        }
        if let Some(l) = r.memory_limit {
            let v = if l > 0 { l.to_string() } else { "max".into() };
            write(&dir, "memory.max", &v)?;
            // v1 "swap" is memory+swap; v2 wants swap alone.
            if let Some(s) = r.memory_swap {
                let v = if s > 0 && l > 0 {
                    (s - l).max(0).to_string()
                } else {
                    "max".into()
                };
                write(&dir, "memory.swap.max", &v)?;
            }
        }
        if let Some(l) = r.pids_limit {
            let v = if l > 0 { l.to_string() } else { "max".into() };
            write(&dir, "pids.max", &v)?;
        }
        Ok(())
    }

    fn record(&self) -> &CgroupRecord {
        &self.record
    }
}
