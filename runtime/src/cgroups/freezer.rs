//! Freezing the container's cgroup, for `pause` and `resume`: the cgroup v1 freezer controller
//! (`freezer.state`), or cgroup v2's core `cgroup.freeze`. Either way the call returns only once
//! the kernel reports the state reached, or fails after a timeout.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::inotify;
use serde::{Deserialize, Serialize};

use super::{CgroupError, write};

/// How long a freeze or a thaw may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Where the container's cgroup is frozen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Freezer {
    /// The container's directory in the v1 freezer hierarchy.
    V1(PathBuf),
    /// The container's cgroup v2 directory.
    V2(PathBuf),
}

impl Freezer {
    /// Whether the cgroup is frozen, or being frozen. An unreadable state is "not frozen": the
    /// cgroup is gone with its container.
    pub fn is_frozen(&self) -> bool {
        match self {
            Freezer::V1(dir) => std::fs::read_to_string(dir.join("freezer.state"))
                .is_ok_and(|s| matches!(s.trim(), "FROZEN" | "FREEZING")),
            Freezer::V2(dir) => {
                std::fs::read_to_string(dir.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
            }
        }
    }

    /// Freezes (`true`) or thaws the cgroup and waits until the kernel says it is so.
    pub fn set(&self, frozen: bool) -> Result<(), CgroupError> {
        self.set_within(frozen, TIMEOUT)
    }

    pub fn set_within(&self, frozen: bool, timeout: Duration) -> Result<(), CgroupError> {
        match self {
            Freezer::V1(dir) => v1_set(dir, frozen, timeout),
            Freezer::V2(dir) => v2_set(dir, frozen, timeout),
        }
    }
}

fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_owned(),
        source,
    })
}

/// v1: write the state, read it back until it is reached. The v1 freezer sends no notification,
/// so this polls, backing off from 1 to 10 ms, and writes the state again every round: a task
/// that was forking while the cgroup froze is caught by the next write (runc does the same).
fn v1_set(dir: &Path, frozen: bool, timeout: Duration) -> Result<(), CgroupError> {
    let want = if frozen { "FROZEN" } else { "THAWED" };
    let path = dir.join("freezer.state");
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        write(dir, "freezer.state", want)?;
        let have = read(&path)?;
        if have.trim() == want {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CgroupError::Freeze {
                path,
                want,
                have: have.trim().to_owned(),
                timeout,
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// `frozen` from cgroup.events.
fn events_frozen(text: &str) -> Option<bool> {
    text.lines()
        .find_map(|l| l.strip_prefix("frozen "))
        .map(|v| v.trim() == "1")
}

/// v2: write cgroup.freeze, then wait for `frozen` in cgroup.events, which the kernel signals
/// (as a file modification, seen through inotify) when it changes.
fn v2_set(dir: &Path, frozen: bool, timeout: Duration) -> Result<(), CgroupError> {
    let want = if frozen { "frozen 1" } else { "frozen 0" };
    let events = dir.join("cgroup.events");
    let io_err = |source: std::io::Error| CgroupError::Read {
        path: events.clone(),
        source,
    };
    write(dir, "cgroup.freeze", if frozen { "1" } else { "0" })?;
    let watch = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
        .map_err(|e| io_err(e.into()))?;
    // Watched before the first read: a change after the read then wakes the poll below.
    inotify::add_watch(&watch, &events, inotify::WatchFlags::MODIFY)
        .map_err(|e| io_err(e.into()))?;
    let deadline = Instant::now() + timeout;
    loop {
        let text = read(&events)?;
        if events_frozen(&text) == Some(frozen) {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !wait_readable(&watch, left).map_err(io_err)? {
            return Err(CgroupError::Freeze {
                path: events,
                want,
                have: text.trim().replace('\n', ", "),
                timeout,
            });
        }
        drain(&watch);
    }
}

/// Waits until `fd` is readable; `false` on timeout.
fn wait_readable(fd: &OwnedFd, timeout: Duration) -> std::io::Result<bool> {
    let timeout = Timespec::try_from(timeout).map_err(std::io::Error::other)?;
    loop {
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(n) => return Ok(n > 0),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads (and drops) the queued inotify events; the descriptor is non-blocking.
fn drain(fd: &OwnedFd) {
    let mut buf = [0u8; 4096];
    while matches!(rustix::io::read(fd, &mut buf), Ok(n) if n > 0) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_writes_the_state_and_reads_it_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = Freezer::V1(dir.path().to_owned());
        f.set(true).expect("frozen");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("freezer.state")).expect("read"),
            "FROZEN"
        );
        assert!(f.is_frozen());
        f.set(false).expect("thawed");
        assert!(!f.is_frozen());
    }

    #[test]
    fn v2_waits_for_the_kernel_to_report_the_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let events = dir.path().join("cgroup.events");
        std::fs::write(&events, "populated 1\nfrozen 0\n").expect("write");
        let f = Freezer::V2(dir.path().to_owned());
        // Nothing reports "frozen 1": the freeze times out, naming what it saw.
        let err = f
            .set_within(true, Duration::from_millis(50))
            .expect_err("never frozen");
        assert!(
            err.to_string()
                .contains("did not reach frozen 1 within 50ms (it is \"populated 1, frozen 0\")"),
            "{err}"
        );
        assert!(f.is_frozen(), "cgroup.freeze was written");
        // The "kernel" reports it a moment later: the wait wakes on the file's modification.
        let writer = {
            let events = events.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                std::fs::write(events, "populated 1\nfrozen 1\n").expect("write");
            })
        };
        f.set_within(true, Duration::from_secs(10))
            .expect("frozen once reported");
        writer.join().expect("writer");
        std::fs::write(&events, "populated 1\nfrozen 0\n").expect("write");
        f.set(false).expect("thawed");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("cgroup.freeze")).expect("read"),
            "0"
        );
        assert!(!f.is_frozen());
    }

    #[test]
    fn cgroup_events_frozen_field() {
        assert_eq!(events_frozen("populated 0\nfrozen 1\n"), Some(true));
        assert_eq!(events_frozen("populated 1\nfrozen 0\n"), Some(false));
        assert_eq!(events_frozen("populated 1\n"), None);
    }

    #[test]
    fn the_record_names_the_freezer_in_state_json() {
        let v = serde_json::to_value(Freezer::V1("/sys/fs/cgroup/freezer/x".into()))
            .expect("serialize");
        assert_eq!(v, serde_json::json!({"v1": "/sys/fs/cgroup/freezer/x"}));
        // State written before pause existed has no freezer.
        let r: super::super::CgroupRecord =
            serde_json::from_str(r#"{"paths": [], "created": []}"#).expect("old state");
        assert_eq!(r.freezer, None);
    }

    #[test]
    fn exec_enters_the_cgroup_of_every_hierarchy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths: Vec<PathBuf> = ["cpu/c", "freezer/c", "unified/c"]
            .iter()
            .map(|p| dir.path().join(p))
            .collect();
        for p in &paths {
            std::fs::create_dir_all(p).expect("mkdir");
        }
        let record = super::super::CgroupRecord {
            paths: paths.clone(),
            ..Default::default()
        };
        super::super::enter(&record, 4242).expect("entered");
        for p in &paths {
            assert_eq!(
                std::fs::read_to_string(p.join("cgroup.procs")).expect("read"),
                "4242"
            );
        }
        // A hierarchy that cannot take it fails the exec instead of leaving it half outside.
        let record = super::super::CgroupRecord {
            paths: vec![dir.path().join("missing")],
            ..Default::default()
        };
        assert!(super::super::enter(&record, 4242).is_err());
    }
}
