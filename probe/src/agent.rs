//! The probe program: answers [`Request`]s from inside a container.

use std::io::{BufRead, Write};
use std::process::{Command, ExitCode, Stdio};

use nix::errno::Errno;

use crate::protocol::{CapabilitySets, Facts, Reply, Request, Response, SERVE, SyscallOutcome};

/// Entry point of the `palisade-probe` binary.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [mode] if mode == SERVE => serve(),
        [request] => match serde_json::from_str::<Request>(request) {
            Ok(request) => one_shot(request),
            Err(e) => answer_and_exit(bad_request(&e.to_string())),
        },
        _ => answer_and_exit(bad_request(
            "expected one argument: a JSON request, or `serve`",
        )),
    }
}

fn bad_request(message: &str) -> Response {
    Response::Error {
        op: "parse".into(),
        message: message.into(),
    }
}

fn one_shot(request: Request) -> ExitCode {
    let response = handle(&request);
    answer_and_exit(response)
}

fn answer_and_exit(response: Response) -> ExitCode {
    let failed = matches!(response, Response::Error { .. });
    println!("{}", response.to_line());
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Answers one request per stdin line until stdin closes or an `exit` request arrives.
fn serve() -> ExitCode {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let request = serde_json::from_str::<Request>(&line);
        let response = match &request {
            Ok(request) => handle(request),
            Err(e) => bad_request(&e.to_string()),
        };
        if writeln!(stdout, "{}", response.to_line())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            break;
        }
        if let Ok(Request::Exit { code }) = request {
            std::process::exit(code);
        }
    }
    ExitCode::SUCCESS
}

fn handle(request: &Request) -> Response {
    let op = op_name(request);
    match run(request) {
        Ok(reply) => Response::Ok { reply },
        Err(message) => Response::Error { op, message },
    }
}

fn op_name(request: &Request) -> String {
    serde_json::to_value(request)
        .ok()
        .and_then(|v| v.get("op").and_then(|op| op.as_str().map(str::to_owned)))
        .unwrap_or_default()
}

fn run(request: &Request) -> Result<Reply, String> {
    match request {
        Request::Facts => facts().map(|f| Reply::Facts(Box::new(f))),
        Request::SetHostname { name } => {
            Ok(Reply::Syscall(outcome(nix::unistd::sethostname(name))))
        }
        Request::SpawnSleeper => spawn_sleeper(),
        Request::BurnCpu { threads } => burn_cpu(*threads),
        Request::ForkSleepers { count } => fork_sleepers(*count),
        Request::Sleep => sleep_until_killed(),
        Request::Exit { code } => {
            // One-shot: exit after printing the reply; serve mode exits in its loop.
            if std::env::args().nth(1).as_deref() != Some(SERVE) {
                println!("{}", Response::Ok { reply: Reply::Done }.to_line());
                std::process::exit(*code);
            }
            Ok(Reply::Done)
        }
    }
}

fn outcome(result: nix::Result<()>) -> SyscallOutcome {
    SyscallOutcome {
        errno: result.err().map(errno_name),
    }
}

/// The symbolic name of an errno (`EPERM`), which is what scenarios compare against.
pub fn errno_name(errno: Errno) -> String {
    format!("{errno:?}")
}

fn facts() -> Result<Facts, String> {
    use procfs::process::Process;
    let me = Process::myself().map_err(|e| format!("reading /proc/self: {e}"))?;
    let status = me
        .status()
        .map_err(|e| format!("reading /proc/self/status: {e}"))?;
    let namespaces = me
        .namespaces()
        .map_err(|e| format!("reading /proc/self/ns: {e}"))?
        .0
        .into_iter()
        .map(|(name, ns)| (name.to_string_lossy().into_owned(), ns.identifier))
        .collect();
    let mut visible_pids: Vec<i32> = procfs::process::all_processes()
        .map_err(|e| format!("listing /proc: {e}"))?
        .filter_map(|p| p.ok().map(|p| p.pid))
        .collect();
    visible_pids.sort_unstable();
    let uname = nix::sys::utsname::uname().map_err(|e| format!("uname: {e}"))?;
    let hostname = nix::unistd::gethostname().map_err(|e| format!("gethostname: {e}"))?;
    Ok(Facts {
        pid: std::process::id() as i32,
        ppid: nix::unistd::getppid().as_raw(),
        nspid: status.nspid.unwrap_or_default(),
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        hostname: hostname.to_string_lossy().into_owned(),
        kernel_release: uname.release().to_string_lossy().into_owned(),
        os_release: std::fs::read_to_string("/etc/os-release").ok(),
        namespaces,
        visible_pids,
        capabilities: CapabilitySets {
            effective: status.capeff,
            permitted: status.capprm,
            inheritable: status.capinh,
            bounding: status.capbnd.unwrap_or(0),
            ambient: status.capamb.unwrap_or(0),
        },
        no_new_privs: status.nonewprivs == Some(1),
    })
}

fn spawn_sleeper() -> Result<Reply, String> {
    let request = serde_json::to_string(&Request::Sleep).map_err(|e| e.to_string())?;
    let child = Command::new("/proc/self/exe")
        .arg(request)
        // The sleeper must not hold the harness's pipes: it may outlive this process.
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawning the sleeper: {e}"))?;
    Ok(Reply::Spawned {
        pid: child.id() as i32,
    })
}

fn sleep_until_killed() -> ! {
    loop {
        nix::unistd::pause();
    }
}

/// Threads that spin until the process dies. Each reports once it runs, so the reply means "the
/// CPU is being burnt now", which is the event a measurement waits for.
fn burn_cpu(threads: u32) -> Result<Reply, String> {
    let (ready, running) = std::sync::mpsc::channel();
    for n in 0..threads {
        let ready = ready.clone();
        std::thread::Builder::new()
            .name(format!("burn-{n}"))
            .spawn(move || {
                let _ = ready.send(());
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            })
            .map_err(|e| format!("starting burner thread {n}: {e}"))?;
    }
    drop(ready);
    for _ in 0..threads {
        running
            .recv()
            .map_err(|_| "a burner thread died before it ran".to_owned())?;
    }
    Ok(Reply::Burning { threads })
}

fn fork_sleepers(count: u32) -> Result<Reply, String> {
    let request = serde_json::to_string(&Request::Sleep).map_err(|e| e.to_string())?;
    let mut children = Vec::new();
    let mut errno = None;
    for _ in 0..count {
        let spawned = Command::new("/proc/self/exe")
            .arg(&request)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match spawned {
            Ok(child) => children.push(child),
            Err(e) => {
                errno = Some(
                    e.raw_os_error()
                        .map(|raw| errno_name(Errno::from_raw(raw)))
                        .unwrap_or_else(|| e.to_string()),
                );
                break;
            }
        }
    }
    let started = children.len() as u32;
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    Ok(Reply::Forked { started, errno })
}
