//! Removing what a run made: containers, cgroups, mounts, network namespaces, temp dirs.
//!
//! Every run cleans up after itself at its end; `palisade cleanup` applies the same steps to the
//! leftovers of runs that were killed, found by the `palisade-` prefix.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::exec;
use crate::run::{RECORD_FILE, RunRecord, run_tag_of, runtime_timeout, start_time};

/// What a cleanup removed, to be printed.
#[derive(Debug, Default)]
pub struct Removed {
    pub items: Vec<String>,
    pub problems: Vec<String>,
}

impl Removed {
    fn note(&mut self, item: String) {
        self.items.push(item);
    }

    fn problem(&mut self, problem: String) {
        self.problems.push(problem);
    }
}

/// Removes everything belonging to the run whose directory is `dir`.
pub fn cleanup_run(dir: &Path, removed: &mut Removed) {
    let record: Option<RunRecord> = fs::read_to_string(dir.join(RECORD_FILE))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    let run_tag = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Engine lab hosts first, all at once: a dockerd restarts the containerd killed before it.
    kill_labs(&run_tag, removed);
    if let Some(record) = &record {
        for engine in &record.engines {
            if let Some(socket) = &engine.socket {
                remove_from_operators_engine(dir, &record.run_id, socket, &engine.image, removed);
            }
        }
        for runtime in &record.runtimes {
            delete_containers(&runtime.path, &runtime.root, removed);
        }
    }
    remove_cgroups(&|name| name.starts_with(&run_tag), removed);
    remove_netns(&|name| name.starts_with(&run_tag), removed);
    unmount_below(dir, removed);
    match fs::remove_dir_all(dir) {
        Ok(()) => removed.note(format!("directory {}", dir.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => removed.problem(format!("removing {}: {e}", dir.display())),
    }
}

/// Removes the leftovers of every Palisade run that is no longer alive (or of all runs, with
/// `include_live`), and palisade cgroups and namespaces no run directory accounts for.
///
/// `orphans` also removes cgroups, network namespaces and lab hosts named `palisade-<run id>`
/// whose run directory is not in this temp dir: what a run whose directory was deleted left. Only
/// `palisade cleanup` does that, on request: a run started with another `TMPDIR` is alive but
/// has no directory here, and the automatic sweep at every run's start must never touch it.
pub fn cleanup_all(include_live: bool, orphans: bool) -> Removed {
    let mut removed = Removed::default();
    let tmp = std::env::temp_dir();
    let mut live_tags = Vec::new();
    for dir in palisade_entries(&tmp) {
        if !dir.is_dir() {
            continue;
        }
        let record: Option<RunRecord> = fs::read_to_string(dir.join(RECORD_FILE))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok());
        let alive = record
            .as_ref()
            .is_some_and(|r| start_time(r.owner_pid) == Some(r.owner_start));
        if alive && !include_live {
            live_tags.push(
                dir.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
            continue;
        }
        cleanup_run(&dir, &mut removed);
    }
    if !orphans {
        return removed;
    }
    let orphan =
        |name: &str| run_tag_of(name).is_some_and(|tag| !live_tags.iter().any(|live| live == tag));
    // Lab hosts whose run directory is gone: killed first, as in `cleanup_run`.
    let mut orphan_labs: Vec<String> = crate::lab::cgroups::mount_points()
        .iter()
        .flat_map(|mount| fs::read_dir(mount).into_iter().flatten().flatten())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let tag = run_tag_of(&name)?.to_owned();
            (orphan(&name) && crate::engine::cleanup::is_lab_cgroup(&name, &tag)).then_some(tag)
        })
        .collect();
    orphan_labs.sort();
    orphan_labs.dedup();
    for tag in orphan_labs {
        kill_labs(&tag, &mut removed);
    }
    remove_cgroups(&orphan, &mut removed);
    remove_netns(&orphan, &mut removed);
    removed
}

/// Kills every process of run `run_tag`'s engine lab hosts (daemons, shims, containers); one
/// item per lab host (`lab host <name>: <n> processes killed`).
fn kill_labs(run_tag: &str, removed: &mut Removed) {
    let mut labs: Vec<(String, usize)> = crate::lab::cgroups::mount_points()
        .iter()
        .flat_map(|mount| fs::read_dir(mount).into_iter().flatten().flatten())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            crate::engine::cleanup::is_lab_cgroup(&name, run_tag)
                .then(|| (name, crate::engine::cleanup::cgroup_pids(&e.path()).len()))
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    if labs.is_empty() {
        return;
    }
    labs.sort();
    labs.dedup_by(|a, b| a.0 == b.0);
    let problems = crate::engine::cleanup::kill_lab_processes(run_tag, Duration::from_secs(30));
    if problems.is_empty() {
        for (name, n) in labs {
            removed.note(format!("lab host {name}: {n} processes killed"));
        }
    }
    for problem in problems {
        removed.problem(problem);
    }
}

/// What a run made in an operator's dockerd: its containers, networks, volumes and image, found
/// by the run's label and names. Nothing else of the operator's is touched.
fn remove_from_operators_engine(
    dir: &Path,
    run_id: &str,
    socket: &Path,
    image: &str,
    removed: &mut Removed,
) {
    let Some(docker) = exec::find_program("docker") else {
        removed.problem(format!(
            "cannot clean up run {run_id} in the dockerd at {}: no `docker` client on PATH",
            socket.display()
        ));
        return;
    };
    let config = dir.join("docker-client");
    let _ = fs::create_dir_all(&config);
    let client = crate::engine::docker::DockerClient::direct(&docker, socket, &config);
    let problems = crate::engine::driver::remove_run_objects(&client, run_id, image);
    if problems.is_empty() {
        removed.note(format!(
            "containers, networks, volumes and image {image} of run {run_id} in the dockerd at {}",
            socket.display()
        ));
    }
    for problem in problems {
        removed.problem(problem);
    }
}

fn palisade_entries(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| run_tag_of(&e.file_name().to_string_lossy()).is_some())
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

fn delete_containers(runtime: &Path, root: &Path, removed: &mut Removed) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let id = entry.file_name().to_string_lossy().into_owned();
        if !entry.path().is_dir() {
            continue;
        }
        let mut command = Command::new(runtime);
        command
            .arg("--root")
            .arg(root)
            .args(["delete", "--force", &id]);
        match exec::run(&mut command, runtime_timeout()) {
            Ok(done) if done.status.success() => removed.note(format!("container {id}")),
            Ok(done) => removed.problem(format!("deleting container {id}: {}", done.stderr.trim())),
            Err(e) => removed.problem(format!("deleting container {id}: {e}")),
        }
    }
}

/// Kills the processes in, then removes, every cgroup (at the top three levels of each hierarchy)
/// whose name matches.
fn remove_cgroups(matches: &dyn Fn(&str) -> bool, removed: &mut Removed) {
    for mount in crate::lab::cgroups::mount_points() {
        for dir in matching_dirs(&mount, matches, 3) {
            kill_cgroup_processes(&dir);
            remove_cgroup_tree(&dir, removed);
        }
    }
}

fn matching_dirs(root: &Path, matches: &dyn Fn(&str) -> bool, depth: usize) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(root) else {
        return found;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if matches(&entry.file_name().to_string_lossy()) {
            found.push(path);
        } else if depth > 1 {
            found.extend(matching_dirs(&path, matches, depth - 1));
        }
    }
    found
}

fn kill_cgroup_processes(dir: &Path) {
    let mut pids = Vec::new();
    collect_procs(dir, &mut pids);
    for &pid in &pids {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
    }
    for pid in pids {
        let _ = exec::wait_for_exit(pid, Duration::from_secs(5));
    }
}

fn collect_procs(dir: &Path, pids: &mut Vec<i32>) {
    if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.filter_map(|e| e.ok()) {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_procs(&entry.path(), pids);
            }
        }
    }
}

/// Removes a cgroup and its children, deepest first (cgroup directories only accept rmdir).
fn remove_cgroup_tree(dir: &Path, removed: &mut Removed) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.filter_map(|e| e.ok()) {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path(), removed);
            }
        }
    }
    match remove_cgroup_dir(dir) {
        Ok(()) => removed.note(format!("cgroup {}", dir.display())),
        Err(e) => removed.problem(format!("removing cgroup {}: {e}", dir.display())),
    }
}

/// rmdir of a cgroup whose tasks were just killed. A killed task stays attached until its parent
/// reaps it, and the kernel offers no event for that on cgroup v1, so EBUSY is retried for a
/// bounded time (2 s), backing off from 1 ms.
fn remove_cgroup_dir(dir: &Path) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let mut pause = Duration::from_millis(1);
    loop {
        match fs::remove_dir(dir) {
            Err(e)
                if e.raw_os_error() == Some(nix::libc::EBUSY)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// Named network namespaces live in /run/netns as bind-mounted nsfs files.
pub const NETNS_DIR: &str = "/run/netns";

fn remove_netns(matches: &dyn Fn(&str) -> bool, removed: &mut Removed) {
    let Ok(entries) = fs::read_dir(NETNS_DIR) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !matches(&name) {
            continue;
        }
        let path = entry.path();
        let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
        match fs::remove_file(&path) {
            Ok(()) => removed.note(format!("network namespace {name}")),
            // Its lab removed it meanwhile (an interrupt cleans up beside the scenario threads).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => removed.problem(format!("removing network namespace {name}: {e}")),
        }
    }
}

/// Detaches any mount left below `dir` (a runtime that died mid-create can leave its rootfs bind).
fn unmount_below(dir: &Path, removed: &mut Removed) {
    let Ok(points) = crate::lab::hostfs::mount_points_below("self", dir) else {
        return;
    };
    for point in points {
        match nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => removed.note(format!("mount {}", point.display())),
            Err(e) => removed.problem(format!("unmounting {}: {e}", point.display())),
        }
    }
}

/// What a run still holds after every scenario has finished, other than its directory and the
/// shared cgroup parent: each entry is a leak of some scenario's cleanup guard.
pub fn leftovers(run_dir: &Path, run_tag: &str, state_roots: &[PathBuf]) -> Vec<String> {
    let mut found = Vec::new();
    for root in state_roots {
        for entry in fs::read_dir(root)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
        {
            found.push(format!(
                "runtime state for container {}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    for entry in fs::read_dir(run_dir.join("bundles"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
    {
        found.push(format!("bundle {}", entry.path().display()));
    }
    for mount in crate::lab::cgroups::mount_points() {
        for dir in matching_dirs(&mount, &|name| name.starts_with(run_tag), 3) {
            // The run's own parent cgroup is removed at the end of the run; what is inside it is not ours to leave.
            for child in fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
            {
                if child.file_type().is_ok_and(|t| t.is_dir()) {
                    found.push(format!("cgroup {}", child.path().display()));
                }
            }
        }
    }
    for entry in fs::read_dir(NETNS_DIR)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
    {
        if entry.file_name().to_string_lossy().starts_with(run_tag) {
            found.push(format!(
                "network namespace {}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    if let Ok(mounts) = procfs::process::Process::myself().and_then(|me| me.mountinfo()) {
        for mount in mounts
            .into_iter()
            .filter(|m| m.mount_point.starts_with(run_dir))
        {
            found.push(format!("mount {}", mount.mount_point.display()));
        }
    }
    // A container process has its root inside a bundle of the run.
    for process in procfs::process::all_processes()
        .into_iter()
        .flatten()
        .filter_map(|p| p.ok())
    {
        if process.root().is_ok_and(|root| root.starts_with(run_dir)) {
            found.push(format!(
                "process {} rooted in {}",
                process.pid,
                run_dir.display()
            ));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_or_container_state_left_in_the_run_is_a_leak() {
        let run = tempfile::tempdir().expect("tempdir");
        let state = run.path().join("state-0");
        fs::create_dir_all(state.join("palisade-x-c1")).expect("state");
        fs::create_dir_all(run.path().join("bundles/palisade-x-c1")).expect("bundle");
        let leaks = leftovers(run.path(), "palisade-x", &[state]);
        assert_eq!(leaks.len(), 2, "{leaks:?}");
        assert!(
            leaks[0].contains("runtime state for container palisade-x-c1"),
            "{leaks:?}"
        );
    }

    #[test]
    fn an_empty_run_leaves_nothing() {
        let run = tempfile::tempdir().expect("tempdir");
        assert!(leftovers(run.path(), "palisade-none", &[]).is_empty());
    }
}
