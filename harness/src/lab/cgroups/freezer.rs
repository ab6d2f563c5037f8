//! The cgroup freezer, read from the host: whether a container's cgroup is frozen as the kernel
//! reports it (v1 `freezer.state`, v2 `cgroup.events`), never as a runtime says.
//!
//! v1 (Documentation/admin-guide/cgroup-v1/freezer-subsystem.rst): `freezer.state` reads
//! `THAWED`, `FREEZING` (some task is not frozen yet) or `FROZEN`; a cgroup below a frozen one
//! reads `FROZEN` too. v2 (cgroup-v2.rst, "Core Interface Files"): `cgroup.freeze` is what was
//! asked, `cgroup.events` says `frozen 1` only once the cgroup and all its descendants are frozen,
//! a descendant of a frozen cgroup included.

use std::path::{Path, PathBuf};

use super::{CgroupError, Hierarchy, hierarchies, parse_flat_keyed, read_file};
use crate::lab::host::{CgroupMode, HostFacts};

/// What the kernel says of a cgroup's freezer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezeState {
    Thawed,
    /// Asked to freeze, and some task is not frozen yet.
    Freezing,
    Frozen,
}

impl std::fmt::Display for FreezeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FreezeState::Thawed => "thawed",
            FreezeState::Freezing => "freezing",
            FreezeState::Frozen => "frozen",
        })
    }
}

/// Which freezer a cgroup is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezerKind {
    /// The v1 `freezer` controller's hierarchy.
    V1,
    /// cgroup v2's core freezer (the unified hierarchy, also on a hybrid host's cgroup2 mount).
    V2,
}

/// One cgroup of the hierarchy that freezes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreezerCgroup {
    pub kind: FreezerKind,
    /// The cgroup path, as `/proc/<pid>/cgroup` writes it.
    pub path: String,
    pub dir: PathBuf,
}

impl FreezerCgroup {
    /// The cgroup of `pid` in `hierarchy` (a v1 `freezer` one, or the unified one).
    pub fn of(pid: i32, hierarchy: &Hierarchy) -> Result<FreezerCgroup, CgroupError> {
        let (kind, controller) = if hierarchy.unified {
            (FreezerKind::V2, "")
        } else {
            (FreezerKind::V1, "freezer")
        };
        let path =
            super::memberships(pid)?
                .remove(controller)
                .ok_or_else(|| CgroupError::NotMember {
                    pid,
                    controller: hierarchy.name(),
                })?;
        Ok(FreezerCgroup {
            kind,
            dir: hierarchy.dir_of(&path)?,
            path,
        })
    }

    /// The file the kernel reports the freezer's state in.
    pub fn state_file(&self) -> PathBuf {
        match self.kind {
            FreezerKind::V1 => self.dir.join("freezer.state"),
            FreezerKind::V2 => self.dir.join("cgroup.events"),
        }
    }

    /// What the kernel says now. An unreadable or unknown state is an error, never "thawed".
    pub fn state(&self) -> Result<FreezeState, CgroupError> {
        let file = self.state_file();
        let text = read_file(&file)?;
        match self.kind {
            FreezerKind::V1 => parse_v1_state(&file, &text),
            FreezerKind::V2 => {
                let frozen = parse_v2_events(&file, &text)?;
                if frozen {
                    return Ok(FreezeState::Frozen);
                }
                // Not frozen yet: asked to be (freezing), or not.
                let freeze = self.dir.join("cgroup.freeze");
                let asked = read_file(&freeze)?;
                match asked.trim() {
                    "1" => Ok(FreezeState::Freezing),
                    "0" => Ok(FreezeState::Thawed),
                    other => Err(CgroupError::Format {
                        path: freeze,
                        problem: format!("{other:?} is neither 0 nor 1"),
                    }),
                }
            }
        }
    }

    /// Whether cgroup `path` (of the same hierarchy) is this one or lies below it, where this
    /// cgroup's freezer reaches.
    pub fn holds(&self, path: &str) -> bool {
        let own = self.path.trim_end_matches('/');
        path == self.path
            || path
                .strip_prefix(own)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// `freezer.state` (v1).
pub fn parse_v1_state(file: &Path, text: &str) -> Result<FreezeState, CgroupError> {
    match text.trim() {
        "THAWED" => Ok(FreezeState::Thawed),
        "FREEZING" => Ok(FreezeState::Freezing),
        "FROZEN" => Ok(FreezeState::Frozen),
        other => Err(CgroupError::Format {
            path: file.to_owned(),
            problem: format!("{other:?} is not THAWED, FREEZING or FROZEN"),
        }),
    }
}

/// The `frozen` key of `cgroup.events` (v2); a kernel without it (before 5.2) has no v2 freezer.
pub fn parse_v2_events(file: &Path, text: &str) -> Result<bool, CgroupError> {
    match parse_flat_keyed(text).get("frozen") {
        Some(0) => Ok(false),
        Some(1) => Ok(true),
        Some(other) => Err(CgroupError::Format {
            path: file.to_owned(),
            problem: format!("`frozen {other}` is neither 0 nor 1"),
        }),
        None => Err(CgroupError::Format {
            path: file.to_owned(),
            problem: "no `frozen` line (a kernel before 5.2 has no cgroup v2 freezer)".into(),
        }),
    }
}

/// The freezer of this host: the hierarchy a runtime freezes containers in. That is v1's
/// `freezer` where it is mounted (v1, and the hybrid layout, as runc, crun and the bundled
/// runtime choose), else the unified one.
#[derive(Debug, Clone)]
pub struct Freezer {
    hierarchy: Hierarchy,
}

impl Freezer {
    pub fn for_host(host: &HostFacts) -> Result<Freezer, CgroupError> {
        let all = hierarchies()?;
        let v1 = all
            .iter()
            .find(|h| !h.unified && h.controllers.iter().any(|c| c == "freezer"));
        let unified = all.iter().find(|h| h.unified);
        let chosen = match host.cgroup_mode {
            CgroupMode::V1 => v1,
            CgroupMode::Hybrid => v1.or(unified),
            CgroupMode::V2 => unified,
            CgroupMode::Unknown => return Err(CgroupError::UnknownMode(host.cgroup_mode)),
        };
        let hierarchy = chosen
            .cloned()
            .ok_or_else(|| CgroupError::NoHierarchy("freezer".into()))?;
        Ok(Freezer { hierarchy })
    }

    pub fn kind(&self) -> FreezerKind {
        if self.hierarchy.unified {
            FreezerKind::V2
        } else {
            FreezerKind::V1
        }
    }

    /// The freezer cgroup of process `pid` (per `/proc/<pid>/cgroup`).
    pub fn cgroup_of(&self, pid: i32) -> Result<FreezerCgroup, CgroupError> {
        FreezerCgroup::of(pid, &self.hierarchy)
    }
}

/// Why no container can be frozen on this host, if none can: a skip reason.
pub fn unavailable(host: &HostFacts) -> Option<String> {
    match Freezer::for_host(host).map(|f| f.hierarchy) {
        Ok(h) if !h.unified || v2_can_freeze(&h) => None,
        Ok(h) => Some(format!(
            "the host has no cgroup freezer: no v1 `freezer` hierarchy is mounted, and the cgroup2 \
             hierarchy at {} has no `cgroup.freeze` (a kernel before 5.2)",
            h.mount_point.display()
        )),
        Err(e) => Some(format!("the host has no cgroup freezer: {e}")),
    }
}

/// Whether the unified hierarchy has the v2 freezer: `cgroup.freeze` exists in every non-root
/// cgroup of a kernel that has it, so one such cgroup (the mount's own, inside a cgroup namespace,
/// or any child of it) tells.
fn v2_can_freeze(unified: &Hierarchy) -> bool {
    let mount = &unified.mount_point;
    mount.join("cgroup.freeze").is_file()
        || std::fs::read_dir(mount).is_ok_and(|entries| {
            entries
                .filter_map(Result::ok)
                .any(|e| e.path().join("cgroup.freeze").is_file())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::thawed("THAWED\n", FreezeState::Thawed)]
    #[case::freezing("FREEZING\n", FreezeState::Freezing)]
    #[case::frozen("FROZEN\n", FreezeState::Frozen)]
    fn v1_states_are_the_kernels_three(#[case] text: &str, #[case] state: FreezeState) {
        assert_eq!(
            parse_v1_state(Path::new("freezer.state"), text).expect("known"),
            state
        );
    }

    #[test]
    fn an_unknown_v1_state_is_an_error() {
        let err = parse_v1_state(Path::new("/x/freezer.state"), "")
            .expect_err("empty is no state")
            .to_string();
        assert!(err.contains("is not THAWED, FREEZING or FROZEN"), "{err}");
    }

    #[rstest]
    #[case::frozen("populated 1\nfrozen 1\n", true)]
    #[case::thawed("populated 1\nfrozen 0\n", false)]
    fn v2_events_say_frozen(#[case] text: &str, #[case] frozen: bool) {
        assert_eq!(
            parse_v2_events(Path::new("cgroup.events"), text).expect("has frozen"),
            frozen
        );
    }

    #[rstest]
    #[case::old_kernel("populated 1\n", "no `frozen` line")]
    #[case::garbage("populated 1\nfrozen 2\n", "neither 0 nor 1")]
    fn v2_events_without_a_clear_frozen_are_errors(#[case] text: &str, #[case] problem: &str) {
        let err = parse_v2_events(Path::new("cgroup.events"), text)
            .expect_err("no verdict")
            .to_string();
        assert!(err.contains(problem), "{err}");
    }

    #[test]
    fn a_v2_cgroup_asked_to_freeze_but_not_frozen_is_freezing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cgroup = FreezerCgroup {
            kind: FreezerKind::V2,
            path: "/c".into(),
            dir: dir.path().to_owned(),
        };
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).expect("write");
        };
        write("cgroup.events", "populated 1\nfrozen 0\n");
        write("cgroup.freeze", "1\n");
        assert_eq!(cgroup.state().expect("reads"), FreezeState::Freezing);
        write("cgroup.freeze", "0\n");
        assert_eq!(cgroup.state().expect("reads"), FreezeState::Thawed);
        write("cgroup.events", "populated 1\nfrozen 1\n");
        assert_eq!(cgroup.state().expect("reads"), FreezeState::Frozen);
    }

    #[test]
    fn an_unreadable_state_is_an_error_not_thawed() {
        let cgroup = FreezerCgroup {
            kind: FreezerKind::V1,
            path: "/gone".into(),
            dir: PathBuf::from("/nonexistent/palisade/freezer/gone"),
        };
        assert!(cgroup.state().is_err());
    }

    #[rstest]
    #[case::itself("/a/b", true)]
    #[case::below("/a/b/c", true)]
    #[case::sibling_prefix("/a/bc", false)]
    #[case::parent("/a", false)]
    fn a_freezer_holds_its_cgroup_and_those_below(#[case] path: &str, #[case] held: bool) {
        let cgroup = FreezerCgroup {
            kind: FreezerKind::V1,
            path: "/a/b".into(),
            dir: PathBuf::from("/sys/fs/cgroup/freezer/a/b"),
        };
        assert_eq!(cgroup.holds(path), held);
    }
}
