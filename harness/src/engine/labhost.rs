//! The *lab host*: a machine-within-the-machine that container engines run on, made only of
//! namespaces, cgroups and directories Palisade owns.
//!
//! - Network: a named namespace `palisade-<id>-engN-host`, its uplink `pe<id><n>up`
//!   (198.51.100.254/24) wired to an outside namespace `palisade-<id>-engN-out` (198.51.100.1,
//!   where a harness thread answers every connection with the peer address it saw), a default
//!   route via the outside and `ip_forward=1`. The engines add their bridges, veths and iptables
//!   NAT here; the root network namespace never sees any of it.
//! - Mount, UTS and IPC namespaces of its own, held by a *holder* process (`sleep infinity`).
//!   Mount propagation is slave: the host's mounts show inside, nothing goes back. On top of it:
//!   a fresh tmpfs on `/run`, and `/etc`, `/opt`, `/var` as overlays of the host's directories
//!   whose upper layers live in the lab's directory. Engines write global state there even when
//!   given their own roots (dockerd: `/etc/docker/key.json`; its containerd: `/opt/containerd`
//!   and shim sockets in `/run/containerd/s`; podman: `/run/netns`, `/var/lib/cni`,
//!   `/var/lib/containers/cache`; crun and runc: `/run/crun`, `/run/runc`); here those writes
//!   reach the lab, never the machine, and vanish with it.
//! - A cgroup `palisade-<id>-engN` in the unified hierarchy (or, on a v1-only host, the `pids`
//!   one): the holder and every process started in the lab (daemons, clients, shims, conmon)
//!   live in its `daemons` leaf, and the engines put their containers under it too
//!   ([`LabHost::cgroup_parent`]). Killing that tree is how a lab (or the leftovers of a killed
//!   run) is stopped for good.
//!
//! Namespaces are entered with util-linux `nsenter`/`unshare` through `sh`: the standard library
//! has no safe way to change a child's namespaces or cgroup before it runs (`pre_exec` is
//! unsafe), and a multithreaded process cannot `unshare(CLONE_NEWNS)` itself.

use std::ffi::OsStr;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::exec;
use crate::lab::cgroups::Hierarchy;
use crate::lab::netlab::{NetNs, OUTSIDE_IP, OUTSIDE_PORT, UPLINK_IP, in_netns};
use crate::run::RunEnv;
use crate::run::cleanup::NETNS_DIR;

use super::{EngineError, io_err};

/// The host directories overlaid in the lab (engines write global state below them).
const OVERLAID: [&str; 3] = ["etc", "opt", "var"];

const TOOL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the holder may take to set the namespaces up.
const HOLDER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long killing every process of a lab may take.
const KILL_TIMEOUT: Duration = Duration::from_secs(15);

/// Lab hosts made by this process so far: part of each one's names.
static LAB_HOSTS_MADE: AtomicU32 = AtomicU32::new(0);

/// Moves itself into the lab's cgroup, enters the lab network namespace, unshares the rest and
/// runs [`INIT`] there. `$1` cgroup.procs, `$2` netns path, `$3` the init script, then its
/// arguments.
const HOLDER: &str = r#"echo $$ > "$1" || exit 1
netns=$2 init=$3
shift 3
exec nsenter --net="$netns" unshare --mount --uts --ipc --propagation slave sh -c "$init" palisade-lab-init "$@""#;

/// Inside the new namespaces: private /run, overlays, hostname, then "ready" and sleep.
/// `$1` name (hostname and mount source names), `$2` the overlay directory, then the overlaid
/// directories.
const INIT: &str = r#"set -e
name=$1 fs=$2
shift 2
mount -t tmpfs -o mode=0755 "$name-run" /run
for d in "$@"; do
  mount -t overlay -o "lowerdir=/$d,upperdir=$fs/$d-upper,workdir=$fs/$d-work" "$name-$d" "/$d"
done
hostname "$name"
echo ready
exec sleep infinity"#;

/// Runs a program inside the lab: joins the lab's cgroup, then the holder's namespaces.
/// `$1` cgroup.procs, `$2` holder pid, then the program and its arguments.
const ENTER: &str = r#"echo $$ > "$1" || exit 1
target=$2
shift 2
exec nsenter -t "$target" --net --mount --uts --ipc -- "$@""#;

/// One lab host. Dropping it kills every process in it and removes all it made.
pub struct LabHost {
    name: String,
    dir: PathBuf,
    tag: String,
    host: Option<NetNs>,
    outside: Option<NetNs>,
    cgroup: Option<LabCgroup>,
    holder: Option<Child>,
    service: Option<OutsideService>,
}

impl LabHost {
    /// Builds the lab host `palisade-<run id>-eng<n>`, with its outside and the peer-address
    /// service at 198.51.100.1:8080.
    pub fn new(run: &RunEnv) -> Result<LabHost, EngineError> {
        let n = LAB_HOSTS_MADE.fetch_add(1, Ordering::Relaxed);
        let what = format!("eng{n}");
        let id: String = run.id.chars().take(6).collect();
        let mut lab = LabHost {
            name: run.name(&what),
            dir: run.dir.join(&what),
            tag: format!("pe{id}{:02x}", n & 0xff),
            host: None,
            outside: None,
            cgroup: None,
            holder: None,
            service: None,
        };
        // Each step is undone by Drop if a later one fails.
        fs::create_dir_all(lab.fs_dir()).map_err(io_err(format!(
            "creating the lab directory {}",
            lab.dir.display()
        )))?;
        lab.host = Some(NetNs::add(&format!("{}-host", lab.name))?);
        lab.outside = Some(NetNs::add(&format!("{}-out", lab.name))?);
        lab.wire_uplink()?;
        lab.cgroup = Some(LabCgroup::create(&lab.name)?);
        lab.start_holder()?;
        let outside = lab.outside_path()?.to_owned();
        lab.service = Some(OutsideService::start(&outside, lab.outside_addr())?);
        Ok(lab)
    }

    /// `palisade-<run id>-eng<n>`: the prefix of the lab's namespaces, its cgroup, its hostname.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `<run dir>/eng<n>`: every file the lab's engines keep.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn fs_dir(&self) -> PathBuf {
        self.dir.join("fs")
    }

    /// The hostname the lab host starts with.
    pub fn initial_hostname(&self) -> &str {
        &self.name
    }

    /// The lab host's network namespace (`/run/netns/<name>-host`).
    pub fn netns_path(&self) -> Result<&Path, EngineError> {
        self.host
            .as_ref()
            .map(NetNs::path)
            .ok_or_else(|| EngineError::Lab("the lab host namespace is gone".into()))
    }

    fn outside_path(&self) -> Result<&Path, EngineError> {
        self.outside
            .as_ref()
            .map(NetNs::path)
            .ok_or_else(|| EngineError::Lab("the outside namespace is gone".into()))
    }

    /// The outside service: what a container connects to for egress.
    pub fn outside_addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(OUTSIDE_IP, OUTSIDE_PORT))
    }

    /// The address the outside sees for traffic the lab host masquerades.
    pub fn uplink_ip(&self) -> Ipv4Addr {
        UPLINK_IP
    }

    /// The cgroup parent for `engine`'s containers: `/palisade-<id>-eng<n>/<engine>`.
    pub fn cgroup_parent(&self, engine: &str) -> String {
        format!("/{}/{engine}", self.name)
    }

    /// The holder's pid: the process whose namespaces are the lab host's.
    pub fn holder_pid(&self) -> Result<i32, EngineError> {
        self.holder
            .as_ref()
            .map(|child| child.id() as i32)
            .ok_or_else(|| EngineError::Lab("the holder process is gone".into()))
    }

    /// A command that runs `program` inside the lab host (its namespaces and its cgroup).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", ENTER, "palisade-lab"]);
        match (&self.cgroup, self.holder_pid()) {
            (Some(cgroup), Ok(pid)) => {
                command.arg(cgroup.procs()).arg(pid.to_string());
            }
            // Fails at once with a message naming the problem, rather than running elsewhere.
            _ => {
                command.arg("/nonexistent/palisade-lab-is-gone").arg("0");
            }
        }
        command.arg(program);
        command
    }

    /// The lab host's hostname now (a container with `--uts=host` can change it).
    pub fn hostname(&self) -> Result<String, EngineError> {
        let done = exec::run(&mut self.command("hostname"), TOOL_TIMEOUT)?;
        if !done.status.success() {
            return Err(EngineError::Lab(format!(
                "hostname in the lab host: {}",
                done.stderr.trim()
            )));
        }
        Ok(done.stdout.trim().to_owned())
    }

    /// Every process in the lab's cgroup tree (daemons, clients, containers).
    pub fn processes(&self) -> Vec<i32> {
        self.cgroup
            .as_ref()
            .map(LabCgroup::pids)
            .unwrap_or_default()
    }

    /// Kills every process in the lab whose command line names `dir` (a killed daemon's
    /// containerd, shims and conmons name its state directory) and waits for each to exit.
    pub fn kill_naming(&self, dir: &Path) {
        let dir = dir.to_string_lossy();
        for pid in self.processes() {
            let names_dir = procfs::process::Process::new(pid)
                .and_then(|p| p.cmdline())
                .is_ok_and(|args| args.iter().any(|a| a.contains(dir.as_ref())));
            if names_dir {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::SIGKILL,
                );
                let _ = crate::exec::wait_for_exit(pid, std::time::Duration::from_secs(5));
            }
        }
    }

    /// Mount points at or below `dir` in the lab host's mount namespace, deepest first.
    pub fn mounts_below(&self, dir: &Path) -> Result<Vec<PathBuf>, EngineError> {
        let pid = self.holder_pid()?;
        crate::lab::hostfs::mount_points_below(&pid.to_string(), dir)
            .map_err(|e| EngineError::Lab(format!("reading the lab's mount table: {e}")))
    }

    /// Detaches every mount at or below `dir` in the lab host (what a daemon that was killed
    /// leaves: overlay layers, shm, netns bind mounts).
    pub fn unmount_below(&self, dir: &Path) -> Result<(), EngineError> {
        let points = self.mounts_below(dir)?;
        if points.is_empty() {
            return Ok(());
        }
        let mut command = self.command("umount");
        command.arg("--lazy").args(&points);
        let done = exec::run(&mut command, TOOL_TIMEOUT)?;
        if done.status.success() {
            Ok(())
        } else {
            Err(EngineError::Lab(format!(
                "unmounting below {}: {}",
                dir.display(),
                done.stderr.trim()
            )))
        }
    }

    fn ip(&self, args: &[&str]) -> Result<(), EngineError> {
        let mut command = Command::new("ip");
        command.args(args);
        let done = exec::run(&mut command, TOOL_TIMEOUT)?;
        if done.status.success() {
            Ok(())
        } else {
            Err(EngineError::Lab(format!(
                "ip {}: {}",
                args.join(" "),
                done.stderr.trim()
            )))
        }
    }

    /// The uplink veth (created with both ends inside lab namespaces, so no link ever appears
    /// in the root namespace), addresses, the default route via the outside, forwarding.
    fn wire_uplink(&self) -> Result<(), EngineError> {
        let host = format!("{}-host", self.name);
        let out = format!("{}-out", self.name);
        let (uplink, far) = (format!("{}up", self.tag), format!("{}ot", self.tag));
        let (up_cidr, out_cidr) = (format!("{UPLINK_IP}/24"), format!("{OUTSIDE_IP}/24"));
        let gateway = OUTSIDE_IP.to_string();
        self.ip(&[
            "-n", &host, "link", "add", &uplink, "type", "veth", "peer", "name", &far, "netns",
            &out,
        ])?;
        self.ip(&["-n", &host, "addr", "add", &up_cidr, "dev", &uplink])?;
        self.ip(&["-n", &host, "link", "set", &uplink, "up"])?;
        self.ip(&["-n", &out, "addr", "add", &out_cidr, "dev", &far])?;
        self.ip(&["-n", &out, "link", "set", &far, "up"])?;
        self.ip(&["-n", &host, "route", "add", "default", "via", &gateway])?;
        // A new namespace copies nothing useful here: the lab host routes, like any host
        // running containers.
        in_netns(self.netns_path()?, || {
            fs::write("/proc/sys/net/ipv4/ip_forward", "1")
        })?
        .map_err(io_err("setting ip_forward in the lab host"))
    }

    fn start_holder(&mut self) -> Result<(), EngineError> {
        let fs_dir = self.fs_dir();
        let fs_text = fs_dir.to_string_lossy().into_owned();
        // The overlay options are a comma- and colon-separated list.
        if fs_text.contains([',', ':', '\n']) {
            return Err(EngineError::Lab(format!(
                "the lab directory {fs_text} holds a character overlayfs options cannot carry"
            )));
        }
        let mut overlaid = Vec::new();
        for d in OVERLAID {
            let real_dir = fs::symlink_metadata(Path::new("/").join(d)).is_ok_and(|m| m.is_dir());
            if !real_dir {
                continue;
            }
            for layer in ["upper", "work"] {
                let path = fs_dir.join(format!("{d}-{layer}"));
                fs::create_dir_all(&path)
                    .map_err(io_err(format!("creating {}", path.display())))?;
            }
            overlaid.push(d);
        }
        let cgroup = self
            .cgroup
            .as_ref()
            .ok_or_else(|| EngineError::Lab("no lab cgroup".into()))?;
        let log_path = self.dir.join("holder.log");
        let log = fs::File::create(&log_path)
            .map_err(io_err(format!("creating {}", log_path.display())))?;
        let mut command = Command::new("sh");
        command
            .args(["-c", HOLDER, "palisade-lab"])
            .arg(cgroup.procs())
            .arg(self.netns_path()?)
            .arg(INIT)
            .arg(&self.name)
            .arg(&fs_dir)
            .args(&overlaid)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        // Its own process group: a Ctrl-C meant for palisade must not take the lab down
        // before palisade's own cleanup does, in order.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command.spawn().map_err(io_err(
            "starting the lab host's holder (sh, nsenter, unshare)",
        ))?;
        let stdout = child.stdout.take();
        self.holder = Some(child);
        let ready = stdout.map(|out| wait_for_line(out, "ready", HOLDER_TIMEOUT));
        match ready {
            Some(Ok(())) => Ok(()),
            Some(Err(problem)) => Err(EngineError::Lab(format!(
                "the holder did not set the lab host up ({problem}): {}",
                super::log_tail(&log_path, 10)
            ))),
            None => Err(EngineError::Lab("the holder has no stdout".into())),
        }
    }

    /// Kills every process in the lab (holder included) and waits until they are gone.
    pub fn kill_everything(&mut self) -> Result<(), EngineError> {
        let outcome = match &self.cgroup {
            Some(cgroup) => cgroup.kill_all(KILL_TIMEOUT),
            None => Ok(()),
        };
        if let Some(mut holder) = self.holder.take() {
            let _ = holder.kill();
            let _ = holder.wait();
        }
        outcome.map_err(EngineError::Lab)
    }
}

impl Drop for LabHost {
    fn drop(&mut self) {
        // The service's socket lives in the outside namespace: close it first.
        drop(self.service.take());
        let _ = self.kill_everything();
        if let Some(cgroup) = self.cgroup.take() {
            cgroup.remove();
        }
        // Deleting the namespaces removes the uplink, the engines' bridges, veths and rules.
        drop(self.host.take());
        drop(self.outside.take());
        // The lab's mount namespace died with its last process, taking its mounts along.
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Waits for `expected` as a line on `out`, with a deadline (a reader thread, so the wait is on
/// the pipe itself).
fn wait_for_line(
    out: std::process::ChildStdout,
    expected: &str,
    timeout: Duration,
) -> Result<(), String> {
    let receiver = crate::exec::lines_of(out);
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(left) {
            Ok(line) if line.trim() == expected => return Ok(()),
            Ok(_) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                return Err(format!("no `{expected}` within {} s", timeout.as_secs()));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err("it exited".into());
            }
        }
    }
}

/// The cgroup that tracks every process of one lab host.
struct LabCgroup {
    name: String,
    top: PathBuf,
    leaf: PathBuf,
}

impl LabCgroup {
    /// `<hierarchy>/<name>/daemons`, in the unified hierarchy if there is one (it can kill a
    /// whole tree at once), else in the v1 `pids` hierarchy (which needs no setup).
    fn create(name: &str) -> Result<LabCgroup, EngineError> {
        let hierarchies = crate::lab::cgroups::hierarchies()
            .map_err(|e| EngineError::Lab(format!("finding the cgroup hierarchies: {e}")))?;
        let hierarchy = tracking_hierarchy(&hierarchies).ok_or_else(|| {
            EngineError::Lab("neither a unified nor a `pids` cgroup hierarchy is mounted".into())
        })?;
        let top = hierarchy
            .dir_of(&format!("/{name}"))
            .map_err(|e| EngineError::Lab(e.to_string()))?;
        let leaf = top.join("daemons");
        fs::create_dir_all(&leaf).map_err(io_err(format!("creating cgroup {}", leaf.display())))?;
        Ok(LabCgroup {
            name: name.to_owned(),
            top,
            leaf,
        })
    }

    fn procs(&self) -> PathBuf {
        self.leaf.join("cgroup.procs")
    }

    fn pids(&self) -> Vec<i32> {
        super::cleanup::cgroup_pids(&self.top)
    }

    fn kill_all(&self, timeout: Duration) -> Result<(), String> {
        super::cleanup::kill_cgroup_tree(&self.top, timeout)
    }

    /// Removes the lab's cgroups in every hierarchy (the engines made theirs in each v1 one
    /// under their cgroup parent).
    fn remove(self) {
        let Ok(hierarchies) = crate::lab::cgroups::hierarchies() else {
            return;
        };
        for hierarchy in hierarchies {
            if let Ok(dir) = hierarchy.dir_of(&format!("/{}", self.name)) {
                super::cleanup::remove_cgroup_tree(&dir);
            }
        }
    }
}

fn tracking_hierarchy(hierarchies: &[Hierarchy]) -> Option<&Hierarchy> {
    hierarchies.iter().find(|h| h.unified).or_else(|| {
        hierarchies
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == "pids"))
    })
}

/// The outside's "who am I" service: a harness thread, listening in the outside namespace.
struct OutsideService {
    listener: Arc<TcpListener>,
    thread: Option<JoinHandle<()>>,
}

impl OutsideService {
    fn start(ns: &Path, addr: SocketAddr) -> Result<OutsideService, EngineError> {
        let listener = in_netns(ns, || TcpListener::bind(addr))?
            .map_err(io_err(format!("listening on {addr} in {}", ns.display())))?;
        let listener = Arc::new(listener);
        let serving = listener.clone();
        let thread = std::thread::spawn(move || {
            palisade_probe::net::answer_peer_addresses(&serving);
        });
        Ok(OutsideService {
            listener,
            thread: Some(thread),
        })
    }
}

impl Drop for OutsideService {
    fn drop(&mut self) {
        // shutdown(2) on a listening socket makes a blocked accept(2) return at once.
        let _ =
            nix::sys::socket::shutdown(self.listener.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The named network namespaces of the lab hosts of run `run_tag` (`palisade-<id>`).
pub fn lab_netns(run_tag: &str) -> Vec<String> {
    fs::read_dir(NETNS_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(run_tag))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hierarchy(controllers: &[&str], unified: bool) -> Hierarchy {
        Hierarchy {
            controllers: controllers.iter().map(|c| c.to_string()).collect(),
            root: "/".into(),
            mount_point: PathBuf::from("/sys/fs/cgroup"),
            unified,
        }
    }

    #[test]
    fn the_unified_hierarchy_tracks_the_lab_when_there_is_one() {
        let all = [
            hierarchy(&["cpuset"], false),
            hierarchy(&["pids"], false),
            hierarchy(&[], true),
        ];
        assert!(tracking_hierarchy(&all).is_some_and(|h| h.unified));
        let v1 = [hierarchy(&["cpuset"], false), hierarchy(&["pids"], false)];
        assert_eq!(
            tracking_hierarchy(&v1).map(|h| h.controllers.clone()),
            Some(vec!["pids".to_owned()])
        );
        assert!(tracking_hierarchy(&v1[..1]).is_none());
    }
}
