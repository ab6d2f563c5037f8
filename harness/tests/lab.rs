//! The lab's mechanism against the real kernel: network namespaces as the lab uses them, and the
//! cgroup v2 reader on a real hierarchy. Without root (or `ip`, or a cgroup2 mount) each test is
//! reported as ignored, with the reason.

use std::net::TcpListener;

use palisade_common::testkit::{Skip, Test, TestResult, require_program, require_root};
use palisade_harness::RunEnv;
use palisade_harness::lab::cgroups::v2::V2;
use palisade_harness::lab::cgroups::{CgroupVersion, hierarchies};
use palisade_harness::lab::netlab::{Lab, NetNs, Plug, UPLINK_IP, in_netns};
use palisade_harness::run::cleanup::NETNS_DIR;
use palisade_harness::run::env::new_run_id;

/// The mechanism's premise, checked: `/proc/sys/net` and `/proc/thread-self/net` show the
/// namespace of the reading *thread*, so a thread that entered a lab namespace sets its
/// ip_forward, and the rest of the process still sees the root namespace's.
fn proc_sys_net_follows_the_reading_thread() -> TestResult {
    require_root()?;
    require_program("ip")?;
    let read = || std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("read");
    let root_before = read();
    let ns = NetNs::add(&format!("palisade-{}-unittest", new_run_id())).expect("netns");
    let wanted = if root_before.trim() == "1" { "0" } else { "1" };
    let seen = in_netns(ns.path(), || {
        std::fs::write("/proc/sys/net/ipv4/ip_forward", wanted).expect("write");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let listed = palisade_probe::net::own_tcp_listeners().expect("listeners");
        (read(), listed.iter().any(|a| a.port() == port))
    })
    .expect("in netns");
    assert_eq!(seen.0.trim(), wanted);
    assert!(
        seen.1,
        "/proc/thread-self/net/tcp shows the thread's namespace"
    );
    assert_eq!(
        read(),
        root_before,
        "the root namespace's ip_forward is untouched"
    );
    Ok(())
}

/// A lab torn down by a panic leaves no namespace behind, and while it lives the uplink
/// works (the outside sees the lab host as 198.51.100.254).
fn a_lab_is_removed_when_its_scenario_panics() -> TestResult {
    require_root()?;
    require_program("ip")?;
    let dir = tempfile::tempdir().expect("tempdir");
    let probe = dir.path().join("probe");
    std::fs::write(&probe, b"not a probe").expect("probe");
    let run = RunEnv::new(&probe).expect("run env");
    let prefix = run.name("");
    let outcome = std::panic::catch_unwind(|| {
        let mut lab = Lab::in_run(&run).expect("lab");
        let outside = lab.add_outside().expect("outside");
        lab.add_container(Plug::Bridged).expect("container netns");
        let seen = lab.connect(outside).expect("connect");
        assert_eq!(seen.peer_ip(), Some(UPLINK_IP.to_string()), "{seen:?}");
        assert!(lab.forwarding().expect("ip_forward"));
        panic!("the scenario panics");
    });
    assert!(outcome.is_err());
    let left: Vec<String> = std::fs::read_dir(NETNS_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    let _ = std::fs::remove_dir_all(&run.dir);
    assert!(left.is_empty(), "left behind: {left:?}");
    Ok(())
}

/// The v2 reader against a real cgroup2 hierarchy: the pure v2 one, or a hybrid host's
/// unified mount (which has no controllers, so only `usage_usec` is there to read). A shell
/// burning CPU is moved into a fresh cgroup; the cgroup is found through /proc/<pid>/cgroup
/// and its usage must match the CPU time the kernel reports for the process itself.
fn finds_and_measures_a_real_process_in_the_unified_hierarchy() -> TestResult {
    use std::process::Command;
    require_root()?;
    let unified = hierarchies()
        .ok()
        .and_then(|all| all.into_iter().find(|h| h.unified))
        .ok_or_else(|| Skip("no cgroup2 hierarchy is mounted".into()))?;
    let v2 = V2::with(unified.clone());
    let path = format!(
        "{}/palisade-{}-unittest",
        unified.root.trim_end_matches('/'),
        new_run_id()
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
    let _ = palisade_harness::exec::wait_for_exit(pid, std::time::Duration::from_secs(60));
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
    Ok(())
}

fn main() -> std::process::ExitCode {
    palisade_common::testkit::main(&[
        Test::serial(
            "proc_sys_net_follows_the_reading_thread",
            proc_sys_net_follows_the_reading_thread,
        ),
        Test::serial(
            "a_lab_is_removed_when_its_scenario_panics",
            a_lab_is_removed_when_its_scenario_panics,
        ),
        Test::new(
            "finds_and_measures_a_real_process_in_the_unified_hierarchy",
            finds_and_measures_a_real_process_in_the_unified_hierarchy,
        ),
    ])
}
