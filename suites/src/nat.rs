//! NAT egress: a container on the bridge reaches the "outside" only through the host, which
//! forwards and masquerades its traffic.
//!
//! The lab's outside namespace (198.51.100.1) has no route back to the container subnet, so a
//! connection succeeds only if the host rewrote its source to the uplink address (198.51.100.254).
//! `ip_forward` and the nftables rules (which count what they forward and rewrite) are set in the
//! lab host namespace, never in the real host's.

use oci_spec::runtime::LinuxNamespaceType::Network;
use palisade_harness::lab::netlab::{
    ConnectOutcome, Lab, LabCounters, Plug, UPLINK_IP, connect_request, expect_connection,
};
use palisade_harness::run::control::{Control, Edit};
use palisade_harness::run::scenario::Schedule;
use palisade_harness::{Ctx, Failure, HarnessError, Outcome, Requirement, Scenario, check};

const NEEDS: &[Requirement] = &[
    Requirement::Privileged,
    Requirement::Program("ip"),
    Requirement::Program("nft"),
    Requirement::DirectRuntime,
];

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        area: "nat",
        name: "egress_is_masqueraded",
        checks: "The container reaches the outside (198.51.100.1), which sees the host's uplink address 198.51.100.254, and the lab host's masquerade rule counted the container's packets (its own 10.x address was rewritten).",
        control: Control::config(Edit::JoinLabHostNetwork),
        means: "The container's private address leaks to the outside, or the container cannot get out.",
        requires: NEEDS,
        schedule: Schedule::Parallel,
        run: egress_is_masqueraded,
    },
    Scenario {
        area: "nat",
        name: "egress_needs_forwarding",
        checks: "The container's egress is forwarded by the host: the lab host's forward rule counts its packets, it gets out, and the real host's ip_forward is unchanged.",
        control: Control::config(Edit::JoinLabHostNetwork),
        means: "Container traffic leaves by a path the host did not route, or the lab changed the real host's forwarding.",
        requires: NEEDS,
        schedule: Schedule::Parallel,
        run: egress_needs_forwarding,
    },
];

/// The container connects to the outside service; what the service saw, and what the lab host's
/// rules counted meanwhile.
fn egress(cx: &Ctx, lab: &mut Lab) -> Result<(ConnectOutcome, LabCounters), HarnessError> {
    let outside = lab.add_outside()?;
    let net = lab.add_container(Plug::Bridged)?;
    lab.masquerade()?;
    let before = lab.counters()?;
    let spec = cx
        .spec("nat")?
        .join_namespace(Network, &net.path)
        .one_shot(&connect_request(outside));
    let seen = expect_connection(cx.run_once(spec)?)?;
    let after = lab.counters()?;
    Ok((
        seen,
        LabCounters {
            masqueraded: after.masqueraded.saturating_sub(before.masqueraded),
            forwarded: after.forwarded.saturating_sub(before.forwarded),
        },
    ))
}

fn egress_is_masqueraded(cx: &Ctx) -> Outcome {
    let mut lab = Lab::new(cx)?;
    let (seen, counted) = egress(cx, &mut lab)?;
    check!(
        seen.peer_ip() == Some(UPLINK_IP.to_string()),
        "expected the outside to see the host's uplink address {UPLINK_IP}, saw {seen:?}: egress is \
         not masqueraded, or the container cannot get out"
    );
    check!(
        counted.masqueraded > 0,
        "expected the lab host's masquerade rule to rewrite the container's 10.x packets, it counted \
         none ({counted:?}): the connection did not come from the container's own network namespace"
    );
    Ok(())
}

fn egress_needs_forwarding(cx: &Ctx) -> Outcome {
    let read_forward = || {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .map_err(|e| Failure::Broken(format!("reading the real host's ip_forward: {e}")))
    };
    let real_before = read_forward()?;
    let mut lab = Lab::new(cx)?;
    let (seen, counted) = egress(cx, &mut lab)?;
    check!(
        seen.peer_ip() == Some(UPLINK_IP.to_string()),
        "expected the container to reach the outside as {UPLINK_IP}, saw {seen:?}: the host does \
         not forward the container's traffic"
    );
    check!(
        counted.forwarded > 0,
        "expected the lab host to forward the container's packets (its forward rule counted none, \
         {counted:?}): the traffic did not come through the host from the container's own namespace"
    );
    let real_after = read_forward()?;
    check!(
        real_before == real_after,
        "expected the real host's ip_forward to stay {:?}, saw {:?}: the lab leaked into the root namespace",
        real_before.trim(),
        real_after.trim()
    );
    Ok(())
}
