//! Capabilities: the container holds exactly the capabilities its config grants, and the
//! privileged operations it was not granted fail with EPERM.

use oci_spec::runtime::Capability;
use palisade_harness::bundle::{capability_mask, default_capabilities};
use palisade_harness::{Ctx, Outcome, Reply, Request, Requirement, Scenario, check, skip};
use palisade_probe::protocol::CapabilitySets;

const PRIVILEGED: &[Requirement] = &[Requirement::Privileged];

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        area: "capabilities",
        name: "sets_match_the_config",
        checks: "Effective, permitted and bounding sets inside are exactly the OCI default set; inheritable and ambient are empty.",
        control: "the config also grants CAP_CHOWN, which the check does not expect",
        means: "The container holds privileges its config does not grant.",
        requires: PRIVILEGED,
        run: sets_match_the_config,
    },
    Scenario {
        area: "capabilities",
        name: "no_sys_admin_no_sethostname_or_mount",
        checks: "Without CAP_SYS_ADMIN, sethostname and mount fail with EPERM.",
        control: "the config grants CAP_SYS_ADMIN",
        means: "The container can do administrative operations it was not granted.",
        requires: PRIVILEGED,
        run: no_sys_admin,
    },
    Scenario {
        area: "capabilities",
        name: "no_net_raw_no_raw_socket",
        checks: "Without CAP_NET_RAW, opening a raw socket fails with EPERM.",
        control: "the config grants CAP_NET_RAW",
        means: "The container can forge packets without being granted it.",
        requires: PRIVILEGED,
        run: no_net_raw,
    },
    Scenario {
        area: "capabilities",
        name: "no_sys_chroot_no_chroot",
        checks: "Without CAP_SYS_CHROOT, chroot fails with EPERM.",
        control: "the config grants CAP_SYS_CHROOT",
        means: "The container can chroot, the first step of the classic escape.",
        requires: PRIVILEGED,
        run: no_sys_chroot,
    },
    Scenario {
        area: "capabilities",
        name: "no_new_privileges_is_set",
        checks: "With `noNewPrivileges: true`, /proc/self/status inside reads `NoNewPrivs: 1`.",
        control: "`noNewPrivileges: false`",
        means: "Setuid binaries can raise privileges inside the container.",
        requires: PRIVILEGED,
        run: no_new_privileges_is_set,
    },
];

/// A capability the host itself lacks cannot be granted by any runtime: a skip, not a failure.
fn grantable(cx: &Ctx, caps: &[Capability]) -> Result<(), palisade_harness::Failure> {
    for cap in caps {
        // oci-spec prints `CHOWN`; the caps crate parses `CAP_CHOWN`.
        let name = format!("CAP_{cap}");
        let host_has =
            palisade_common::capabilities::to_kernel(*cap).is_some_and(|c| cx.host().can_grant(c));
        if !host_has {
            skip!("the host cannot grant {name} (not in its bounding set)");
        }
    }
    Ok(())
}

fn sets_match_the_config(cx: &Ctx) -> Outcome {
    let baseline = capability_mask(&default_capabilities());
    let extra = if cx.under_control() {
        vec![Capability::Chown]
    } else {
        vec![]
    };
    grantable(cx, &extra)?;
    let facts = cx.facts_of(cx.spec("caps-sets", &Request::Facts)?.grant(&extra))?;
    let expected = CapabilitySets {
        effective: baseline,
        permitted: baseline,
        inheritable: 0,
        bounding: baseline,
        ambient: 0,
    };
    check!(
        facts.capabilities == expected,
        "expected the capability sets {expected:x?}, saw {:x?}: the container holds capabilities \
         its config does not grant (or lacks ones it does)",
        facts.capabilities
    );
    Ok(())
}

/// Runs `requests` in a container granted `control_cap` only under the control; each must fail
/// with EPERM.
fn refused(cx: &Ctx, label: &str, control_cap: Capability, requests: &[Request]) -> Outcome {
    let mut spec = cx.spec(label, &Request::Facts)?.serve();
    if cx.under_control() {
        grantable(cx, &[control_cap])?;
        spec = spec.grant(&[control_cap]);
    }
    let mut container = cx.launch(spec)?;
    for request in requests {
        let reply = container.ask(request)?;
        check!(
            matches!(&reply, Reply::Syscall(o) if o.errno.as_deref() == Some("EPERM")),
            "expected {request:?} to fail with EPERM without {control_cap}, saw {reply:?}: the \
             container can use a privilege its config does not grant"
        );
    }
    Ok(())
}

fn no_sys_admin(cx: &Ctx) -> Outcome {
    let requests = [
        Request::SetHostname {
            name: "not-allowed".into(),
        },
        Request::MountTmpfs {
            target: "/tmp/palisade-mnt".into(),
            source: cx.run.name("caps-tmpfs"),
        },
    ];
    refused(cx, "caps-sys-admin", Capability::SysAdmin, &requests)
}

fn no_net_raw(cx: &Ctx) -> Outcome {
    refused(
        cx,
        "caps-net-raw",
        Capability::NetRaw,
        &[Request::RawSocket],
    )
}

fn no_sys_chroot(cx: &Ctx) -> Outcome {
    // chroot("/") changes nothing even when it is allowed.
    refused(
        cx,
        "caps-chroot",
        Capability::SysChroot,
        &[Request::Chroot { path: "/".into() }],
    )
}

fn no_new_privileges_is_set(cx: &Ctx) -> Outcome {
    let spec = cx.spec("caps-nnp", &Request::Facts)?.edit(|s| {
        if let Some(process) = s.process_mut() {
            process.set_no_new_privileges(Some(!cx.under_control()));
        }
    });
    let facts = cx.facts_of(spec)?;
    check!(
        facts.no_new_privs,
        "expected `NoNewPrivs: 1` inside with noNewPrivileges set, saw 0: setuid binaries and file \
         capabilities can raise the container's privileges"
    );
    Ok(())
}
