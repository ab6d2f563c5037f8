//! The guest's init (`palisade vm-init`, pid 1 of the throwaway VM): mounts the basics and the
//! cgroup layout asked for, loads modules, runs the suite as a child, forwards its output as
//! protocol lines on ttyS1, reaps every orphan meanwhile, sends the suite's JSON report (where the
//! verdicts come from), then powers the machine off.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::kmod::{ModuleInitFlags, finit_module};
use nix::mount::{MsFlags, mount};
use nix::sys::reboot::{RebootMode, reboot};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

use super::protocol::{
    CONFIG_PATH, CgroupLayout, GuestConfig, GuestEvent, REPORT_PATH, is_verdict_line,
    with_json_report,
};

/// The result channel: the second serial port, or the console if it is missing.
struct Channel(File);

impl Channel {
    fn open() -> Channel {
        let port = OpenOptions::new().write(true).open("/dev/ttyS1");
        let file = port
            .or_else(|_| OpenOptions::new().write(true).open("/dev/console"))
            .or_else(|_| File::create("/dev/null"));
        match file {
            Ok(file) => Channel(file),
            // Nothing to report on and nothing to report with: stop the machine.
            Err(_) => power_off(),
        }
    }

    fn send(&mut self, event: &GuestEvent) {
        let _ = writeln!(self.0, "{}", event.to_line());
    }

    /// Waits until the serial port has sent everything written to it: write(2) returns once the
    /// bytes are in the tty's buffer, and powering off then would lose the last events (the
    /// report and the exit code) of a long report.
    fn drain(&self) {
        let _ = nix::sys::termios::tcdrain(&self.0);
    }

    fn log(&mut self, message: impl Into<String>) {
        self.send(&GuestEvent::Log {
            message: message.into(),
        });
    }
}

/// Runs as pid 1 and never returns: the machine powers off at the end, whatever happened.
pub fn init_main() -> ! {
    // The initramfs root (rootfs) cannot be pivot_root'ed away from, which every runtime does for
    // its containers: move a bind mount of it over `/` so the root has a parent mount.
    let rooted = make_root_pivotable();
    let basics = mount_basics();
    let mut channel = Channel::open();
    channel.send(&GuestEvent::Booted {
        uptime: uptime(),
        kernel: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
    });
    for problem in [rooted.err(), basics.err()].into_iter().flatten() {
        channel.log(problem);
    }
    let exit = match run(&mut channel) {
        Ok(code) => GuestEvent::Exit { code, error: None },
        Err(error) => GuestEvent::Exit {
            code: 2,
            error: Some(error),
        },
    };
    channel.send(&exit);
    channel.drain();
    nix::unistd::sync();
    power_off()
}

fn power_off() -> ! {
    let _ = reboot(RebootMode::RB_POWER_OFF);
    // reboot() only returns on failure; pid 1 must not exit, so wait for the host's timeout.
    loop {
        std::thread::park();
    }
}

fn run(channel: &mut Channel) -> Result<i32, String> {
    let text =
        fs::read_to_string(CONFIG_PATH).map_err(|e| format!("reading {CONFIG_PATH}: {e}"))?;
    let config: GuestConfig =
        serde_json::from_str(&text).map_err(|e| format!("parsing {CONFIG_PATH}: {e}"))?;
    // The name in the guest's report (/etc/hostname says the same; nothing else reads it).
    nix::unistd::sethostname("palisade-vm").map_err(|e| format!("setting the hostname: {e}"))?;
    mount_cgroups(config.cgroup)
        .map_err(|e| format!("mounting cgroups ({}): {e}", config.cgroup))?;
    channel.log(format!("cgroup layout {}", config.cgroup));
    let mut loaded = 0;
    for module in &config.modules {
        match load_module(module) {
            Ok(()) => loaded += 1,
            Err(e) => channel.log(format!("module {module}: {e}")),
        }
    }
    channel.log(format!(
        "{loaded} of {} modules loaded",
        config.modules.len()
    ));
    run_suite(channel, &config)
}

fn make_root_pivotable() -> Result<(), String> {
    let step = |what: &str, r: nix::Result<()>| r.map_err(|e| format!("{what}: {e}"));
    step(
        "bind-mounting / on /newroot",
        mount(
            Some("/"),
            "/newroot",
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        ),
    )?;
    step("chdir /newroot", nix::unistd::chdir("/newroot"))?;
    step(
        "moving /newroot to /",
        mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>),
    )?;
    step("chroot", nix::unistd::chroot("."))?;
    step("chdir /", nix::unistd::chdir("/"))
}

fn mount_fs(source: &str, target: &str, fstype: &str, data: Option<&str>) -> Result<(), String> {
    let _ = fs::create_dir_all(target);
    mount(
        Some(source),
        target,
        Some(fstype),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        data,
    )
    .map_err(|e| format!("mounting {fstype} on {target}: {e}"))
}

fn mount_basics() -> Result<(), String> {
    mount_fs("proc", "/proc", "proc", None)?;
    mount_fs("sysfs", "/sys", "sysfs", None)?;
    let _ = fs::create_dir_all("/dev");
    mount(
        Some("devtmpfs"),
        "/dev",
        Some("devtmpfs"),
        MsFlags::MS_NOSUID,
        Some("mode=0755"),
    )
    .map_err(|e| format!("mounting devtmpfs on /dev: {e}"))?;
    mount_fs(
        "devpts",
        "/dev/pts",
        "devpts",
        Some("newinstance,ptmxmode=0666"),
    )?;
    mount_fs("shm", "/dev/shm", "tmpfs", Some("mode=1777"))?;
    mount_fs("mqueue", "/dev/mqueue", "mqueue", None)?;
    // /tmp holds every bundle; runtimes exec from there, so no noexec.
    mount(
        Some("tmpfs"),
        "/tmp",
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    )
    .map_err(|e| format!("mounting tmpfs on /tmp: {e}"))?;
    mount(
        Some("tmpfs"),
        "/run",
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )
    .map_err(|e| format!("mounting tmpfs on /run: {e}"))?;
    Ok(())
}

/// The controllers the kernel offers, from `/proc/cgroups`.
fn controllers() -> Vec<String> {
    fs::read_to_string("/proc/cgroups")
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let name = fields.next()?;
            let enabled = fields.nth(2)?;
            (enabled == "1").then(|| name.to_owned())
        })
        .collect()
}

fn mount_cgroups(layout: CgroupLayout) -> Result<(), String> {
    let root = "/sys/fs/cgroup";
    if layout == CgroupLayout::V2 {
        return mount_fs("cgroup2", root, "cgroup2", None);
    }
    mount_fs("tmpfs", root, "tmpfs", Some("mode=0755"))?;
    // Pairs systemd co-mounts, with the usual symlinks, so the layout looks like a real host's.
    let available = controllers();
    let mut done = Vec::new();
    for pair in [["cpu", "cpuacct"], ["net_cls", "net_prio"]] {
        if pair.iter().all(|c| available.iter().any(|a| a == c)) {
            let joined = pair.join(",");
            mount_fs(
                "cgroup",
                &format!("{root}/{joined}"),
                "cgroup",
                Some(&joined),
            )?;
            for c in pair {
                let _ = std::os::unix::fs::symlink(&joined, format!("{root}/{c}"));
                done.push(c.to_owned());
            }
        }
    }
    for controller in available.iter().filter(|c| !done.contains(c)) {
        mount_fs(
            "cgroup",
            &format!("{root}/{controller}"),
            "cgroup",
            Some(controller),
        )?;
    }
    if layout == CgroupLayout::Hybrid {
        mount_fs("cgroup2", &format!("{root}/unified"), "cgroup2", None)?;
    }
    Ok(())
}

fn load_module(path: &str) -> Result<(), String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    // A compressed module is handed to the kernel as is: it decompresses it itself.
    let compressed = [".xz", ".zst", ".gz"].iter().any(|ext| path.ends_with(ext));
    let flags = if compressed {
        ModuleInitFlags::from_bits_retain(4) // MODULE_INIT_COMPRESSED_FILE
    } else {
        ModuleInitFlags::empty()
    };
    let params = CString::default();
    match finit_module(&file, &params, flags) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

fn uptime() -> f64 {
    fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn run_suite(channel: &mut Channel, config: &GuestConfig) -> Result<i32, String> {
    let (reader, writer) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let writer2 = writer.try_clone().map_err(|e| format!("pipe: {e}"))?;
    let exe = Path::new("/bin/palisade");
    let report_args = with_json_report(&config.args);
    let mut command = Command::new(exe);
    command
        .args(report_args.as_ref().unwrap_or(&config.args))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", "/root")
        .env("TMPDIR", "/tmp")
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2);
    let child = command
        .spawn()
        .map_err(|e| format!("starting {}: {e}", exe.display()))?;
    let suite = Pid::from_raw(child.id() as i32);
    // The std pipe ends were moved into `command`: drop it so only the child holds them.
    drop(command);

    enum Event {
        Line(String),
        Eof,
        Exited(i32),
    }
    let (events, received) = mpsc::channel();
    let output = events.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if output.send(Event::Line(line)).is_err() {
                return;
            }
        }
        let _ = output.send(Event::Eof);
    });
    // Pid 1 reaps every orphan (container processes the runtimes leave behind); the suite's own
    // status is the one that counts.
    std::thread::spawn(move || {
        let code = loop {
            match waitpid(None, None) {
                Ok(WaitStatus::Exited(pid, code)) if pid == suite => break code,
                Ok(WaitStatus::Signaled(pid, signal, _)) if pid == suite => {
                    break 128 + signal as i32;
                }
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(_) => break 2,
            }
        };
        let _ = events.send(Event::Exited(code));
        // Keep reaping: containers' processes may still end after the suite.
        while !matches!(waitpid(None, None), Err(nix::errno::Errno::ECHILD)) {}
    });
    let (mut eof, mut exited, mut verdict_seen) = (false, None, false);
    let code = loop {
        if let (true, Some(code)) = (eof, exited) {
            break code;
        }
        // Once the suite has exited, a leftover grandchild could hold the pipe open: give the
        // last lines a moment, not forever.
        let event = match exited {
            None => received.recv().map_err(|_| ()),
            Some(_) => received
                .recv_timeout(Duration::from_secs(2))
                .map_err(|_| ()),
        };
        match event {
            // The suite names the guest's report file, which the host does not have.
            Ok(Event::Line(line)) if line == format!("palisade: wrote {REPORT_PATH}") => {}
            Ok(Event::Line(line)) => {
                let first_verdict = !verdict_seen && is_verdict_line(&line);
                channel.send(&GuestEvent::Out { line });
                if first_verdict {
                    verdict_seen = true;
                    channel.send(&GuestEvent::FirstVerdict);
                }
            }
            Ok(Event::Eof) => eof = true,
            Ok(Event::Exited(code)) => exited = Some(code),
            Err(()) => break exited.unwrap_or(2),
        }
    };
    drop(child);
    if report_args.is_some() {
        channel.send(&read_report());
    }
    Ok(code)
}

/// The suite's JSON report, to send to the host whole.
fn read_report() -> GuestEvent {
    match fs::read_to_string(REPORT_PATH) {
        Ok(text) => GuestEvent::Report { text },
        Err(e) => GuestEvent::NoReport {
            reason: format!("reading {REPORT_PATH}: {e}"),
        },
    }
}
