//! NAT egress: a container on the bridge reaches the "outside" only through the host, which
//! forwards and masquerades its traffic.
//!
//! The lab's outside namespace (198.51.100.1) has no route back to the container subnet, so a
//! connection succeeds only if the host rewrote its source to the uplink address (198.51.100.254).
//! `ip_forward` and the nftables rule are set in the lab host namespace, never in the real host's.

use palisade_harness::netlab::{Lab, Plug, UPLINK_IP, connect_request, expect_connection};
use palisade_harness::{Ctx, Outcome, Request, Requirement, Scenario, check};

const NEEDS: &[Requirement] = &[
    Requirement::Privileged,
    Requirement::Program("ip"),
    Requirement::Program("nft"),
];

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        area: "nat",
        name: "egress_is_masqueraded",
        checks: "The container reaches the outside (198.51.100.1), which sees the host's uplink address 198.51.100.254, not the container's 10.x address.",
        control: "the lab host has no masquerade rule",
        means: "The container's private address leaks to the outside, or the container cannot get out.",
        requires: NEEDS,
        run: egress_is_masqueraded,
    },
    Scenario {
        area: "nat",
        name: "egress_needs_forwarding",
        checks: "The container's egress is forwarded by the host: with ip_forward set in the host's namespace it gets out, and the real host's ip_forward is unchanged.",
        control: "ip_forward is 0 in the lab host namespace",
        means: "Container traffic leaves by a path the host did not route, or the lab changed the real host's forwarding.",
        requires: NEEDS,
        run: egress_needs_forwarding,
    },
];

/// The container connects to the outside service and reports what the service saw.
fn egress(
    cx: &Ctx,
    lab: &mut Lab,
) -> Result<palisade_harness::netlab::ConnectOutcome, palisade_harness::HarnessError> {
    let outside = lab.add_outside()?;
    let net = lab.add_container(Plug::Bridged)?;
    let spec = cx
        .spec("nat", &Request::Facts)?
        .join_namespace(oci_spec::runtime::LinuxNamespaceType::Network, &net.path)
        .probe(&connect_request(outside));
    expect_connection(cx.run_once(spec)?)
}

fn egress_is_masqueraded(cx: &Ctx) -> Outcome {
    let mut lab = Lab::new(&cx.run)?;
    if !cx.under_control() {
        lab.masquerade()?;
    }
    let seen = egress(cx, &mut lab)?;
    check!(
        seen.succeeded(),
        "expected the container to reach the outside service, saw {seen:?}: no way out through the host"
    );
    check!(
        seen.peer_ip() == Some(UPLINK_IP.to_string()),
        "expected the outside to see the host's uplink address {UPLINK_IP}, saw {:?}: egress is not masqueraded",
        seen.peer_seen
    );
    Ok(())
}

fn egress_needs_forwarding(cx: &Ctx) -> Outcome {
    let real_before = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default();
    let mut lab = Lab::new(&cx.run)?;
    lab.masquerade()?;
    if cx.under_control() {
        lab.set_forwarding(false)?;
    }
    let forwarding = lab.forwarding()?;
    let seen = egress(cx, &mut lab)?;
    check!(
        seen.peer_ip() == Some(UPLINK_IP.to_string()),
        "expected the container (lab host ip_forward={forwarding}) to reach the outside as {UPLINK_IP}, \
         saw {seen:?}: the host does not forward the container's traffic"
    );
    let real_after = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default();
    check!(
        real_before == real_after,
        "expected the real host's ip_forward to stay {:?}, saw {:?}: the lab leaked into the root namespace",
        real_before.trim(),
        real_after.trim()
    );
    Ok(())
}
