//! Network namespace: loopback, listeners and links are the container's own; reachability is
//! exactly what the veth and the bridge give.
//!
//! Every scenario builds a lab ([`Lab`]): a namespace that plays the host, with a bridge, and one
//! namespace per container that the container's config joins by path. Nothing touches the real
//! host's network; every connect is bounded, and a connection counts as refused only when the
//! kernel refuses it (a timeout is a broken lab, never a pass).

use std::net::{IpAddr, SocketAddr};

use oci_spec::runtime::LinuxNamespaceType::Network;
use palisade_harness::lab::netlab::{
    ConnectOutcome, Lab, LabNet, Plug, connect_request, expect_connection, expect_listeners,
};
use palisade_harness::run::control::{Control, Edit, LabChange};
use palisade_harness::run::scenario::Schedule;
use palisade_harness::{
    Container, Ctx, Failure, HarnessError, Outcome, Request, Requirement, Scenario, check, require,
};

const NEEDS: &[Requirement] = &[
    Requirement::Privileged,
    Requirement::Program("ip"),
    Requirement::DirectRuntime,
];

const CONTAINER_PORT: u16 = 7001;
const HOST_PORT: u16 = 7002;

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        area: "network",
        name: "loopback_is_private",
        checks: "A listener on 127.0.0.1 inside is unreachable from the host's 127.0.0.1, and a listener on the host's loopback is unreachable from inside.",
        control: Control::config(Edit::JoinLabHostNetwork),
        means: "Services bound to 127.0.0.1 on the host are exposed to the container, and the other way round.",
        requires: NEEDS,
        schedule: Schedule::Parallel,
        run: loopback_is_private,
    },
    Scenario {
        area: "network",
        name: "veth_reachability",
        checks: "Over its veth, the container reaches the host's bridge address and the host reaches the container (TCP both ways, each side sees the other's address).",
        control: Control::config(Edit::NamespaceWithoutPath(Network)),
        means: "The runtime's network plumbing does not carry traffic between the container and the host.",
        requires: NEEDS,
        schedule: Schedule::Parallel,
        run: veth_reachability,
    },
    Scenario {
        area: "network",
        name: "bridge_reachability",
        checks: "Two containers on the same bridge reach each other by address, both ways.",
        control: Control::config_of("net-second", Edit::NamespaceWithoutPath(Network)),
        means: "Containers on one bridge cannot talk to each other.",
        requires: NEEDS,
        schedule: Schedule::Parallel,
        run: bridge_reachability,
    },
    Scenario {
        area: "network",
        name: "host_reach_needs_bridge_address",
        checks: "With no address on the bridge the host cannot reach the container; once the bridge has its address, it can.",
        // Routing through the bridge is the lab host's, not the runtime's: no config expresses it.
        control: Control::Lab(LabChange::BridgeKeepsAddress),
        means: "The host reaches containers by some path other than the bridge.",
        requires: NEEDS,
        schedule: Schedule::Parallel,
        run: host_reach_needs_bridge_address,
    },
    Scenario {
        area: "network",
        name: "listeners_are_per_namespace",
        checks: "The listening TCP sockets seen inside (/proc/net/tcp) are the container's own, not the host's, and the host does not see the container's.",
        control: Control::config(Edit::JoinLabHostNetwork),
        means: "The container sees, and can use, the host's sockets: no network isolation.",
        requires: NEEDS,
        schedule: Schedule::Parallel,
        run: listeners_are_per_namespace,
    },
];

/// Starts a serving probe that joins the lab namespace of `net`.
fn launch_in(cx: &Ctx, label: &str, net: &LabNet) -> Result<Container, HarnessError> {
    cx.launch(cx.spec(label)?.join_namespace(Network, &net.path))
}

fn listen(container: &mut Container, addr: SocketAddr) -> Outcome {
    container.ask(&Request::Listen {
        addr: addr.to_string(),
    })?;
    Ok(())
}

fn at(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

/// A failed connection proves a closed path only when the kernel refused it; anything else (a
/// timeout above all) means the lab or the probe is broken.
fn unreachable(outcome: &ConnectOutcome, what: &str) -> Result<bool, Failure> {
    if outcome.succeeded() {
        return Ok(false);
    }
    require!(
        outcome.refused_by_the_kernel(),
        "{what}: expected the kernel to refuse or find no route, saw {outcome:?}: the lab or the probe is broken"
    );
    Ok(true)
}

fn loopback_is_private(cx: &Ctx) -> Outcome {
    let mut lab = Lab::new(cx)?;
    let net = lab.add_container(Plug::Bridged)?;
    let mut container = launch_in(cx, "net-lo", &net)?;
    let inside = at([127, 0, 0, 1], CONTAINER_PORT);
    let on_host = at([127, 0, 0, 1], HOST_PORT);
    listen(&mut container, inside)?;
    lab.listen(on_host)?;

    // Both listeners work where they are: a refusal below is isolation, not a dead listener.
    let own = expect_connection(container.ask(&connect_request(inside))?)?;
    require!(
        own.succeeded(),
        "expected the container to reach its own {inside}, saw {own:?}: the probe's listener is broken"
    );
    let host_own = lab.connect(on_host)?;
    require!(
        host_own.succeeded(),
        "expected the host to reach its own {on_host}, saw {host_own:?}: the lab is broken"
    );

    let from_host = lab.connect(inside)?;
    check!(
        unreachable(&from_host, "the host connecting to its own 127.0.0.1")?,
        "expected the host's {inside} to have no listener (the container's is on its own loopback), \
         but it answered {:?}: the container shares the host's loopback",
        from_host.peer_seen
    );
    let from_inside = expect_connection(container.ask(&connect_request(on_host))?)?;
    check!(
        unreachable(
            &from_inside,
            "the container connecting to its own 127.0.0.1"
        )?,
        "expected the container's {on_host} to have no listener (the host's is on the host's loopback), \
         but it answered {:?}: the container can reach services bound to the host's loopback",
        from_inside.peer_seen
    );
    Ok(())
}

fn veth_reachability(cx: &Ctx) -> Outcome {
    let mut lab = Lab::new(cx)?;
    let net = lab.add_container(Plug::Bridged)?;
    let mut container = launch_in(cx, "net-veth", &net)?;
    listen(&mut container, at([0, 0, 0, 0], CONTAINER_PORT))?;
    let bridge = lab.bridge_ip();
    lab.listen(at(bridge, HOST_PORT))?;

    let to_container = lab.connect(at(net.ip, CONTAINER_PORT))?;
    check!(
        to_container.peer_ip() == Some(bridge.to_string()),
        "expected the host to reach the container at {}:{CONTAINER_PORT} from {bridge}, saw {to_container:?}: \
         the veth does not carry traffic into the container",
        net.ip
    );
    let to_host = expect_connection(container.ask(&connect_request(at(bridge, HOST_PORT)))?)?;
    check!(
        to_host.peer_ip() == Some(net.ip.to_string()),
        "expected the container to reach the host's {bridge}:{HOST_PORT} from {}, saw {to_host:?}: \
         the veth does not carry traffic out of the container",
        net.ip
    );
    Ok(())
}

fn bridge_reachability(cx: &Ctx) -> Outcome {
    let mut lab = Lab::new(cx)?;
    let first_net = lab.add_container(Plug::Bridged)?;
    let second_net = lab.add_container(Plug::Bridged)?;
    let mut first = launch_in(cx, "net-first", &first_net)?;
    let mut second = launch_in(cx, "net-second", &second_net)?;
    listen(&mut first, at([0, 0, 0, 0], CONTAINER_PORT))?;
    listen(&mut second, at([0, 0, 0, 0], CONTAINER_PORT))?;

    reaches(&mut second, &second_net, &first_net)?;
    reaches(&mut first, &first_net, &second_net)
}

/// `from` connects to `to`'s listener, which must see `from`'s own address.
fn reaches(from: &mut Container, from_net: &LabNet, to_net: &LabNet) -> Outcome {
    let seen = expect_connection(from.ask(&connect_request(at(to_net.ip, CONTAINER_PORT)))?)?;
    check!(
        seen.peer_ip() == Some(from_net.ip.to_string()),
        "expected {} to reach {}:{CONTAINER_PORT} across the bridge and be seen as itself, saw {seen:?}: \
         containers on one bridge cannot talk",
        from_net.ip,
        to_net.ip
    );
    Ok(())
}

fn host_reach_needs_bridge_address(cx: &Ctx) -> Outcome {
    let mut lab = Lab::new(cx)?;
    lab.remove_bridge_address()?;
    let net = lab.add_container(Plug::Bridged)?;
    let mut container = launch_in(cx, "net-braddr", &net)?;
    let target = at(net.ip, CONTAINER_PORT);
    listen(&mut container, target)?;

    let without = lab.connect(target)?;
    check!(
        unreachable(
            &without,
            "the host connecting to the container without a bridge address"
        )?,
        "expected the host to have no route to {target} while the bridge has no address, but it \
         connected ({without:?}): the host reaches containers by some other path"
    );
    lab.add_bridge_address()?;
    let with = lab.connect(target)?;
    check!(
        with.peer_ip() == Some(lab.bridge_ip().to_string()),
        "expected the host to reach {target} from {} once the bridge has its address, saw {with:?}",
        lab.bridge_ip()
    );
    Ok(())
}

fn listeners_are_per_namespace(cx: &Ctx) -> Outcome {
    let mut lab = Lab::new(cx)?;
    let net = lab.add_container(Plug::Bridged)?;
    let mut container = launch_in(cx, "net-listen", &net)?;
    let inside = at([0, 0, 0, 0], CONTAINER_PORT);
    let on_host = at([127, 0, 0, 1], HOST_PORT);
    listen(&mut container, inside)?;
    lab.listen(on_host)?;

    let seen_inside = expect_listeners(container.ask(&Request::ListListeners)?)?;
    let seen_on_host = lab.listeners()?;
    require!(
        seen_inside.contains(&inside),
        "expected the container to list its own listener {inside}, saw {seen_inside:?}: the probe cannot read its socket table"
    );
    check!(
        !seen_inside.contains(&on_host),
        "expected the container's listening sockets not to include the host's {on_host}, saw \
         {seen_inside:?}: the container sees the host's sockets (shared network namespace)"
    );
    check!(
        seen_on_host.contains(&on_host) && !seen_on_host.contains(&inside),
        "expected the host to list {on_host} but not the container's {inside}, saw {seen_on_host:?}"
    );
    Ok(())
}
