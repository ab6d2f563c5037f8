//! Stopping is as clean as finishing: `palisade run`, interrupted with SIGINT or SIGTERM at 20
//! random moments each — while containers are created, while a cgroup burner spins, while a
//! network lab stands, and while the report is being written — exits with 128 + the signal and
//! leaves nothing named after its run: no network namespace, cgroup, mount, process, temp dir or
//! runtime state, and the root network namespace as it was.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use palisade_common::testkit::{Test, TestResult, require_program, require_root};
use palisade_harness::lab::netlab::NetSnapshot;

const PALISADE: &str = env!("CARGO_BIN_EXE_palisade");
const MOMENTS: usize = 20;

/// What the run is doing when the signal comes.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// Containers being created and started (pid scenarios make many, quickly).
    Create,
    /// A CPU burner measured in its cgroup.
    Burn,
    /// A network lab standing, with its containers.
    Lab,
    /// Writing the report (to a FIFO nobody reads, so the run waits right there).
    Report,
}

impl Moment {
    /// The scenarios the run is made of (one trial at a time, so the run lasts).
    fn filters(self) -> &'static [&'static str] {
        match self {
            Moment::Create => &[
                "pid::",
                "uts::",
                "ipc::",
                "capabilities::",
                "namespaces::",
                "rootfs::",
            ],
            Moment::Burn => &["cgroups::quota_holds"],
            Moment::Lab => &["network::", "nat::"],
            Moment::Report => &["kernel::"],
        }
    }

    /// The window after the run's first line in which the signal is sent (random within it),
    /// well inside what such a run takes here (about 1.4 s, 4.3 s and 1.2 s).
    fn window(self) -> (u64, u64) {
        match self {
            Moment::Create => (50, 700),
            Moment::Burn => (300, 2500),
            Moment::Lab => (100, 700),
            Moment::Report => (0, 0),
        }
    }
}

/// A small xorshift generator: the moments are random, and the seed is printed to replay them.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let seed = std::env::var("PALISADE_INTERRUPT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
                    | 1
            });
        println!("moments from PALISADE_INTERRUPT_SEED={seed}");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

fn runtimes() -> String {
    let mut runtimes = vec![env!("CARGO_BIN_EXE_palisade-runtime").to_owned()];
    if palisade_common::find_program("runc").is_some() {
        runtimes.push("runc".into());
    }
    runtimes.join(",")
}

/// Forwards the child's stdout lines to a channel, so the test waits on them as events.
fn lines_of(child: &mut Child) -> Receiver<String> {
    let (sender, receiver) = std::sync::mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
    }
    receiver
}

/// Waits for a line that satisfies `wanted`; returns it.
fn wait_for(lines: &Receiver<String>, within: Duration, wanted: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if wanted(&line) => return line,
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => panic!("no such line within {within:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("palisade closed its output first"),
        }
    }
}

/// Everything on this machine that still carries `tag` (`palisade-<run id>`).
fn leftovers(tag: &str) -> Vec<String> {
    let mut found = Vec::new();
    let tmp = std::env::temp_dir();
    for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.contains(tag) {
            found.push(format!("temp dir {name}"));
        }
    }
    for entry in std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.contains(tag) {
            found.push(format!("netns {name}"));
        }
    }
    for mount in palisade_harness::lab::cgroups::mount_points() {
        found.extend(
            walk(&mount, 3)
                .into_iter()
                .filter(|p| p.to_string_lossy().contains(tag))
                .map(|p| format!("cgroup {}", p.display())),
        );
    }
    for mount in palisade_common::mountinfo::read("self").unwrap_or_default() {
        if mount.mount_point.to_string_lossy().contains(tag)
            || mount
                .mount_source
                .as_deref()
                .is_some_and(|s| s.contains(tag))
        {
            found.push(format!("mount {}", mount.mount_point.display()));
        }
    }
    let run_dir = tmp.join(tag);
    for process in procfs::process::all_processes()
        .into_iter()
        .flatten()
        .flatten()
    {
        let rooted = process.root().is_ok_and(|r| r.starts_with(&run_dir));
        let named = process
            .cmdline()
            .is_ok_and(|c| c.iter().any(|a| a.contains(tag)));
        let alive = process.stat().is_ok_and(|s| !matches!(s.state, 'Z' | 'X'));
        if (rooted || named) && alive {
            let cmdline = process.cmdline().unwrap_or_default().join(" ");
            found.push(format!("process {} ({cmdline})", process.pid));
        }
    }
    found
}

fn walk(dir: &Path, depth: usize) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.push(entry.path());
            if depth > 1 {
                found.extend(walk(&entry.path(), depth - 1));
            }
        }
    }
    found
}

/// One interrupted run: its exit code and what it left.
fn interrupt_once(signal: Signal, moment: Moment, delay: Duration, scratch: &Path) {
    let mut command = Command::new(PALISADE);
    command
        .arg("run")
        .args(moment.filters())
        .args(["--test-threads", "1", "--runtime", &runtimes()])
        .env_remove("PALISADE_REPORT")
        .env_remove("PALISADE_RUNTIME")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Moment::Report = moment {
        let fifo = scratch.join("report.fifo");
        let _ = std::fs::remove_file(&fifo);
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        command
            .arg("--report")
            .arg(format!("json={}", fifo.display()));
    }
    let mut child = command.spawn().expect("palisade starts");
    let lines = lines_of(&mut child);
    let first = wait_for(&lines, Duration::from_secs(30), |l| {
        l.starts_with("palisade: run ")
    });
    let run_id = first
        .strip_prefix("palisade: run ")
        .and_then(|r| r.split_whitespace().next())
        .expect("a run id")
        .to_owned();
    match moment {
        // The summary is printed right before the reports are written: the run then blocks in
        // opening the FIFO, which is the moment wanted.
        Moment::Report => {
            wait_for(&lines, Duration::from_secs(120), |l| {
                l.starts_with("palisade: ") && l.contains(" passed, ")
            });
        }
        _ => std::thread::sleep(delay),
    }
    let sent = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal)
        .expect("signal palisade");
    let status = child.wait().expect("palisade exits");
    let took = sent.elapsed();
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        use std::io::Read;
        let _ = err.read_to_string(&mut stderr);
    }
    let tag = format!("palisade-{run_id}");
    let left = leftovers(&tag);
    println!(
        "{signal:?} at {moment:?} (+{} ms): exit {:?} after {} ms; {}",
        delay.as_millis(),
        status.code(),
        took.as_millis(),
        stderr.lines().last().unwrap_or("")
    );
    assert_eq!(
        status.code(),
        Some(128 + signal as i32),
        "{signal:?} at {moment:?}: {stderr}"
    );
    assert!(
        took < Duration::from_secs(5),
        "{signal:?} at {moment:?}: took {took:?} to stop"
    );
    assert!(
        left.is_empty(),
        "{signal:?} at {moment:?} (+{delay:?}) left behind: {left:?}\n{stderr}"
    );
}

fn interrupted_runs_leave_nothing(signal: Signal) -> TestResult {
    require_root()?;
    require_program("ip")?;
    require_program("nft")?;
    let before = NetSnapshot::take().expect("snapshot of the root network namespace");
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng::seeded();
    let moments = [Moment::Create, Moment::Burn, Moment::Lab, Moment::Report];
    for n in 0..MOMENTS {
        let moment = moments[n % moments.len()];
        let (low, high) = moment.window();
        let delay = Duration::from_millis(rng.between(low, high));
        interrupt_once(signal, moment, delay, scratch.path());
    }
    let after = NetSnapshot::take().expect("snapshot of the root network namespace");
    let diff = before.diff(&after);
    assert!(
        diff.is_empty(),
        "the root network namespace changed:\n{}",
        diff.join("\n")
    );
    Ok(())
}

fn sigint_at_20_moments() -> TestResult {
    interrupted_runs_leave_nothing(Signal::SIGINT)
}

fn sigterm_at_20_moments() -> TestResult {
    interrupted_runs_leave_nothing(Signal::SIGTERM)
}

/// A run that cannot start leaves nothing behind: a missing runtime, a runtime that fails
/// `--version`, a report that cannot be written. (A missing probe cannot happen to `palisade`,
/// which carries it; `RunEnv`'s own test covers a run given a probe that is not there.)
fn start_up_failures_leave_nothing() -> TestResult {
    // A temp dir of the test's own: other runs on this machine cannot blur what is left.
    let tmp = tempfile::tempdir().expect("tempdir");
    let broken = tmp.path().join("broken-runtime");
    palisade_common::testkit::write_executable(&broken, "#!/bin/sh\necho broken >&2\nexit 3\n")
        .expect("write");
    let scratch = tmp.path().join("tmp");
    std::fs::create_dir(&scratch).expect("mkdir");
    let broken_arg = broken.display().to_string();
    let cases: Vec<(PathBuf, Vec<&str>)> = vec![
        (
            PALISADE.into(),
            vec!["run", "--runtime", "/nonexistent/runtime"],
        ),
        (PALISADE.into(), vec!["run", "--runtime", &broken_arg]),
        (
            PALISADE.into(),
            vec![
                "run",
                "--report",
                "json=/nonexistent/dir/report.json",
                "kernel::",
            ],
        ),
    ];
    for (program, args) in cases {
        let output = Command::new(&program)
            .args(&args)
            .env("TMPDIR", &scratch)
            .env_remove("PALISADE_RUNTIME")
            .env_remove("PALISADE_REPORT")
            .output()
            .expect("palisade runs");
        assert!(
            !output.status.success(),
            "{args:?} should fail:\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
        let left: Vec<String> = std::fs::read_dir(&scratch)
            .expect("scratch")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            left.is_empty(),
            "`palisade {}` left {left:?}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    palisade_common::testkit::main(&[
        Test::serial("sigint_at_20_moments", sigint_at_20_moments),
        Test::serial("sigterm_at_20_moments", sigterm_at_20_moments),
        Test::serial(
            "start_up_failures_leave_nothing",
            start_up_failures_leave_nothing,
        ),
    ])
}
