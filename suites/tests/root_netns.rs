//! The network scenarios never change the real host's root network namespace: its links,
//! addresses, routes, nftables ruleset and `ip_forward` are the same before and after a run, and
//! after a run that was SIGKILLed mid-scenario and then `palisade cleanup`. These tests run the
//! `palisade` binary; without root or `ip` they are reported as ignored, with the reason.

use std::io::{BufRead, BufReader};
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use palisade_common::testkit::{Test, TestResult, require_program, require_root};
use palisade_harness::exec::ProcessHandle;
use palisade_harness::lab::netlab::NetSnapshot;
use palisade_harness::run::cleanup::NETNS_DIR;
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::inotify;

const PALISADE: &str = env!("CARGO_BIN_EXE_palisade");

fn requirements() -> TestResult {
    require_root()?;
    require_program("ip")?;
    Ok(())
}

/// The run id from palisade's first line: `palisade: run <id> on kernel ...`.
fn run_id(line: &str) -> Option<String> {
    line.strip_prefix("palisade: run ")?
        .split_whitespace()
        .next()
        .map(str::to_owned)
}

/// The named network namespaces the run `id` left in /run/netns.
fn netns_of(id: &str) -> Vec<String> {
    let prefix = format!("palisade-{id}");
    std::fs::read_dir(NETNS_DIR)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

fn assert_unchanged(before: &NetSnapshot, when: &str) {
    let after = NetSnapshot::take().expect("snapshot of the root network namespace");
    let diff = before.diff(&after);
    assert!(
        diff.is_empty(),
        "the root network namespace changed {when}:\n{}",
        diff.join("\n")
    );
}

fn network_scenarios_leave_the_root_namespace_unchanged() -> TestResult {
    requirements()?;
    let before = NetSnapshot::take().expect("snapshot of the root network namespace");
    // The scenarios and their negative controls (which take ip_forward and NAT away in the lab).
    for (verb, filter) in [
        ("run", "network::"),
        ("run", "nat::"),
        ("selftest", "network::"),
        ("selftest", "nat::"),
    ] {
        let out = Command::new(PALISADE)
            .args([verb, filter])
            .output()
            .expect("palisade runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "`palisade {verb} {filter}` failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = stdout
            .lines()
            .find_map(run_id)
            .expect("palisade prints its run id");
        assert_eq!(
            netns_of(&id),
            Vec::<String>::new(),
            "run {id} left namespaces"
        );
    }
    assert_unchanged(&before, "after the network scenarios ran");
    Ok(())
}

fn a_killed_run_is_cleaned_up() -> TestResult {
    requirements()?;
    let before = NetSnapshot::take().expect("snapshot of the root network namespace");
    // Watch /run/netns before the run starts, so the lab's creation is an event we wait on.
    std::fs::create_dir_all(NETNS_DIR).expect("/run/netns");
    let watch = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
        .expect("inotify");
    inotify::add_watch(&watch, NETNS_DIR, inotify::WatchFlags::CREATE).expect("watch /run/netns");

    let mut child = Command::new(PALISADE)
        .args(["run", "--test-threads", "1", "network::bridge_reachability"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("palisade starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut stdout = BufReader::new(stdout);
    let mut first = String::new();
    stdout.read_line(&mut first).expect("palisade prints");
    let id = run_id(&first).expect("palisade prints its run id");
    // Keep reading: a closed pipe would make palisade's next println! panic.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));

    // The scenario's second container namespace exists: the lab is half built and in use.
    let wanted = format!("palisade-{id}-");
    wait_for_created(&watch, |name| {
        name.starts_with(&wanted) && name.ends_with("-c1")
    });
    let children = children_of(child.id() as i32);
    child.kill().expect("SIGKILL palisade");
    let _ = child.wait();
    // Its in-flight commands (`ip`, the runtime) finish on their own; let them, so cleanup sees
    // everything they made.
    for handle in children {
        let _ = handle.wait(Duration::from_secs(10));
    }
    assert!(
        !netns_of(&id).is_empty(),
        "the killed run should have left its lab behind"
    );

    let out = Command::new(PALISADE)
        .arg("cleanup")
        .output()
        .expect("palisade cleanup runs");
    assert!(
        out.status.success(),
        "`palisade cleanup` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        netns_of(&id),
        Vec::<String>::new(),
        "cleanup left namespaces"
    );
    assert!(
        !std::env::temp_dir().join(format!("palisade-{id}")).exists(),
        "cleanup left the run directory"
    );
    assert_unchanged(&before, "after a killed run and `palisade cleanup`");
    Ok(())
}

/// Waits (at most 60 s) for an entry whose name matches to be created in the watched directory.
fn wait_for_created(watch: &impl AsFd, matches: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = [MaybeUninit::uninit(); 4096];
    loop {
        let mut reader = inotify::Reader::new(watch, &mut buf);
        loop {
            match reader.next() {
                Ok(event) => {
                    let name = event
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    if matches(&name) {
                        return;
                    }
                }
                Err(rustix::io::Errno::AGAIN) => break,
                Err(e) => panic!("reading inotify events: {e}"),
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "the run never built its lab");
        let spec = Timespec::try_from(left).expect("timespec");
        let mut fds = [PollFd::new(watch, PollFlags::IN)];
        let _ = poll(&mut fds, Some(&spec));
    }
}

/// Handles on the direct children of `pid` (all its threads').
fn children_of(pid: i32) -> Vec<ProcessHandle> {
    let tasks = Path::new("/proc").join(pid.to_string()).join("task");
    let mut pids = Vec::new();
    for task in std::fs::read_dir(tasks).into_iter().flatten().flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            pids.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    pids.into_iter()
        .filter_map(|p| ProcessHandle::open(p).ok().flatten())
        .collect()
}

fn main() -> std::process::ExitCode {
    palisade_common::testkit::main(&[
        Test::serial(
            "network_scenarios_leave_the_root_namespace_unchanged",
            network_scenarios_leave_the_root_namespace_unchanged,
        ),
        Test::serial("a_killed_run_is_cleaned_up", a_killed_run_is_cleaned_up),
    ])
}
