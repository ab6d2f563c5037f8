//! Watching one running guest. Everything the host waits on (the guest's console, its results
//! channel, a signal to us, QEMU's exit, a deadline) arrives as one [`Event`], and each source
//! has one handler on [`Session`].

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;

use super::guard::Interrupts;
use super::protocol::GuestEvent;
use super::qemu::{VmError, VmOptions};
use super::report::GuestReport;

/// A KVM guest prints the kernel banner well within this; silence means KVM cannot boot it.
pub(super) const KVM_PROBE: Duration = Duration::from_secs(3);
/// The guest said it is done; it powers off right after.
const POWER_OFF_GRACE: Duration = Duration::from_secs(10);
/// After QEMU exited, what is still buffered in the sockets arrives within this.
const DRAIN: Duration = Duration::from_secs(1);
/// Console lines kept to show when the guest dies.
const CONSOLE_TAIL: usize = 40;

/// One thing that happened.
#[derive(Debug)]
enum Event {
    /// Bytes on the guest's console (ttyS0); `None`: it closed.
    Console(Option<Vec<u8>>),
    /// Bytes on the results channel (ttyS1); `None`: it closed.
    Results(Option<Vec<u8>>),
    /// SIGINT, SIGTERM or SIGHUP reached us.
    Signal(Signal),
    /// The QEMU process ended.
    QemuExited,
    /// A moment came with nothing else happening.
    Timer(Timer),
}

/// The moments the session waits for, most important first (when several are due, the first
/// one counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// KVM is on probation and the kernel has said nothing yet.
    KvmSilent,
    /// The whole run's time is up.
    Deadline,
    /// The guest reported its exit code but is still running.
    PowerOff,
    /// QEMU is gone and the sockets have been quiet.
    Drained,
}

/// How the session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// QEMU is gone (or the guest is done): look at what the guest reported.
    Stopped,
    /// KVM on probation and the kernel stayed silent.
    KvmSilent,
    /// The run's deadline passed.
    TimedOut,
    Interrupted(Signal),
}

/// One byte stream from QEMU, split into lines.
struct Stream {
    socket: UnixStream,
    open: bool,
    pending: Lines,
}

impl Stream {
    fn new(socket: UnixStream) -> Stream {
        Stream {
            socket,
            open: true,
            pending: Lines::default(),
        }
    }

    /// What one read gives: bytes, or `None` at the end of the stream.
    fn read(&mut self, buf: &mut [u8]) -> Option<Vec<u8>> {
        match self.socket.read(buf) {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(buf[..n].to_vec()),
        }
    }
}

/// Accumulates bytes into lines.
#[derive(Default)]
struct Lines {
    buf: Vec<u8>,
    /// How much of `buf` is known to hold no newline: a long line (the JSON report) arrives in
    /// many small reads, and is not searched again from its start each time.
    scanned: usize,
}

impl Lines {
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(at) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=self.scanned + at).collect();
            self.scanned = 0;
            lines.push(
                String::from_utf8_lossy(&line)
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
            );
        }
        self.scanned = self.buf.len();
        lines
    }
}

/// What the host knows about the guest so far.
pub(super) struct Session<'a> {
    opts: &'a VmOptions,
    signals: &'a Interrupts,
    qemu: BorrowedFd<'a>,
    console: Stream,
    results: Stream,
    qemu_alive: bool,
    /// Give up on this accelerator (rather than fail) when the guest is silent early on.
    probe_kvm: bool,
    launched: Instant,
    deadline: Instant,
    buf: Vec<u8>,
    recent_console: VecDeque<String>,
    kernel_spoke: bool,
    /// From starting QEMU to the init's first line.
    booted: Option<Duration>,
    /// From starting QEMU to the first scenario's verdict.
    first_result: Option<Duration>,
    /// The suite's JSON report (`Err`: why there is none although one was asked for).
    report: Option<Result<GuestReport, String>>,
    /// The suite's exit code, as the guest reported it.
    exit: Option<i32>,
    exit_seen_at: Option<Instant>,
}

/// The sources a session watches.
pub(super) struct Sources<'a> {
    pub console: UnixStream,
    pub results: UnixStream,
    pub signals: &'a Interrupts,
    /// A pidfd on QEMU: readable once it exits.
    pub qemu: BorrowedFd<'a>,
}

impl<'a> Session<'a> {
    pub fn new(
        opts: &'a VmOptions,
        sources: Sources<'a>,
        probe_kvm: bool,
        launched: Instant,
        deadline: Instant,
    ) -> Session<'a> {
        Session {
            opts,
            signals: sources.signals,
            qemu: sources.qemu,
            console: Stream::new(sources.console),
            results: Stream::new(sources.results),
            qemu_alive: true,
            probe_kvm,
            launched,
            deadline,
            buf: vec![0u8; 64 * 1024],
            recent_console: VecDeque::new(),
            kernel_spoke: false,
            booted: None,
            first_result: None,
            report: None,
            exit: None,
            exit_seen_at: None,
        }
    }

    /// Handles events until one ends the session.
    pub fn run(&mut self) -> Result<End, VmError> {
        loop {
            for event in self.wait()? {
                let end = match event {
                    Event::Console(bytes) => self.on_console(bytes),
                    Event::Results(bytes) => self.on_results(bytes),
                    Event::Signal(signal) => Some(End::Interrupted(signal)),
                    Event::QemuExited => self.on_qemu_exit(),
                    Event::Timer(timer) => Some(self.on_timer(timer)),
                };
                if let Some(end) = end {
                    return Ok(end);
                }
            }
            let _ = std::io::stdout().flush();
        }
    }

    /// The timers that are set, most important first.
    fn timers(&self, now: Instant) -> Vec<(Instant, Timer)> {
        let mut timers = Vec::with_capacity(4);
        if self.probe_kvm && !self.kernel_spoke {
            timers.push((self.launched + KVM_PROBE, Timer::KvmSilent));
        }
        timers.push((self.deadline, Timer::Deadline));
        if let Some(at) = self.exit_seen_at {
            timers.push((at + POWER_OFF_GRACE, Timer::PowerOff));
        }
        if !self.qemu_alive && self.exit.is_none() {
            // Read what is left until the sockets say end of stream, or stay quiet this long.
            timers.push((now + DRAIN, Timer::Drained));
        }
        timers
    }

    /// Waits for the next events: a due timer, or whatever sources are ready, in the order
    /// console, results, signal, QEMU (so output is read before QEMU's end is noticed).
    fn wait(&mut self) -> Result<Vec<Event>, VmError> {
        loop {
            let now = Instant::now();
            let timers = self.timers(now);
            if let Some((_, timer)) = timers.iter().find(|(at, _)| *at <= now) {
                return Ok(vec![Event::Timer(*timer)]);
            }
            let wake = timers.iter().map(|(at, _)| *at).min().unwrap_or(now);
            let timeout = PollTimeout::try_from(wake - now).unwrap_or(PollTimeout::MAX);

            #[derive(Clone, Copy)]
            enum Source {
                Console,
                Results,
                Signal,
                Qemu,
            }
            let mut fds = Vec::with_capacity(4);
            let mut sources = Vec::with_capacity(4);
            let mut watch = |fd, source| {
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
                sources.push(source);
            };
            if self.console.open {
                watch(self.console.socket.as_fd(), Source::Console);
            }
            if self.results.open {
                watch(self.results.socket.as_fd(), Source::Results);
            }
            watch(self.signals.as_fd(), Source::Signal);
            if self.qemu_alive {
                watch(self.qemu, Source::Qemu);
            }
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(super::qemu::io("poll")(e.into())),
            }
            let ready: Vec<Source> = fds
                .iter()
                .zip(&sources)
                .filter(|(fd, _)| fd.revents().is_some_and(|r| !r.is_empty()))
                .map(|(_, source)| *source)
                .collect();
            drop(fds);
            let mut events = Vec::with_capacity(ready.len());
            for source in ready {
                events.extend(match source {
                    Source::Console => Some(Event::Console(self.console.read(&mut self.buf))),
                    Source::Results => Some(Event::Results(self.results.read(&mut self.buf))),
                    Source::Signal => self.signals.pending().map(Event::Signal),
                    Source::Qemu => Some(Event::QemuExited),
                });
            }
            if !events.is_empty() {
                return Ok(events);
            }
        }
    }

    /// QEMU gone and both streams closed: nothing more can happen.
    fn stopped_if_all_gone(&self) -> Option<End> {
        (!self.qemu_alive && !self.console.open && !self.results.open).then_some(End::Stopped)
    }

    fn on_console(&mut self, bytes: Option<Vec<u8>>) -> Option<End> {
        let Some(bytes) = bytes else {
            self.console.open = false;
            return self.stopped_if_all_gone();
        };
        for line in self.console.pending.push(&bytes) {
            if line.contains("Linux version") || line.starts_with('[') {
                self.kernel_spoke = true;
            }
            if self.opts.verbose {
                println!("guest| {line}");
            }
            self.recent_console.push_back(line);
            if self.recent_console.len() > CONSOLE_TAIL {
                self.recent_console.pop_front();
            }
        }
        None
    }

    fn on_results(&mut self, bytes: Option<Vec<u8>>) -> Option<End> {
        let Some(bytes) = bytes else {
            self.results.open = false;
            return self.stopped_if_all_gone();
        };
        for line in self.results.pending.push(&bytes) {
            match GuestEvent::from_line(&line) {
                Some(event) => self.on_guest_event(event),
                None if self.opts.verbose => println!("guest? {line}"),
                None => {}
            }
        }
        None
    }

    /// One protocol line from the guest's init.
    fn on_guest_event(&mut self, event: GuestEvent) {
        match event {
            GuestEvent::Booted { uptime, kernel } => {
                self.kernel_spoke = true;
                self.booted = Some(self.launched.elapsed());
                println!(
                    "palisade: vm: guest init up after {:.1} s (guest kernel {kernel}, {uptime:.1} s since it started)",
                    self.launched.elapsed().as_secs_f64()
                );
            }
            GuestEvent::Log { message } => {
                if self.opts.verbose {
                    println!("palisade: vm: guest: {message}");
                }
            }
            GuestEvent::Out { line } => println!("{line}"),
            GuestEvent::FirstVerdict => {
                self.first_result = Some(self.launched.elapsed());
            }
            GuestEvent::Report { text } => self.report = Some(GuestReport::parse(text)),
            GuestEvent::NoReport { reason } => self.report = Some(Err(reason)),
            GuestEvent::Exit { code, error } => {
                if let Some(error) = error {
                    println!("palisade: vm: the guest could not run the suite: {error}");
                }
                self.exit = Some(code);
                self.exit_seen_at = Some(Instant::now());
            }
        }
    }

    fn on_qemu_exit(&mut self) -> Option<End> {
        self.qemu_alive = false;
        self.stopped_if_all_gone()
    }

    fn on_timer(&mut self, timer: Timer) -> End {
        match timer {
            Timer::KvmSilent => End::KvmSilent,
            Timer::Deadline => End::TimedOut,
            Timer::PowerOff | Timer::Drained => End::Stopped,
        }
    }

    /// What the host learned, once the session is over.
    pub fn outcome(self, end: End) -> Outcome {
        Outcome {
            failure: self.failure(end),
            during: self.phase(),
            exit: self.exit,
            booted: self.booted,
            first_result: self.first_result,
            report: self.report,
            recent_console: self.recent_console,
        }
    }

    /// Why the guest did not deliver an exit code, when it did not.
    fn failure(&self, end: End) -> Option<String> {
        if self.exit.is_some() {
            return None;
        }
        let panicked = self
            .recent_console
            .iter()
            .any(|l| l.contains("Kernel panic"));
        Some(match end {
            End::TimedOut => format!(
                "the guest did not finish within {} s and was killed",
                self.opts.timeout.as_secs()
            ),
            _ if panicked => "the guest kernel panicked".to_owned(),
            _ => "the guest stopped without reporting the suite's exit code".to_owned(),
        })
    }

    /// What the guest was doing, for the line an interruption prints.
    fn phase(&self) -> &'static str {
        if self.exit.is_some() {
            "waiting for the guest to power off"
        } else if self.booted.is_some() {
            "running the suite in the guest"
        } else {
            "booting the guest"
        }
    }
}

/// What a session found out.
pub(super) struct Outcome {
    /// The suite's exit code, as the guest reported it.
    pub exit: Option<i32>,
    /// Why there is no exit code.
    pub failure: Option<String>,
    /// What the guest was doing when the session ended.
    pub during: &'static str,
    /// From starting QEMU to the init's first line.
    pub booted: Option<Duration>,
    /// From starting QEMU to the first scenario's verdict.
    pub first_result: Option<Duration>,
    pub report: Option<Result<GuestReport, String>>,
    /// The console's last lines, to show when the guest died.
    pub recent_console: VecDeque<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::qemu::Accel;
    use crate::vm::{CgroupLayout, guard::Interrupts};
    use std::process::{Child, Command, Stdio};

    fn options(timeout: Duration) -> VmOptions {
        VmOptions {
            kernel: None,
            cgroup: CgroupLayout::V2,
            accel: Accel::Tcg,
            memory_mib: 256,
            cpus: 1,
            timeout,
            verbose: false,
            programs: Vec::new(),
            suite_args: Vec::new(),
            palisade: std::path::PathBuf::new(),
            env: Vec::new(),
        }
    }

    /// A stand-in for QEMU: it runs until its stdin closes.
    fn stand_in() -> (Child, std::os::fd::OwnedFd) {
        let child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("cat");
        let pid = rustix::process::Pid::from_child(&child);
        let pidfd =
            rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).expect("pidfd");
        (child, pidfd)
    }

    fn send(to: &mut UnixStream, events: &[GuestEvent]) {
        for event in events {
            writeln!(to, "{}", event.to_line()).expect("write");
        }
    }

    #[test]
    fn a_guest_that_reports_and_powers_off_gives_its_exit_code_and_report() {
        let opts = options(Duration::from_secs(60));
        let interrupts = Interrupts::catch().expect("signalfd");
        let (mut qemu, pidfd) = stand_in();
        let (console, mut console_guest) = UnixStream::pair().expect("pair");
        let (results, mut results_guest) = UnixStream::pair().expect("pair");
        let report = crate::report::json::render(&crate::report::fixture::report()).expect("json");
        writeln!(console_guest, "[    0.000000] Linux version 6.1.0").expect("write");
        send(
            &mut results_guest,
            &[
                GuestEvent::Booted {
                    uptime: 1.0,
                    kernel: "6.1.0".into(),
                },
                GuestEvent::Out {
                    line: "test [runc] pid::x ... ok".into(),
                },
                GuestEvent::FirstVerdict,
                GuestEvent::Report { text: report },
                GuestEvent::Exit {
                    code: 1,
                    error: None,
                },
            ],
        );
        // The guest powers off: its ports close and QEMU exits.
        drop((console_guest, results_guest));
        drop(qemu.stdin.take());
        let now = Instant::now();
        let sources = Sources {
            console,
            results,
            signals: &interrupts,
            qemu: pidfd.as_fd(),
        };
        let mut session = Session::new(&opts, sources, true, now, now + opts.timeout);
        let end = session.run().expect("runs");
        assert_eq!(end, End::Stopped);
        let outcome = session.outcome(end);
        assert_eq!(outcome.exit, Some(1));
        assert_eq!(outcome.failure, None);
        assert!(outcome.booted.is_some() && outcome.first_result.is_some());
        let report = outcome.report.expect("a report").expect("readable");
        assert_eq!(report.counts.failed, report.failed.len());
        assert_eq!(outcome.during, "waiting for the guest to power off");
        let _ = qemu.wait();
    }

    #[test]
    fn a_guest_that_stops_without_an_exit_code_is_a_failure_and_a_silent_one_times_out() {
        let interrupts = Interrupts::catch().expect("signalfd");

        let opts = options(Duration::from_secs(60));
        let (mut qemu, pidfd) = stand_in();
        let (console, mut console_guest) = UnixStream::pair().expect("pair");
        let (results, results_guest) = UnixStream::pair().expect("pair");
        writeln!(console_guest, "Kernel panic - not syncing: VFS").expect("write");
        drop((console_guest, results_guest));
        drop(qemu.stdin.take());
        let now = Instant::now();
        let sources = Sources {
            console,
            results,
            signals: &interrupts,
            qemu: pidfd.as_fd(),
        };
        let mut session = Session::new(&opts, sources, false, now, now + opts.timeout);
        let end = session.run().expect("runs");
        let outcome = session.outcome(end);
        assert_eq!((end, outcome.exit), (End::Stopped, None));
        assert_eq!(
            outcome.failure.as_deref(),
            Some("the guest kernel panicked")
        );
        assert_eq!(outcome.during, "booting the guest");
        let _ = qemu.wait();

        // Nothing at all happens: the deadline ends it.
        let opts = options(Duration::from_millis(200));
        let (mut qemu, pidfd) = stand_in();
        let (console, _console_guest) = UnixStream::pair().expect("pair");
        let (results, _results_guest) = UnixStream::pair().expect("pair");
        let now = Instant::now();
        let sources = Sources {
            console,
            results,
            signals: &interrupts,
            qemu: pidfd.as_fd(),
        };
        let mut session = Session::new(&opts, sources, false, now, now + opts.timeout);
        let end = session.run().expect("runs");
        assert_eq!(end, End::TimedOut);
        let failure = session.outcome(end).failure.expect("a failure");
        assert!(failure.contains("did not finish within"), "{failure}");
        drop(qemu.stdin.take());
        let _ = qemu.wait();
    }

    #[test]
    fn lines_are_split_across_reads() {
        let mut lines = Lines::default();
        assert!(lines.push(b"PALISADE {\"a\"").is_empty());
        assert!(lines.push(b"}").is_empty());
        assert_eq!(lines.push(b"\r\nnext\nla"), ["PALISADE {\"a\"}", "next"]);
        assert_eq!(lines.push(b"st\n"), ["last"]);
    }
}
