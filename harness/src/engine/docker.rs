//! A Palisade-owned `dockerd` inside a lab host, and the `docker` client that talks to it.
//!
//! The daemon's command line, flag by flag (see [`dockerd_args`]):
//!
//! | flag | why |
//! |---|---|
//! | `--config-file <dir>/daemon.json` (`{}`) | never read the machine's `/etc/docker/daemon.json` |
//! | `--data-root`, `--exec-root`, `--pidfile` in the lab directory | own images, containers, state and lock; never `/var/lib/docker` or `/run/docker*` |
//! | `-H unix://<lab dir>/docker.sock` | own socket; with `-H` given, dockerd does not also bind `/var/run/docker.sock` |
//! | no `--containerd` | dockerd starts its own containerd, with state in the exec root and data in the data root |
//! | `--exec-opt native.cgroupdriver=cgroupfs` | no systemd units: cgroups are plain directories Palisade finds by name |
//! | `--cgroup-parent /palisade-<id>-engN/docker` | every container cgroup is below the lab's, found and killed by name |
//! | `--bip 10.201.0.1/24` | docker's default bridge is 172.17/16: only 10.x may be used here |
//! | `--default-address-pool base=10.202.0.0/16,size=24` | the default pools (172.17-31/16, 192.168/16) are forbidden too |
//! | `--iptables=true`, `--ip-forward=true` | docker's NAT and forwarding, as users get them; they land in the lab's netns |
//! | `--storage-driver overlay2` | fail loudly where overlayfs is missing instead of a silent, slow `vfs` fallback |
//! | `--add-runtime <name>=<path>` | dockerd 20.10 knows only runc: crun and the bundled runtime are registered by name |
//!
//! Left at their defaults (no flag needed here): `--userland-proxy` (only matters for published
//! ports; its proxies would run in the lab's cgroup anyway), `--log-driver json-file` (logs stay
//! in the data root), `--ip6tables` (off), `--live-restore` (off: stopping the daemon stops its
//! containers), `--group docker` (the socket is `root:docker 0660`, as people have it).

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::inotify;

use super::labhost::LabHost;
use super::{Engine, EngineError, cli, engine_timeout, io_err, log_tail};
use crate::exec;

/// The address of docker's default bridge (`docker0`) in the lab host.
pub const BRIDGE_IP: &str = "10.201.0.1/24";
/// Where docker takes user-defined networks' subnets from.
pub const ADDRESS_POOL: &str = "base=10.202.0.0/16,size=24";

/// How long dockerd may take to stop once asked (SIGTERM) before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the client may take for the small calls of a shutdown.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What to start.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    pub dockerd: PathBuf,
    /// The `docker` client (any version that speaks the daemon's API).
    pub client: PathBuf,
    /// Registered with `--add-runtime <name>=<path>`.
    pub runtimes: Vec<(String, PathBuf)>,
    /// Appended to dockerd's command line (a test's bad flag).
    pub extra_args: Vec<String>,
}

impl DockerConfig {
    /// `dockerd` and `docker` from PATH.
    pub fn detect() -> Result<DockerConfig, EngineError> {
        let find = |name: &str| {
            exec::find_program(name).ok_or_else(|| EngineError::Missing(name.to_owned()))
        };
        Ok(DockerConfig {
            dockerd: find("dockerd")?,
            client: find("docker")?,
            runtimes: Vec::new(),
            extra_args: Vec::new(),
        })
    }

    pub fn with_runtime(mut self, name: &str, path: &Path) -> DockerConfig {
        self.runtimes.push((name.to_owned(), path.to_owned()));
        self
    }
}

/// Where one daemon keeps everything.
#[derive(Debug, Clone)]
pub struct DockerLayout {
    pub dir: PathBuf,
    pub socket: PathBuf,
}

impl DockerLayout {
    pub fn in_lab(lab_dir: &Path) -> DockerLayout {
        DockerLayout {
            dir: lab_dir.join("docker"),
            socket: lab_dir.join("docker.sock"),
        }
    }

    pub fn data_root(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn exec_root(&self) -> PathBuf {
        self.dir.join("exec")
    }

    pub fn pidfile(&self) -> PathBuf {
        self.dir.join("dockerd.pid")
    }

    pub fn config_file(&self) -> PathBuf {
        self.dir.join("daemon.json")
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("dockerd.log")
    }

    /// The client's own configuration directory (`DOCKER_CONFIG`), never `~/.docker`.
    pub fn client_config(&self) -> PathBuf {
        self.dir.join("client")
    }
}

/// dockerd's arguments (the table at the top of this module says why each is there).
pub fn dockerd_args(
    layout: &DockerLayout,
    cgroup_parent: &str,
    config: &DockerConfig,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut flag = |name: &str, value: OsString| {
        args.push(name.into());
        args.push(value);
    };
    flag("--config-file", layout.config_file().into());
    flag("--data-root", layout.data_root().into());
    flag("--exec-root", layout.exec_root().into());
    flag("--pidfile", layout.pidfile().into());
    flag("-H", format!("unix://{}", layout.socket.display()).into());
    flag("--exec-opt", "native.cgroupdriver=cgroupfs".into());
    flag("--cgroup-parent", cgroup_parent.into());
    flag("--bip", BRIDGE_IP.into());
    flag("--default-address-pool", ADDRESS_POOL.into());
    flag("--storage-driver", "overlay2".into());
    for (name, path) in &config.runtimes {
        flag("--add-runtime", format!("{name}={}", path.display()).into());
    }
    args.push("--iptables=true".into());
    args.push("--ip-forward=true".into());
    args.extend(config.extra_args.iter().map(OsString::from));
    args
}

/// The `docker` client pointed at one socket, run inside a lab host (or, for an operator's own
/// daemon, where palisade runs).
#[derive(Clone)]
pub struct DockerClient {
    lab: Option<Arc<LabHost>>,
    program: PathBuf,
    socket: PathBuf,
    config_dir: PathBuf,
    user: Option<(u32, u32)>,
}

impl DockerClient {
    pub fn new(
        lab: Arc<LabHost>,
        program: &Path,
        socket: &Path,
        config_dir: &Path,
    ) -> DockerClient {
        DockerClient {
            lab: Some(lab),
            program: program.to_owned(),
            socket: socket.to_owned(),
            config_dir: config_dir.to_owned(),
            user: None,
        }
    }

    /// A client of an operator's daemon at `socket`, run in palisade's own namespaces: the
    /// daemon is not Palisade's, and neither is the machine it runs containers on.
    pub fn direct(program: &Path, socket: &Path, config_dir: &Path) -> DockerClient {
        DockerClient {
            lab: None,
            program: program.to_owned(),
            socket: socket.to_owned(),
            config_dir: config_dir.to_owned(),
            user: None,
        }
    }

    /// The same client, run as `uid`:`gid` with no supplementary groups (`setpriv`).
    pub fn as_user(&self, uid: u32, gid: u32) -> DockerClient {
        DockerClient {
            user: Some((uid, gid)),
            ..self.clone()
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Engine for DockerClient {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn cli(&self) -> Command {
        let enter = |program: &OsStr| match &self.lab {
            Some(lab) => lab.command(program),
            None => Command::new(program),
        };
        let mut command = match self.user {
            Some((uid, gid)) => {
                let mut command = enter(OsStr::new("setpriv"));
                command
                    .arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .args(["--clear-groups", "--"])
                    .arg(&self.program);
                command
            }
            None => enter(self.program.as_os_str()),
        };
        command
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env(
                "HOME",
                std::env::var_os("HOME").unwrap_or_else(|| "/".into()),
            )
            .env("DOCKER_CONFIG", &self.config_dir)
            // The classic builder: a FROM-scratch COPY build needs neither BuildKit's buildx
            // plugin (a newer client refuses to build without it) nor any network.
            .env("DOCKER_BUILDKIT", "0");
        command
    }

    fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

/// A running Palisade-owned dockerd. Dropping it stops it and removes its state.
pub struct Dockerd {
    lab: Arc<LabHost>,
    layout: DockerLayout,
    client: DockerClient,
    child: Option<Child>,
    started_in: Duration,
}

impl Dockerd {
    /// Starts dockerd in `lab` and waits, on events, until its API answers: the socket's
    /// creation (inotify), the daemon's exit (pidfd), then one `docker version`.
    pub fn start(lab: Arc<LabHost>, config: DockerConfig) -> Result<Dockerd, EngineError> {
        let layout = DockerLayout::in_lab(lab.dir());
        for dir in [&layout.dir, &layout.client_config()] {
            fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        }
        fs::write(layout.config_file(), "{}\n").map_err(io_err("writing daemon.json"))?;
        let log = fs::File::create(layout.log()).map_err(io_err("creating dockerd.log"))?;
        let log_err = log.try_clone().map_err(io_err("creating dockerd.log"))?;
        let socket_dir = layout.socket.parent().unwrap_or(lab.dir()).to_owned();
        // Watch before the daemon can create the socket, so its creation is never missed.
        let watch = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
            .map_err(|e| io_err("inotify")(e.into()))?;
        inotify::add_watch(&watch, &socket_dir, inotify::WatchFlags::CREATE)
            .map_err(|e| io_err(format!("watching {}", socket_dir.display()))(e.into()))?;

        let mut command = lab.command(&config.dockerd);
        command
            .args(dockerd_args(&layout, &lab.cgroup_parent("docker"), &config))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // Its own process group: a Ctrl-C for palisade must not stop it before palisade's cleanup.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let started = Instant::now();
        let child = command
            .spawn()
            .map_err(io_err(format!("starting {}", config.dockerd.display())))?;
        let client = DockerClient::new(
            lab.clone(),
            &config.client,
            &layout.socket,
            &layout.client_config(),
        );
        let mut dockerd = Dockerd {
            lab,
            layout,
            client,
            child: Some(child),
            started_in: Duration::ZERO,
        };
        // On an error, dropping `dockerd` stops whatever did start.
        dockerd.wait_ready(&watch, started + engine_timeout())?;
        dockerd.started_in = started.elapsed();
        Ok(dockerd)
    }

    fn wait_ready(&mut self, watch: &impl AsFd, deadline: Instant) -> Result<(), EngineError> {
        let Some(child) = self.child.as_ref() else {
            return Err(EngineError::Lab("dockerd was not started".into()));
        };
        let pidfd = rustix::process::pidfd_open(
            rustix::process::Pid::from_child(child),
            rustix::process::PidfdFlags::empty(),
        )
        .map_err(|e| io_err("pidfd_open on dockerd")(e.into()))?;
        // 1. The socket appears, or the daemon exits, or time runs out.
        while !self.layout.socket.exists() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.not_ready());
            }
            let mut fds = [
                PollFd::new(watch, PollFlags::IN),
                PollFd::new(&pidfd, PollFlags::IN),
            ];
            match poll(&mut fds, Some(&timespec(left))) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(io_err("waiting for dockerd")(e.into())),
            }
            if fds[1].revents().contains(PollFlags::IN) {
                return Err(self.exited());
            }
            drain(watch);
        }
        // 2. The API answers (dockerd listens early and serves once initialised, so a call
        //    made now waits for that rather than failing).
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.not_ready());
            }
            match cli(
                &self.client,
                &["version", "--format", "{{.Server.Version}}"],
                left,
            ) {
                Ok(_) => return Ok(()),
                Err(_) => {
                    // Not serving yet (the socket is bound a moment before it listens), or
                    // dying: wait for the exit event, briefly, then ask again.
                    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
                    let pause = left.min(Duration::from_millis(100));
                    let _ = poll(&mut fds, Some(&timespec(pause)));
                    if fds[0].revents().contains(PollFlags::IN) {
                        return Err(self.exited());
                    }
                }
            }
        }
    }

    fn exited(&mut self) -> EngineError {
        let status = self
            .child
            .as_mut()
            .and_then(|c| c.wait().ok())
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown status".into());
        self.child = None;
        EngineError::DaemonExited {
            daemon: "dockerd".into(),
            status,
            log: self.layout.log(),
            tail: log_tail(&self.layout.log(), 15),
        }
    }

    fn not_ready(&self) -> EngineError {
        EngineError::DaemonNotReady {
            daemon: "dockerd".into(),
            after: engine_timeout(),
            log: self.layout.log(),
            tail: log_tail(&self.layout.log(), 15),
        }
    }

    pub fn client(&self) -> &DockerClient {
        &self.client
    }

    pub fn layout(&self) -> &DockerLayout {
        &self.layout
    }

    /// From spawn to the first answer of its API.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// Stops the daemon and removes everything it made: its containers, images and networks
    /// (through its API, while it runs), then the daemon (SIGTERM, SIGKILL at the deadline),
    /// what is left of its containerd and shims, its mounts in the lab host, its directories.
    pub fn stop(mut self) -> Result<(), EngineError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), EngineError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let mut problems = Vec::new();
        if matches!(child.try_wait(), Ok(None)) {
            if let Err(e) = self.remove_objects() {
                problems.push(e.to_string());
            }
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            // `child` is not reaped yet, so its pid cannot belong to another process.
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM);
            if !exec::wait_for_exit(pid.as_raw(), STOP_TIMEOUT).unwrap_or(false) {
                problems.push(format!(
                    "dockerd did not stop within {} s of SIGTERM and was killed",
                    STOP_TIMEOUT.as_secs()
                ));
                let _ = child.kill();
            }
        }
        let _ = child.wait();
        self.kill_stragglers();
        if let Err(e) = self.lab.unmount_below(&self.layout.dir) {
            problems.push(e.to_string());
        }
        for path in [&self.layout.dir, &self.layout.socket] {
            let removed = if path.is_dir() {
                fs::remove_dir_all(path)
            } else {
                fs::remove_file(path)
            };
            match removed {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => problems.push(format!("removing {}: {e}", path.display())),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Lab(format!(
                "stopping dockerd: {}",
                problems.join("; ")
            )))
        }
    }

    /// Every container (killed), image and unused network of this daemon.
    fn remove_objects(&self) -> Result<(), EngineError> {
        let ids = |args: &[&str]| -> Result<Vec<String>, EngineError> {
            let done = cli(&self.client, args, CALL_TIMEOUT)?;
            Ok(done.stdout.split_whitespace().map(str::to_owned).collect())
        };
        let containers = ids(&["ps", "--all", "--quiet"])?;
        if !containers.is_empty() {
            let mut args = vec!["rm", "--force", "--volumes"];
            args.extend(containers.iter().map(String::as_str));
            cli(&self.client, &args, CALL_TIMEOUT)?;
        }
        // With no container left every image is unused: prune removes them children first.
        cli(
            &self.client,
            &["image", "prune", "--all", "--force"],
            CALL_TIMEOUT,
        )?;
        cli(&self.client, &["network", "prune", "--force"], CALL_TIMEOUT)?;
        Ok(())
    }

    /// A daemon that was killed leaves its containerd and shims: they name its exec root.
    fn kill_stragglers(&self) {
        self.lab.kill_naming(&self.layout.dir);
    }
}

impl Engine for Dockerd {
    fn name(&self) -> &'static str {
        self.client.name()
    }

    fn cli(&self) -> Command {
        self.client.cli()
    }

    fn endpoint(&self) -> String {
        self.client.endpoint()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

fn timespec(d: Duration) -> Timespec {
    Timespec::try_from(d).unwrap_or(Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    })
}

/// Reads (and forgets) every pending inotify event.
fn drain(watch: &impl AsFd) {
    let mut buf = [0u8; 4096];
    while matches!(rustix::io::read(watch, &mut buf), Ok(n) if n > 0) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerd_gets_its_own_state_and_only_10_x_addresses() {
        let layout = DockerLayout::in_lab(Path::new("/tmp/palisade-0a1b2c/eng0"));
        let config = DockerConfig {
            dockerd: "/usr/sbin/dockerd".into(),
            client: "/usr/bin/docker".into(),
            runtimes: vec![("crun".into(), "/usr/bin/crun".into())],
            extra_args: Vec::new(),
        };
        let args: Vec<String> = dockerd_args(&layout, "/palisade-0a1b2c-eng0/docker", &config)
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let value = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        assert_eq!(
            value("--data-root").as_deref(),
            Some("/tmp/palisade-0a1b2c/eng0/docker/data")
        );
        assert_eq!(
            value("-H").as_deref(),
            Some("unix:///tmp/palisade-0a1b2c/eng0/docker.sock")
        );
        assert_eq!(
            value("--cgroup-parent").as_deref(),
            Some("/palisade-0a1b2c-eng0/docker")
        );
        assert_eq!(
            value("--add-runtime").as_deref(),
            Some("crun=/usr/bin/crun")
        );
        assert!(value("--bip").is_some_and(|v| v.starts_with("10.")));
        assert!(value("--default-address-pool").is_some_and(|v| v.starts_with("base=10.")));
        for path_flag in ["--config-file", "--exec-root", "--pidfile"] {
            assert!(
                value(path_flag).is_some_and(|v| v.starts_with("/tmp/palisade-0a1b2c/eng0/")),
                "{path_flag}: {args:?}"
            );
        }
    }
}
