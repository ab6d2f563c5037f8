//! Stopping is as clean as finishing: SIGINT, SIGTERM and SIGHUP end a run by stopping what it
//! runs and removing what it made, then exiting with 128 + the signal.
//!
//! [`install`] starts a watcher thread that receives the three signals through `signal-hook`'s
//! self-pipe (a real handler, not a blocked mask: a blocked mask would be inherited by every
//! runtime and container the run starts, since `std::process` does not reset it, while handlers
//! revert to the default across execve). On the first signal the watcher:
//! 1. marks the process interrupted, so no trial starts and no container or lab is made any more;
//! 2. kills the runtime commands in flight (a `create` half done is finished off by step 4);
//! 3. kills and force-deletes every live container through its runtime (burners included);
//! 4. removes each active run's labs, cgroups, mounts, engine daemons and directory;
//! 5. prints one line saying what was interrupted and what was removed, and exits.
//!
//! A second SIGINT (or any second signal) during that cleanup exits at once, saying which
//! `palisade cleanup` finishes the job.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use nix::sys::signal::Signal;
use signal_hook::iterator::Signals;

use crate::run::cleanup::{Removed, cleanup_run};
use crate::run::env::RunEnv;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static ACTIVE: Mutex<Vec<Arc<RunEnv>>> = Mutex::new(Vec::new());
/// What the process is doing, for the one line an interrupt prints (`running trials`, ...).
static PHASE: Mutex<&'static str> = Mutex::new("starting");

const SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// True once a stop signal has arrived: nothing new may start.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

std::thread_local! {
    static CLEANER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread may start a program: always, until an interrupt; then only the thread
/// that cleans up (a scenario thread unwinding would otherwise start commands, `ip netns del`
/// among them, that outlive the process).
pub fn may_spawn() -> bool {
    !interrupted() || CLEANER.with(std::cell::Cell::get)
}

/// Once interrupted, the run's own path must not end the process (with its own exit code, or
/// while the interrupt's cleanup runs): it waits here for the watcher, which exits.
pub fn wait_if_interrupted() {
    while interrupted() {
        std::thread::park();
    }
}

/// Takes over SIGINT, SIGTERM and SIGHUP for the rest of the process. An error leaves the
/// default handling, which is still correct, only not clean: the caller may report it.
pub fn install() -> std::io::Result<()> {
    let signals = Signals::new(SIGNALS.map(|s| s as i32))?;
    std::thread::Builder::new()
        .name("palisade-signals".into())
        .spawn(move || watch(signals))?;
    Ok(())
}

/// A run whose leftovers an interrupt must remove, until [`unregister`].
pub fn register(run: &Arc<RunEnv>) {
    if let Ok(mut active) = ACTIVE.lock() {
        active.push(run.clone());
    }
}

pub fn unregister(run: &RunEnv) {
    if let Ok(mut active) = ACTIVE.lock() {
        active.retain(|r| r.id != run.id);
    }
}

/// Names what the process is doing now, for the interrupt's one line.
pub fn set_phase(phase: &'static str) {
    if let Ok(mut current) = PHASE.lock() {
        *current = phase;
    }
}

fn phase() -> &'static str {
    PHASE.lock().map(|p| *p).unwrap_or("running")
}

fn watch(mut signals: Signals) {
    let mut arriving = signals.forever().filter_map(|n| Signal::try_from(n).ok());
    let Some(first) = arriving.next() else { return };
    INTERRUPTED.store(true, Ordering::SeqCst);
    let started = Instant::now();
    // The cleanup runs beside this thread, which keeps listening for a second signal.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let cleaner = std::thread::Builder::new()
        .name("palisade-interrupt-cleanup".into())
        .spawn(move || {
            CLEANER.with(|c| c.set(true));
            let summary = clean_up();
            let _ = done_tx.send(summary);
        });
    if cleaner.is_err() {
        CLEANER.with(|c| c.set(true));
        let summary = clean_up();
        finish(first, &summary, started);
    }
    std::thread::scope(|scope| {
        scope.spawn(|| {
            if let Some(second) = arriving.next() {
                let runs: Vec<String> = ACTIVE
                    .lock()
                    .map(|a| a.iter().map(|r| r.name("")).collect())
                    .unwrap_or_default();
                eprintln!(
                    "palisade: {} during cleanup: exiting now; `palisade cleanup` removes what is \
                     left of {}",
                    signal_name(second),
                    if runs.is_empty() {
                        "this run".to_owned()
                    } else {
                        runs.join(", ").trim_end_matches('-').to_owned()
                    }
                );
                std::process::exit(128 + second as i32);
            }
        });
        if let Ok(summary) = done_rx.recv() {
            finish(first, &summary, started);
        }
    });
}

/// What an interrupt stopped and removed.
struct Summary {
    what: String,
    containers: usize,
    commands: usize,
    removed: Removed,
}

fn clean_up() -> Summary {
    let what = phase();
    let commands = crate::exec::kill_in_flight();
    let runs: Vec<Arc<RunEnv>> = ACTIVE.lock().map(|a| a.clone()).unwrap_or_default();
    let mut containers = 0;
    let mut removed = Removed::default();
    for run in &runs {
        containers += run.live.stop(None).len();
        cleanup_run(&run.dir, &mut removed);
    }
    Summary {
        what: format!(
            "{what} of run {}",
            runs.iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        containers,
        commands,
        removed,
    }
}

fn finish(signal: Signal, summary: &Summary, started: Instant) -> ! {
    let mut kinds: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for item in &summary.removed.items {
        let kind = item.split_whitespace().next().unwrap_or("item");
        *kinds.entry(kind).or_default() += 1;
    }
    let removed: Vec<String> = kinds
        .iter()
        .map(|(kind, n)| format!("{n} {kind}{}", if *n == 1 { "" } else { "s" }))
        .collect();
    eprintln!(
        "palisade: {} interrupted {}: killed {} runtime command(s), stopped {} container(s), removed {} in {:.1} s{}",
        signal_name(signal),
        summary.what,
        summary.commands,
        summary.containers,
        if removed.is_empty() {
            "nothing else".to_owned()
        } else {
            removed.join(", ")
        },
        started.elapsed().as_secs_f64(),
        if summary.removed.problems.is_empty() {
            String::new()
        } else {
            format!(
                "; could not remove: {}",
                summary.removed.problems.join("; ")
            )
        }
    );
    std::process::exit(128 + signal as i32)
}

fn signal_name(signal: Signal) -> &'static str {
    signal.as_str()
}
