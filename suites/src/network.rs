//! Network namespace: loopback, listeners and links are the container's own; reachability is
//! exactly what the veth and the bridge give.
//!
//! Every scenario builds a lab ([`Lab`]): a namespace that plays the host, with a bridge, and one
//! namespace per container that the container's config joins by path. Nothing touches the real
//! host's network; every connect is bounded (a control fails in about a second, never hangs).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use oci_spec::runtime::LinuxNamespaceType::Network;
use palisade_harness::netlab::{
    Lab, LabNet, Plug, connect_request, expect_connection, expect_listeners,
};
use palisade_harness::{
    Container, Ctx, HarnessError, Outcome, Request, Requirement, Scenario, check,
};

const NEEDS: &[Requirement] = &[Requirement::Privileged, Requirement::Program("ip")];

const CONTAINER_PORT: u16 = 7001;
const HOST_PORT: u16 = 7002;

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        area: "network",
        name: "loopback_is_private",
        checks: "A listener on 127.0.0.1 inside is unreachable from the host's 127.0.0.1, and a listener on the host's loopback is unreachable from inside.",
        control: "the container joins the lab host's network namespace",
        means: "Services bound to 127.0.0.1 on the host are exposed to the container, and the other way round.",
        requires: NEEDS,
        run: loopback_is_private,
    },
    Scenario {
        area: "network",
        name: "veth_reachability",
        checks: "Over its veth, the container reaches the host's bridge address and the host reaches the container (TCP both ways, each side sees the other's address).",
        control: "the container's namespace has no veth and no route (loopback only)",
        means: "The runtime's network plumbing does not carry traffic between the container and the host.",
        requires: NEEDS,
        run: veth_reachability,
    },
    Scenario {
        area: "network",
        name: "bridge_reachability",
        checks: "Two containers on the same bridge reach each other by address, both ways.",
        control: "the second container's veth is left off the bridge",
        means: "Containers on one bridge cannot talk to each other.",
        requires: NEEDS,
        run: bridge_reachability,
    },
    Scenario {
        area: "network",
        name: "host_reach_needs_bridge_address",
        checks: "With no address on the bridge the host cannot reach the container; once the bridge has its address, it can.",
        control: "the bridge keeps its address throughout",
        means: "The host reaches containers by some path other than the bridge.",
        requires: NEEDS,
        run: host_reach_needs_bridge_address,
    },
    Scenario {
        area: "network",
        name: "listeners_are_per_namespace",
        checks: "The listening TCP sockets seen inside (/proc/net/tcp) are the container's own, not the host's, and the host does not see the container's.",
        control: "the container joins the lab host's network namespace",
        means: "The container sees, and can use, the host's sockets: no network isolation.",
        requires: NEEDS,
        run: listeners_are_per_namespace,
    },
];

/// Starts a serving probe in `ns` (a lab namespace joined by path).
fn launch_in(
    cx: &Ctx,
    label: &str,
    ns: &std::path::Path,
) -> Result<Container, palisade_harness::HarnessError> {
    cx.launch(
        cx.spec(label, &Request::Facts)?
            .serve()
            .join_namespace(Network, ns),
    )
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

/// A network namespace of the container's own on the bridge; under the negative control, the lab
/// host's (a container that shares the host's network stack).
fn own_netns_or_lab_hosts(cx: &Ctx, lab: &mut Lab) -> Result<PathBuf, HarnessError> {
    let net = lab.add_container(Plug::Bridged)?;
    Ok(if cx.under_control() {
        lab.host_path().to_owned()
    } else {
        net.path.clone()
    })
}

fn loopback_is_private(cx: &Ctx) -> Outcome {
    let mut lab = Lab::new(&cx.run)?;
    let ns = own_netns_or_lab_hosts(cx, &mut lab)?;
    let mut container = launch_in(cx, "net-lo", &ns)?;
    let inside = at([127, 0, 0, 1], CONTAINER_PORT);
    let on_host = at([127, 0, 0, 1], HOST_PORT);
    listen(&mut container, inside)?;
    lab.listen(on_host)?;

    // Both listeners work where they are: a refusal below is isolation, not a dead listener.
    let own = expect_connection(container.ask(&connect_request(inside))?)?;
    check!(
        own.succeeded(),
        "expected the container to reach its own {inside}, saw {own:?}: the probe's listener is broken"
    );
    let host_own = lab.connect(on_host)?;
    check!(
        host_own.succeeded(),
        "expected the host to reach its own {on_host}, saw {host_own:?}: the lab is broken"
    );

    let from_host = lab.connect(inside)?;
    check!(
        !from_host.succeeded(),
        "expected the host's {inside} to have no listener (the container's is on its own loopback), \
         but it answered {:?}: the container shares the host's loopback",
        from_host.peer_seen
    );
    let from_inside = expect_connection(container.ask(&connect_request(on_host))?)?;
    check!(
        !from_inside.succeeded(),
        "expected the container's {on_host} to have no listener (the host's is on the host's loopback), \
         but it answered {:?}: the container can reach services bound to the host's loopback",
        from_inside.peer_seen
    );
    Ok(())
}

fn veth_reachability(cx: &Ctx) -> Outcome {
    let mut lab = Lab::new(&cx.run)?;
    let plug = if cx.under_control() {
        Plug::Unplugged
    } else {
        Plug::Bridged
    };
    let net = lab.add_container(plug)?;
    let mut container = launch_in(cx, "net-veth", &net.path)?;
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
    let mut lab = Lab::new(&cx.run)?;
    let first_net = lab.add_container(Plug::Bridged)?;
    let second_plug = if cx.under_control() {
        Plug::OffBridge
    } else {
        Plug::Bridged
    };
    let second_net = lab.add_container(second_plug)?;
    let mut first = launch_in(cx, "net-first", &first_net.path)?;
    let mut second = launch_in(cx, "net-second", &second_net.path)?;
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
    let mut lab = Lab::new(&cx.run)?;
    if !cx.under_control() {
        lab.remove_bridge_address()?;
    }
    let net = lab.add_container(Plug::Bridged)?;
    let mut container = launch_in(cx, "net-braddr", &net.path)?;
    let target = at(net.ip, CONTAINER_PORT);
    listen(&mut container, target)?;

    let without = lab.connect(target)?;
    check!(
        !without.succeeded(),
        "expected the host to have no route to {target} while the bridge has no address, but it \
         connected ({without:?}): the host reaches containers by some other path"
    );
    if !cx.under_control() {
        lab.add_bridge_address()?;
    }
    let with = lab.connect(target)?;
    check!(
        with.peer_ip() == Some(lab.bridge_ip().to_string()),
        "expected the host to reach {target} from {} once the bridge has its address, saw {with:?}",
        lab.bridge_ip()
    );
    Ok(())
}

fn listeners_are_per_namespace(cx: &Ctx) -> Outcome {
    let mut lab = Lab::new(&cx.run)?;
    let ns = own_netns_or_lab_hosts(cx, &mut lab)?;
    let mut container = launch_in(cx, "net-listen", &ns)?;
    let inside = at([0, 0, 0, 0], CONTAINER_PORT);
    let on_host = at([127, 0, 0, 1], HOST_PORT);
    listen(&mut container, inside)?;
    lab.listen(on_host)?;

    let seen_inside = expect_listeners(container.ask(&Request::ListListeners)?)?;
    let seen_on_host = lab.listeners()?;
    check!(
        seen_inside.contains(&inside),
        "expected the container to list its own listener {inside}, saw {seen_inside:?}"
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
