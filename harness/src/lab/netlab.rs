//! A self-contained network lab: every scenario gets a topology made only of network namespaces
//! Palisade creates, so the real host's root network namespace is never changed.
//!
//! ```text
//!  container netns(es)            lab host netns                     outside netns
//!  <tag>cN 10.a.b.N/24  ──veth──  <tag>hN ─┐
//!  default via 10.a.b.1                    <tag>br 10.a.b.1/24
//!                                          <tag>up 198.51.100.254 ──veth── <tag>ot 198.51.100.1
//!                                          ip_forward, nft masquerade       TCP "who am I" service
//! ```
//!
//! Mechanism choices:
//! - Namespaces are made with `ip netns add/del`: iproute2 already does the fiddly part (a shared
//!   bind mount of /run/netns, one nsfs bind mount per name) and `palisade cleanup` removes the
//!   same entries after a killed run.
//! - Links, addresses and routes are made with `ip -n <ns>`, which enters the namespace itself; a
//!   veth is created with both ends directly in lab namespaces, so no link ever appears in the
//!   root namespace, even for a moment. (The `rtnetlink` crate would do the same without a
//!   program to run; `ip` keeps the dependency tree small and is needed for `ip netns` anyway.)
//! - The sysctl and nftables steps run on a dedicated thread that has `setns`'d into the lab host
//!   namespace: `/proc/sys/net` shows the namespace of the *opening thread*, and a child (`nft`)
//!   inherits the namespace of the thread that spawns it. The main thread never changes namespace.
//! - nftables is driven through `nft -j -f <file>`: one JSON document, no rule-language parsing,
//!   and `nft` is the tool admins use to read the result back.
//! - The outside service is a harness thread, not a container: a socket keeps the namespace it
//!   was created in, so only its creation needs `setns`, and the service lives exactly as long as
//!   the lab (shutdown(2) on the listener wakes the accepting thread).

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use palisade_probe::Request;
pub use palisade_probe::net::ConnectOutcome;
use palisade_probe::net::{answer_peer_addresses, connect_and_read};

use crate::error::HarnessError;
use crate::exec;
use crate::run::cleanup::NETNS_DIR;
use crate::run::control::LabChange;
use crate::run::env::RunEnv;
use crate::run::scenario::Ctx;

/// Every connect in a scenario is bounded by this, so a negative control fails fast.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);
/// The "internet" side of the lab (TEST-NET-2, never routed anywhere real).
pub const OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The lab host's address on the uplink: what a masqueraded connection appears to come from.
pub const UPLINK_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 254);
/// The port of the outside service.
pub const OUTSIDE_PORT: u16 = 8080;

const IP_TIMEOUT: Duration = Duration::from_secs(10);

/// Labs made by this process so far: part of each lab's subnet and interface names.
static LABS_MADE: AtomicU32 = AtomicU32::new(0);

fn net_err(what: impl Into<String>, message: impl std::fmt::Display) -> HarnessError {
    HarnessError::Net {
        what: what.into(),
        message: message.to_string(),
    }
}

/// Runs `ip` with `args`, failing with its stderr.
fn ip(args: &[&str]) -> Result<(), HarnessError> {
    run_tool(Command::new("ip").args(args))
}

fn run_tool(command: &mut Command) -> Result<(), HarnessError> {
    let shown = format!(
        "{} {}",
        command.get_program().to_string_lossy(),
        command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    match exec::run(command, IP_TIMEOUT) {
        Ok(done) if done.status.success() => Ok(()),
        Ok(done) => Err(net_err(
            shown,
            format!("{}: {}", done.status, done.stderr.trim()),
        )),
        Err(e) => Err(net_err(shown, e)),
    }
}

/// Runs `f` on a fresh thread that has entered the network namespace at `path`. The caller's
/// thread (and so the rest of the process) stays where it is.
pub fn in_netns<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> Result<T, HarnessError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let ns = File::open(path)
                    .map_err(|e| net_err(format!("opening {}", path.display()), e))?;
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| net_err(format!("entering {}", path.display()), e))?;
                Ok(f())
            })
            .join()
            .map_err(|_| net_err("a thread in a lab namespace", "panicked"))?
    })
}

/// A named network namespace (`/run/netns/<name>`), deleted on drop with every link in it.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    path: PathBuf,
}

impl NetNs {
    /// Creates the namespace and brings its loopback up (a new namespace's `lo` is down, and a
    /// runtime only brings it up in namespaces it creates itself).
    pub fn add(name: &str) -> Result<NetNs, HarnessError> {
        ip(&["netns", "add", name])?;
        let ns = NetNs {
            name: name.to_owned(),
            path: Path::new(NETNS_DIR).join(name),
        };
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The nsfs file a container config joins (`linux.namespaces[].path`).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if ip(&["netns", "del", &self.name]).is_err() && self.path.exists() {
            let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// How a container namespace is attached to the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plug {
    /// A veth whose host end is on the bridge; an address and a default route via the bridge.
    Bridged,
    /// The same veth, address and route, but the host end is left off the bridge.
    OffBridge,
    /// Loopback only: no veth, no address, no route.
    Unplugged,
}

/// A container's network namespace in the lab.
#[derive(Debug)]
pub struct LabNet {
    pub path: PathBuf,
    pub ip: Ipv4Addr,
}

/// A TCP service on a lab thread that answers every connection with the peer address it sees.
pub struct PeerService {
    listener: Arc<TcpListener>,
    pub addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl PeerService {
    /// Binds `addr` inside the namespace at `ns`, then serves from an ordinary thread.
    fn start(ns: &Path, addr: SocketAddr) -> Result<PeerService, HarnessError> {
        let listener = in_netns(ns, || TcpListener::bind(addr))?
            .map_err(|e| net_err(format!("listening on {addr} in {}", ns.display()), e))?;
        let listener = Arc::new(listener);
        let serving = listener.clone();
        let thread = std::thread::spawn(move || answer_peer_addresses(&serving));
        Ok(PeerService {
            listener,
            addr,
            thread: Some(thread),
        })
    }
}

impl Drop for PeerService {
    fn drop(&mut self) {
        // shutdown(2) on a listening socket makes a blocked accept(2) return at once.
        let _ =
            nix::sys::socket::shutdown(self.listener.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One scenario's lab. Dropping it removes every namespace (and so every link) it made.
pub struct Lab {
    // Fields drop in order: services first, then the namespaces that hold their sockets.
    services: Vec<PeerService>,
    containers: Vec<NetNs>,
    outside: Option<NetNs>,
    host: NetNs,
    /// `pl<run id><n>`: the prefix of every interface name (at most 12 of the 15 chars).
    tag: String,
    /// 10.a.b.0/24
    subnet: [u8; 2],
    run_name: String,
    dir: PathBuf,
    /// A negative control's change to this lab, if one is in force.
    change: Option<LabChange>,
}

impl Lab {
    /// A scenario's lab: the lab host namespace with its bridge at 10.a.b.1/24 and
    /// `ip_forward=1`, known to the scenario's context (a control may make a container join it),
    /// with the control's lab change in force when there is one.
    pub fn new(cx: &Ctx) -> Result<Lab, HarnessError> {
        if crate::run::interrupt::interrupted() {
            return Err(HarnessError::Interrupted);
        }
        let mut lab = Lab::in_run(&cx.run)?;
        lab.change = cx.lab_change();
        cx.set_lab_host(lab.host_path());
        Ok(lab)
    }

    /// A lab of `run` that no scenario owns.
    pub fn in_run(run: &RunEnv) -> Result<Lab, HarnessError> {
        let n = LABS_MADE.fetch_add(1, Ordering::Relaxed);
        let id: String = run.id.chars().take(6).collect();
        let hash = u32::from_str_radix(&id, 16).unwrap_or(0);
        // Two runs at once differ in their id, two labs of a run in `n`.
        let subnet = [
            (hash & 0xff) as u8,
            (((hash >> 8) & 0xff) as u8).wrapping_add(n as u8),
        ];
        let tag = format!("pl{id}{:02x}", n & 0xff);
        let run_name = run.name(&format!("net{n}"));
        let host = NetNs::add(&format!("{run_name}-host"))?;
        let lab = Lab {
            services: Vec::new(),
            containers: Vec::new(),
            outside: None,
            host,
            tag,
            subnet,
            run_name,
            dir: run.dir.clone(),
            change: None,
        };
        let bridge = lab.bridge();
        lab.ip_host(&["link", "add", &bridge, "type", "bridge"])?;
        lab.ip_host(&["link", "set", &bridge, "up"])?;
        lab.assign_bridge_address()?;
        lab.set_forwarding(true)?;
        Ok(lab)
    }

    fn ip_host(&self, args: &[&str]) -> Result<(), HarnessError> {
        let mut all = vec!["-n", self.host.name()];
        all.extend_from_slice(args);
        ip(&all)
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    /// The lab host's namespace: a container joining it shares the "host" network.
    pub fn host_path(&self) -> &Path {
        self.host.path()
    }

    /// 10.a.b.1, the bridge's address.
    pub fn bridge_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet[0], self.subnet[1], 1)
    }

    fn subnet_cidr(&self) -> String {
        format!("10.{}.{}.0/24", self.subnet[0], self.subnet[1])
    }

    /// Gives the bridge its address (under [`LabChange::BridgeKeepsAddress`], it never lost it).
    pub fn add_bridge_address(&self) -> Result<(), HarnessError> {
        if self.change == Some(LabChange::BridgeKeepsAddress) {
            return Ok(());
        }
        self.assign_bridge_address()
    }

    fn assign_bridge_address(&self) -> Result<(), HarnessError> {
        let addr = format!("{}/24", self.bridge_ip());
        self.ip_host(&["addr", "add", &addr, "dev", &self.bridge()])
    }

    /// Takes the address (and with it the route to the container subnet) off the bridge; under
    /// the [`LabChange::BridgeKeepsAddress`] control, it stays.
    pub fn remove_bridge_address(&self) -> Result<(), HarnessError> {
        if self.change == Some(LabChange::BridgeKeepsAddress) {
            return Ok(());
        }
        let addr = format!("{}/24", self.bridge_ip());
        self.ip_host(&["addr", "del", &addr, "dev", &self.bridge()])
    }

    /// Sets `net.ipv4.ip_forward` in the lab host namespace (a new namespace copies the root
    /// namespace's value, so it is always set explicitly).
    pub fn set_forwarding(&self, on: bool) -> Result<(), HarnessError> {
        let value = if on { "1" } else { "0" };
        in_netns(self.host.path(), || {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", value)
        })?
        .map_err(|e| net_err("writing ip_forward in the lab host namespace", e))
    }

    /// Reads `net.ipv4.ip_forward` as the lab host namespace sees it.
    pub fn forwarding(&self) -> Result<bool, HarnessError> {
        let text = in_netns(self.host.path(), || {
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
        })?
        .map_err(|e| net_err("reading ip_forward in the lab host namespace", e))?;
        Ok(text.trim() == "1")
    }

    /// A new namespace for a container, attached as `plug` says, with address 10.a.b.(N+2).
    pub fn add_container(&mut self, plug: Plug) -> Result<LabNet, HarnessError> {
        let i = self.containers.len();
        let ns = NetNs::add(&format!("{}-c{i}", self.run_name))?;
        let addr = Ipv4Addr::new(10, self.subnet[0], self.subnet[1], 2 + i as u8);
        let path = ns.path().to_owned();
        let ns_name = ns.name().to_owned();
        self.containers.push(ns);
        if plug == Plug::Unplugged {
            return Ok(LabNet { path, ip: addr });
        }
        let (host_end, inside) = (format!("{}h{i}", self.tag), format!("{}c{i}", self.tag));
        self.ip_host(&[
            "link", "add", &host_end, "type", "veth", "peer", "name", &inside, "netns", &ns_name,
        ])?;
        if plug == Plug::Bridged {
            self.ip_host(&["link", "set", &host_end, "master", &self.bridge()])?;
        }
        self.ip_host(&["link", "set", &host_end, "up"])?;
        let cidr = format!("{addr}/24");
        let gateway = self.bridge_ip().to_string();
        ip(&["-n", &ns_name, "addr", "add", &cidr, "dev", &inside])?;
        ip(&["-n", &ns_name, "link", "set", &inside, "up"])?;
        ip(&[
            "-n", &ns_name, "route", "add", "default", "via", &gateway, "dev", &inside,
        ])?;
        Ok(LabNet { path, ip: addr })
    }

    /// The "internet": a namespace at 198.51.100.1 behind the lab host's uplink, running a service
    /// that reports the peer address it sees. It has no route back to the container subnet, so
    /// only masqueraded traffic gets an answer.
    pub fn add_outside(&mut self) -> Result<SocketAddr, HarnessError> {
        let ns = NetNs::add(&format!("{}-out", self.run_name))?;
        let ns_name = ns.name().to_owned();
        let ns_path = ns.path().to_owned();
        self.outside = Some(ns);
        let (uplink, far) = (format!("{}up", self.tag), format!("{}ot", self.tag));
        self.ip_host(&[
            "link", "add", &uplink, "type", "veth", "peer", "name", &far, "netns", &ns_name,
        ])?;
        self.ip_host(&["addr", "add", &format!("{UPLINK_IP}/24"), "dev", &uplink])?;
        self.ip_host(&["link", "set", &uplink, "up"])?;
        ip(&[
            "-n",
            &ns_name,
            "addr",
            "add",
            &format!("{OUTSIDE_IP}/24"),
            "dev",
            &far,
        ])?;
        ip(&["-n", &ns_name, "link", "set", &far, "up"])?;
        let addr = SocketAddr::V4(SocketAddrV4::new(OUTSIDE_IP, OUTSIDE_PORT));
        self.services.push(PeerService::start(&ns_path, addr)?);
        Ok(addr)
    }

    /// Masquerades the container subnet going out of the uplink, with an nftables rule in the
    /// lab host namespace; counts, in a forward chain, what the lab host forwards from the
    /// container subnet. Both counters are read back by [`Lab::counters`].
    pub fn masquerade(&self) -> Result<(), HarnessError> {
        let from_subnet = serde_json::json!({"match": {"op": "==",
            "left": {"payload": {"protocol": "ip", "field": "saddr"}},
            "right": {"prefix": {"addr": format!("10.{}.{}.0", self.subnet[0], self.subnet[1]), "len": 24}}}});
        let ruleset = serde_json::json!({"nftables": [
            {"table": {"family": "ip", "name": "palisade"}},
            {"chain": {"family": "ip", "table": "palisade", "name": "postrouting",
                "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}},
            {"rule": {"family": "ip", "table": "palisade", "chain": "postrouting",
                "comment": MASQUERADE_RULE, "expr": [
                from_subnet,
                {"match": {"op": "==", "left": {"meta": {"key": "oifname"}},
                    "right": format!("{}up", self.tag)}},
                {"counter": null},
                {"masquerade": null}
            ]}},
            {"chain": {"family": "ip", "table": "palisade", "name": "forward",
                "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}},
            {"rule": {"family": "ip", "table": "palisade", "chain": "forward",
                "comment": FORWARD_RULE, "expr": [from_subnet, {"counter": null}]}}
        ]});
        let file = self.dir.join(format!("{}-nat.json", self.run_name));
        std::fs::write(&file, ruleset.to_string())
            .map_err(|e| net_err(format!("writing {}", file.display()), e))?;
        let outcome = in_netns(self.host.path(), || {
            run_tool(Command::new("nft").arg("-j").arg("-f").arg(&file))
        });
        let _ = std::fs::remove_file(&file);
        outcome?
    }

    /// How many packets the masquerade rule rewrote and the forward rule counted so far.
    pub fn counters(&self) -> Result<LabCounters, HarnessError> {
        let text = self.ruleset()?;
        let ruleset: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| net_err("parsing the lab host's ruleset", e))?;
        let packets = |comment: &str| -> Result<u64, HarnessError> {
            ruleset["nftables"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|item| item.get("rule"))
                .find(|rule| rule["comment"] == comment)
                .and_then(|rule| {
                    rule["expr"]
                        .as_array()?
                        .iter()
                        .find_map(|e| e["counter"]["packets"].as_u64())
                })
                .ok_or_else(|| {
                    net_err(
                        "reading the lab host's counters",
                        format!("no rule `{comment}` with a counter in {text}"),
                    )
                })
        };
        Ok(LabCounters {
            masqueraded: packets(MASQUERADE_RULE)?,
            forwarded: packets(FORWARD_RULE)?,
        })
    }

    /// The lab host's nftables ruleset, as `nft -j list ruleset` prints it there.
    pub fn ruleset(&self) -> Result<String, HarnessError> {
        in_netns(self.host.path(), || {
            exec::run(
                Command::new("nft").args(["-j", "list", "ruleset"]),
                IP_TIMEOUT,
            )
        })?
        .map(|done| done.stdout)
        .map_err(|e| net_err("nft list ruleset in the lab host namespace", e))
    }

    /// Connects from the lab host to `addr` and reads the peer address the server reports.
    pub fn connect(&self, addr: SocketAddr) -> Result<ConnectOutcome, HarnessError> {
        in_netns(self.host.path(), || {
            connect_and_read(&addr.to_string(), CONNECT_TIMEOUT)
        })
    }

    /// Listens on `addr` in the lab host namespace, answering with the peer address, until the
    /// lab is dropped.
    pub fn listen(&mut self, addr: SocketAddr) -> Result<(), HarnessError> {
        let service = PeerService::start(self.host.path(), addr)?;
        self.services.push(service);
        Ok(())
    }

    /// The listening TCP sockets of the lab host namespace.
    pub fn listeners(&self) -> Result<Vec<SocketAddr>, HarnessError> {
        in_netns(self.host.path(), palisade_probe::net::own_tcp_listeners)?
            .map_err(|e| net_err("listing the lab host's listeners", e))
    }

    /// The container subnet, `10.a.b.0/24`.
    pub fn subnet(&self) -> String {
        self.subnet_cidr()
    }
}

/// The comments that name the lab host's counting rules.
const MASQUERADE_RULE: &str = "palisade-masquerade";
const FORWARD_RULE: &str = "palisade-forward";

/// Packets the lab host's rules counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabCounters {
    /// Rewritten by the masquerade rule (container subnet out of the uplink).
    pub masqueraded: u64,
    /// Forwarded by the lab host from the container subnet.
    pub forwarded: u64,
}

/// A probe request to connect to `addr`, bounded like the lab's own connects.
pub fn connect_request(addr: SocketAddr) -> Request {
    Request::Connect {
        addr: addr.to_string(),
        timeout_ms: CONNECT_TIMEOUT.as_millis() as u64,
    }
}

/// The state of a network namespace that must not change: links, addresses, routes (all tables,
/// v4 and v6), the nftables ruleset and `ip_forward`, as seen by the calling thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSnapshot {
    pub links: serde_json::Value,
    pub addresses: serde_json::Value,
    pub routes: serde_json::Value,
    pub ruleset: serde_json::Value,
    pub ip_forward: String,
}

impl NetSnapshot {
    pub fn take() -> Result<NetSnapshot, HarnessError> {
        let json = |command: &mut Command| -> Result<serde_json::Value, HarnessError> {
            let shown = format!("{command:?}");
            let done = exec::run(command, IP_TIMEOUT).map_err(|e| net_err(shown.clone(), e))?;
            if !done.status.success() {
                return Err(net_err(shown, done.stderr.trim()));
            }
            let mut value: serde_json::Value =
                serde_json::from_str(&done.stdout).map_err(|e| net_err(shown, e))?;
            strip_volatile(&mut value);
            Ok(value)
        };
        let ruleset = if crate::exec::find_program("nft").is_some() {
            json(Command::new("nft").args(["-j", "list", "ruleset"]))?
        } else {
            serde_json::Value::Null
        };
        Ok(NetSnapshot {
            links: json(Command::new("ip").args(["-j", "link", "show"]))?,
            addresses: json(Command::new("ip").args(["-j", "addr", "show"]))?,
            routes: serde_json::json!([
                json(Command::new("ip").args(["-j", "-4", "route", "show", "table", "all"]))?,
                json(Command::new("ip").args(["-j", "-6", "route", "show", "table", "all"]))?,
            ]),
            ruleset,
            ip_forward: std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
                .map_err(|e| net_err("reading ip_forward", e))?
                .trim()
                .to_owned(),
        })
    }

    /// What differs from `other`, one line per part, for an assertion message.
    pub fn diff(&self, other: &NetSnapshot) -> Vec<String> {
        let mut out = Vec::new();
        let parts = [
            ("links", &self.links, &other.links),
            ("addresses", &self.addresses, &other.addresses),
            ("routes", &self.routes, &other.routes),
            ("nftables ruleset", &self.ruleset, &other.ruleset),
        ];
        for (name, a, b) in parts {
            if a != b {
                out.push(format!("{name}: before {a}, after {b}"));
            }
        }
        if self.ip_forward != other.ip_forward {
            out.push(format!(
                "ip_forward: before {}, after {}",
                self.ip_forward, other.ip_forward
            ));
        }
        out
    }
}

/// Drops what changes by itself (address lifetimes, route expiry, rule counters): the snapshot compares configuration, not clocks or traffic.
fn strip_volatile(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for key in [
                "valid_life_time",
                "preferred_life_time",
                "expires",
                "packets",
                "bytes",
            ] {
                map.remove(key);
            }
            map.values_mut().for_each(strip_volatile);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_volatile),
        _ => {}
    }
}

/// Unwraps the probe's answer to a `connect` request.
pub fn expect_connection(reply: palisade_probe::Reply) -> Result<ConnectOutcome, HarnessError> {
    match reply {
        palisade_probe::Reply::Connection(outcome) => Ok(outcome),
        other => Err(HarnessError::ProbeFailed {
            op: "connect".into(),
            message: format!("unexpected reply {other:?}"),
        }),
    }
}

/// Unwraps the probe's answer to a `list-listeners` request.
pub fn expect_listeners(reply: palisade_probe::Reply) -> Result<Vec<SocketAddr>, HarnessError> {
    match reply {
        palisade_probe::Reply::Listeners { sockets } => sockets
            .iter()
            .map(|s| {
                s.parse().map_err(|e| HarnessError::ProbeGarbage {
                    line: s.clone(),
                    problem: format!("not a socket address: {e}"),
                })
            })
            .collect(),
        other => Err(HarnessError::ProbeFailed {
            op: "list-listeners".into(),
            message: format!("unexpected reply {other:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volatile_fields_are_ignored() {
        let mut a = serde_json::json!([{"ifname": "eth0", "addr_info": [{"local": "192.0.2.2", "valid_life_time": 10}]}]);
        let mut b = serde_json::json!([{"ifname": "eth0", "addr_info": [{"local": "192.0.2.2", "valid_life_time": 9}]}]);
        strip_volatile(&mut a);
        strip_volatile(&mut b);
        assert_eq!(a, b);
    }
}
