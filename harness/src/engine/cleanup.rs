//! What an engine run leaves when Palisade is killed, and how it is removed.
//!
//! A SIGKILLed palisade leaves its lab hosts *running*: the holder, dockerd, its containerd, the
//! shims, conmon and the containers do not depend on palisade's process and keep going. What
//! `palisade cleanup` must do for a dead run `palisade-<id>`, in this order:
//!
//! 1. Kill every process in the cgroups `palisade-<id>-eng*` ([`kill_lab_processes`]): the lab's
//!    tracking cgroup holds the holder and every daemon, client, shim and conmon; the engines'
//!    containers are below it (`--cgroup-parent /palisade-<id>-engN/{docker,podman}`). Use
//!    `cgroup.kill` where the kernel has it: dockerd restarts a containerd that dies before it,
//!    so killing pid by pid can race.
//! 2. Remove the cgroups `palisade-<id>*` in every hierarchy (dockerd/runc and podman/crun made
//!    the v1 ones). The existing `cleanup_run` does this.
//! 3. Delete the network namespaces `palisade-<id>-engN-host` and `-out`: the uplink, the
//!    engines' bridges (`docker0`, `cni-podman0`), veths and iptables rules live only there.
//!    The existing `cleanup_run` does this.
//! 4. Nothing to unmount on the host: every mount an engine made (overlay2 layers, shm, netns
//!    bind mounts, podman's storage bind mount, the lab's `/run` tmpfs and `/etc`, `/opt`, `/var`
//!    overlays) lives in the lab's mount namespace, which the kernel tears down with its last
//!    process (step 1).
//! 5. Remove the run directory: docker's data root (containers, the probe image, its layers),
//!    exec root and socket, podman's root/runroot/tmpdir and CNI config, the overlays' upper
//!    layers. The existing `cleanup_run` does this.
//!
//! Images, containers and engine networks need no engine call: they exist only in the run's
//! own daemon state, which steps 1 and 5 remove.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::exec;
use crate::run::cleanup::NETNS_DIR;

/// The lab host cgroups of run `run_tag` are named `<run_tag>-eng<n>`.
pub fn is_lab_cgroup(name: &str, run_tag: &str) -> bool {
    name.strip_prefix(run_tag)
        .and_then(|rest| rest.strip_prefix("-eng"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Step 1 above: SIGKILLs every process of every lab host of run `run_tag`; returns what it
/// could not do.
pub fn kill_lab_processes(run_tag: &str, timeout: Duration) -> Vec<String> {
    let mut problems = Vec::new();
    let Ok(hierarchies) = crate::lab::cgroups::hierarchies() else {
        return vec!["cannot list the cgroup hierarchies".into()];
    };
    // The tracking hierarchy first (it holds every lab process), then the others (containers
    // of a runtime that made no cgroup in the tracking hierarchy).
    let mut ordered: Vec<_> = hierarchies.iter().filter(|h| h.unified).collect();
    ordered.extend(hierarchies.iter().filter(|h| !h.unified));
    for hierarchy in ordered {
        for entry in fs::read_dir(&hierarchy.mount_point)
            .into_iter()
            .flatten()
            .flatten()
        {
            if is_lab_cgroup(&entry.file_name().to_string_lossy(), run_tag)
                && let Err(problem) = kill_cgroup_tree(&entry.path(), timeout)
            {
                problems.push(problem);
            }
        }
    }
    problems
}

/// Every process in the cgroup `top` and below.
pub fn cgroup_pids(top: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    collect_pids(top, &mut pids);
    pids
}

fn collect_pids(dir: &Path, pids: &mut Vec<i32>) {
    if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_pids(&entry.path(), pids);
        }
    }
}

/// SIGKILLs every process in the cgroup `top` and below and waits (pidfd) until none is left:
/// with `cgroup.kill` where the kernel has it (atomic: nothing can fork its way out, and dockerd
/// cannot restart the containerd that died first), else process by process, round after round.
pub fn kill_cgroup_tree(top: &Path, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let kill_file = top.join("cgroup.kill");
    let atomic = kill_file.exists();
    loop {
        let pids = cgroup_pids(top);
        if pids.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "processes {pids:?} of cgroup {} survived SIGKILL for {} s",
                top.display(),
                timeout.as_secs()
            ));
        }
        if atomic {
            fs::write(&kill_file, "1")
                .map_err(|e| format!("writing {}: {e}", kill_file.display()))?;
        } else {
            for &pid in &pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::SIGKILL,
                );
            }
        }
        for pid in pids {
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = exec::wait_for_exit(pid, left);
        }
    }
}

/// Removes a cgroup and its children, deepest first.
pub fn remove_cgroup_tree(dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            problems.extend(remove_cgroup_tree(&entry.path()));
        }
    }
    match fs::remove_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => problems.push(format!("removing cgroup {}: {e}", dir.display())),
    }
    problems
}

/// Everything of run `run_tag` (directory `run_dir`) that an engine run can leave, described
/// one per line: processes (by cgroup, and any whose command line names the run directory),
/// cgroups, network namespaces, mounts (in any process's mount table: a surviving lab mount
/// namespace shows there), and the lab directories.
pub fn leftovers(run_tag: &str, run_dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let ours = |name: &str| name.starts_with(run_tag);
    for mount in crate::lab::cgroups::mount_points() {
        for dir in matching_dirs(&mount, &ours, 3) {
            found.push(format!("cgroup {}", dir.display()));
            for pid in cgroup_pids(&dir) {
                found.push(format!(
                    "process {pid} ({}) in {}",
                    command_of(pid),
                    dir.display()
                ));
            }
        }
    }
    for entry in fs::read_dir(NETNS_DIR).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if ours(&name) {
            found.push(format!("network namespace {name}"));
        }
    }
    let run_dir_text = run_dir.to_string_lossy().into_owned();
    let mut mounts_seen = std::collections::BTreeSet::new();
    for process in procfs::process::all_processes()
        .into_iter()
        .flatten()
        .flatten()
    {
        let pid = process.pid;
        if pid == std::process::id() as i32 {
            continue;
        }
        if let Ok(cmdline) = process.cmdline()
            && cmdline.iter().any(|arg| arg.contains(&run_dir_text))
        {
            found.push(format!("process {pid} ({})", cmdline.join(" ")));
        }
        if let Ok(mounts) = process.mountinfo() {
            for mount in mounts {
                let named = mount.mount_source.as_deref().is_some_and(ours);
                if (named || mount.mount_point.starts_with(run_dir))
                    && mounts_seen.insert((mount.mount_point.clone(), mount.mount_source.clone()))
                {
                    found.push(format!(
                        "mount {} ({}) seen by process {pid}",
                        mount.mount_point.display(),
                        mount.mount_source.unwrap_or_default()
                    ));
                }
            }
        }
    }
    if let Ok(me) = procfs::process::Process::myself() {
        for mount in me.mountinfo().into_iter().flatten() {
            if mount.mount_point.starts_with(run_dir)
                || mount.mount_source.as_deref().is_some_and(ours)
            {
                found.push(format!(
                    "mount {} in palisade's own mount table",
                    mount.mount_point.display()
                ));
            }
        }
    }
    for entry in fs::read_dir(run_dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("eng") {
            found.push(format!("lab directory {}", entry.path().display()));
        }
    }
    found
}

fn command_of(pid: i32) -> String {
    procfs::process::Process::new(pid)
        .and_then(|p| p.cmdline())
        .map(|c| c.join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn matching_dirs(root: &Path, matches: &dyn Fn(&str) -> bool, depth: usize) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(root).into_iter().flatten().flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if matches(&entry.file_name().to_string_lossy()) {
            found.push(entry.path());
        } else if depth > 1 {
            found.extend(matching_dirs(&entry.path(), matches, depth - 1));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("palisade-0a1b2c-eng0", true)]
    #[case("palisade-0a1b2c-eng12", true)]
    #[case("palisade-0a1b2c-eng", false)]
    #[case("palisade-0a1b2c-net0-host", false)]
    #[case("palisade-0a1b2d-eng0", false)]
    #[case("palisade-0a1b2c-eng0-host", false)]
    fn only_this_runs_lab_cgroups_match(#[case] name: &str, #[case] lab: bool) {
        assert_eq!(is_lab_cgroup(name, "palisade-0a1b2c"), lab);
    }

    #[test]
    fn an_empty_cgroup_tree_is_killed_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(kill_cgroup_tree(dir.path(), Duration::from_secs(1)), Ok(()));
    }
}
