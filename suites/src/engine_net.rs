//! Engine networking (engines Palisade runs in a lab host): the seed's topology, made by the
//! engine itself — a bridge in the daemon's network namespace, a veth per container, MASQUERADE
//! towards the uplink. The host side of each check is the lab host (the daemon's network
//! namespace); the outside is Palisade's outside host 198.51.100.1, behind the lab's uplink.
//!
//! What the engine reports (a container's address, a network's gateway) is checked against what
//! the probe and the host side see on the wire.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use palisade_harness::engine::driver::EngineDriver;
use palisade_harness::engine::translate::NETWORK_ANNOTATION;
use palisade_harness::lab::netlab::{ConnectOutcome, connect_request, expect_connection};
use palisade_harness::run::control::{Control, Edit, EditEnv, LabChange};
use palisade_harness::run::scenario::Schedule;
use palisade_harness::{
    Container, ContainerSpec, Ctx, Failure, Outcome, Request, Requirement, Scenario, check, require,
};

use oci_spec::runtime::LinuxNamespaceType::Network;

const NEEDS: &[Requirement] = &[Requirement::Privileged, Requirement::EngineLab];
const NEEDS_NAT: &[Requirement] = &[
    Requirement::Privileged,
    Requirement::EngineLab,
    Requirement::Program("iptables-save"),
];

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        area: "engine_net",
        name: "loopback_is_private",
        checks: "A listener on 127.0.0.1 in the container is unreachable from the engine host's 127.0.0.1, and the engine host's loopback listener is unreachable from the container.",
        control: Control::config(Edit::WithoutNamespace(Network)),
        means: "Services bound to the host's 127.0.0.1 are exposed to containers, and the other way round.",
        requires: NEEDS,
        schedule: Schedule::Parallel,
        run: loopback_is_private,
    },
    Scenario {
        area: "engine_net",
        name: "bridge_reachability",
        checks: "The container reaches the engine bridge's address and is seen there with the address the engine reports for it (not the bridge's own); the host reaches the container at that address and is seen as the bridge address.",
        control: Control::config(Edit::WithoutNamespace(Network)),
        means: "The container is not behind its own veth on the engine's bridge.",
        requires: NEEDS,
        schedule: Schedule::Parallel,
        run: bridge_reachability,
    },
    Scenario {
        area: "engine_net",
        name: "one_network_reachability",
        checks: "Two containers on one user-defined network reach each other by address, both ways, each seen with its own address.",
        control: Control::config_of("net-b", Edit::OnNetwork("other")),
        means: "Containers on one engine network cannot talk to each other.",
        requires: NEEDS,
        schedule: Schedule::Parallel,
        run: one_network_reachability,
    },
    Scenario {
        area: "engine_net",
        name: "networks_are_separate",
        checks: "A container on one user-defined network cannot connect to a container on another, while a neighbour on the target's own network can.",
        control: Control::config_of("net-b", Edit::OnNetwork("one")),
        means: "Engine networks do not separate the containers on them: any container reaches any other.",
        requires: NEEDS,
        schedule: Schedule::UplinkAlone,
        run: networks_are_separate,
    },
    Scenario {
        area: "engine_net",
        name: "egress_is_masqueraded",
        checks: "The container reaches Palisade's outside host (198.51.100.1), which sees the lab host's uplink address 198.51.100.254, and the engine's MASQUERADE rules counted the container's packets.",
        control: Control::Lab(LabChange::NoForwarding),
        means: "Containers cannot get out, or get out with their private address, by a path the engine did not set up.",
        requires: NEEDS_NAT,
        schedule: Schedule::UplinkAlone,
        run: egress_is_masqueraded,
    },
];

fn engine_of(cx: &Ctx) -> Result<&EngineDriver, Failure> {
    Ok(cx.require_engine()?)
}

fn at(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

/// The container on engine network `name`.
fn on(spec: ContainerSpec, name: &str) -> ContainerSpec {
    spec.edit(|s| {
        let mut map = s.annotations().clone().unwrap_or_default();
        map.insert(NETWORK_ANNOTATION.to_owned(), name.to_owned());
        s.set_annotations(Some(map));
    })
}

fn listen(container: &mut Container, addr: SocketAddr) -> Outcome {
    container.ask(&Request::Listen {
        addr: addr.to_string(),
    })?;
    Ok(())
}

fn connect(container: &mut Container, addr: SocketAddr) -> Result<ConnectOutcome, Failure> {
    Ok(expect_connection(container.ask(&connect_request(addr))?)?)
}

/// The container's address as the engine reports it: its one attachment with an IPv4 address.
fn address(engine: &EngineDriver, container: &Container) -> Result<Option<Ipv4Addr>, Failure> {
    let attached = engine.attachments(container.id())?;
    let ips: Vec<Ipv4Addr> = attached.iter().filter_map(|a| a.ip).collect();
    require!(
        ips.len() <= 1,
        "expected the container on one network, the engine reports {attached:?}"
    );
    Ok(ips.first().copied())
}

/// A refusal proves a closed path only when the kernel refused; a timeout is a broken lab.
fn unreachable(outcome: &ConnectOutcome, what: &str) -> Result<bool, Failure> {
    if outcome.succeeded() {
        return Ok(false);
    }
    require!(
        outcome.refused_by_the_kernel(),
        "{what}: expected the kernel to refuse, saw {outcome:?}: the lab or the probe is broken"
    );
    Ok(true)
}

fn loopback_is_private(cx: &Ctx) -> Outcome {
    let engine = engine_of(cx)?;
    let inside = at(Ipv4Addr::LOCALHOST, engine.port());
    let on_host = at(Ipv4Addr::LOCALHOST, engine.port());
    let mut container = cx.launch(cx.spec("net-lo")?)?;
    listen(&mut container, inside)?;
    let _host = engine.host_listen(on_host)?;

    let own = connect(&mut container, inside)?;
    require!(
        own.succeeded(),
        "expected the container to reach its own {inside}, saw {own:?}: the probe's listener is broken"
    );
    let host_own = engine.host_connect(on_host)?;
    require!(
        host_own.succeeded(),
        "expected the engine host to reach its own {on_host}, saw {host_own:?}: the lab is broken"
    );
    let from_host = engine.host_connect(inside)?;
    check!(
        unreachable(&from_host, "the engine host connecting to its 127.0.0.1")?,
        "expected nothing to listen on the engine host's {inside} (the container's listener is on \
         its own loopback), but it answered {:?}: the container shares the host's loopback",
        from_host.peer_seen
    );
    let from_inside = connect(&mut container, on_host)?;
    check!(
        unreachable(&from_inside, "the container connecting to its 127.0.0.1")?,
        "expected nothing to listen on the container's {on_host} (the engine host's listener is on \
         the host's loopback), but it answered {:?}: the container reaches the host's loopback",
        from_inside.peer_seen
    );
    Ok(())
}

fn bridge_reachability(cx: &Ctx) -> Outcome {
    let engine = engine_of(cx)?;
    let bridge = engine.network_gateway(engine.default_network())?;
    let (inner, outer) = (engine.port(), engine.port());
    let mut container = cx.launch(cx.spec("net-bridge")?)?;
    listen(&mut container, at([0, 0, 0, 0], inner))?;
    let _host = engine.host_listen(at(bridge, outer))?;

    let seen = connect(&mut container, at(bridge, outer))?;
    let peer = seen.peer_ip().and_then(|p| p.parse::<Ipv4Addr>().ok());
    check!(
        peer.is_some_and(|p| p != bridge),
        "expected the container to reach the bridge's {bridge}:{outer} from an address of its own, \
         saw {seen:?}: the container is not behind a veth on the engine's bridge"
    );
    let reported = address(engine, &container)?;
    check!(
        reported == peer,
        "expected the engine to report the container at the address the bridge sees ({peer:?}), it \
         reports {reported:?}"
    );
    let Some(peer) = peer else {
        return Err(Failure::Broken("no peer address".into()));
    };
    let back = engine.host_connect(at(peer, inner))?;
    check!(
        back.peer_ip() == Some(bridge.to_string()),
        "expected the engine host to reach the container at {peer}:{inner} from the bridge's \
         {bridge}, saw {back:?}"
    );
    Ok(())
}

fn one_network_reachability(cx: &Ctx) -> Outcome {
    let engine = engine_of(cx)?;
    let one = engine.create_network(&cx.trial_name("one"))?;
    // The control's other network.
    let _other = engine.create_network(&cx.trial_name("other"))?;
    let port = engine.port();
    let mut a = cx.launch(on(cx.spec("net-a")?, one.name()))?;
    let mut b = cx.launch(on(cx.spec("net-b")?, one.name()))?;
    listen(&mut a, at([0, 0, 0, 0], port))?;
    listen(&mut b, at([0, 0, 0, 0], port))?;
    let (Some(ip_a), Some(ip_b)) = (address(engine, &a)?, address(engine, &b)?) else {
        return Err(Failure::Broken(
            "the engine reports no address for a container on its network".into(),
        ));
    };
    for (from, to, from_ip, to_ip) in [(&mut b, port, ip_b, ip_a), (&mut a, port, ip_a, ip_b)] {
        let seen = connect(from, at(to_ip, to))?;
        check!(
            seen.peer_ip() == Some(from_ip.to_string()),
            "expected {from_ip} to reach {to_ip}:{to} on their network `{}` and be seen as itself, \
             saw {seen:?}: containers on one engine network cannot talk",
            one.name()
        );
    }
    Ok(())
}

fn networks_are_separate(cx: &Ctx) -> Outcome {
    let engine = engine_of(cx)?;
    let one = engine.create_network(&cx.trial_name("one"))?;
    let two = engine.create_network(&cx.trial_name("two"))?;
    let port = engine.port();
    let mut a = cx.launch(on(cx.spec("net-a")?, one.name()))?;
    let mut neighbour = cx.launch(on(cx.spec("net-c")?, one.name()))?;
    let mut b = cx.launch(on(cx.spec("net-b")?, two.name()))?;
    listen(&mut a, at([0, 0, 0, 0], port))?;
    let Some(ip_a) = address(engine, &a)? else {
        return Err(Failure::Broken(
            "the engine reports no address for a container on its network".into(),
        ));
    };
    let near = connect(&mut neighbour, at(ip_a, port))?;
    require!(
        near.succeeded(),
        "expected a container on `{}` to reach its neighbour {ip_a}:{port}, saw {near:?}: the lab is broken",
        one.name()
    );
    let crossed = connect(&mut b, at(ip_a, port))?;
    check!(
        !crossed.succeeded(),
        "expected a container on `{}` not to reach {ip_a}:{port} on `{}`, but it connected (seen as \
         {:?}): engine networks do not separate their containers",
        two.name(),
        one.name(),
        crossed.peer_seen
    );
    Ok(())
}

/// Sets the engine host's forwarding back on when dropped.
struct Forwarding<'a>(&'a EngineDriver);

impl Drop for Forwarding<'_> {
    fn drop(&mut self) {
        let _ = self.0.set_forwarding(true);
    }
}

fn egress_is_masqueraded(cx: &Ctx) -> Outcome {
    let engine = engine_of(cx)?;
    let (outside, uplink) = engine.outside()?;
    // Counted while the container exists: podman's rules for it go with it.
    let mut container = cx.launch(cx.spec("net-egress")?)?;
    // After the container's network is up: podman's CNI bridge plugin turns forwarding on for
    // every container it plugs in.
    let _restore = match cx.lab_change() {
        Some(LabChange::NoForwarding) => {
            let guard = Forwarding(engine);
            engine.set_forwarding(false)?;
            Some(guard)
        }
        _ => None,
    };
    let before = engine.masqueraded_packets()?;
    let seen = connect(&mut container, outside)?;
    let after = engine.masqueraded_packets()?;
    check!(
        seen.peer_ip() == Some(uplink.to_string()),
        "expected the outside {outside} to see the lab host's uplink address {uplink}, saw {seen:?}: \
         the container cannot get out, or gets out with another address"
    );
    check!(
        after > before,
        "expected the engine's MASQUERADE rules to count the container's packets (before {before}, \
         after {after}): the connection did not come through the engine's NAT"
    );
    Ok(())
}
