//! Capabilities: the container holds exactly the capabilities its config grants, and the
//! privileged operations it was not granted fail with EPERM.

use oci_spec::runtime::Capability;
use palisade_harness::driver::bundle::{capability_mask, default_capabilities};
use palisade_harness::run::control::{Control, Edit};
use palisade_harness::run::scenario::Schedule;
use palisade_harness::{Ctx, Outcome, Reply, Request, Requirement, Scenario, check};
use palisade_probe::protocol::CapabilitySets;

const PRIVILEGED: &[Requirement] = &[Requirement::Privileged];

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        area: "capabilities",
        name: "sets_match_the_config",
        checks: "Effective, permitted and bounding sets inside are exactly the OCI default set; inheritable and ambient are empty.",
        control: Control::config(Edit::Grant(Capability::Chown)),
        means: "The container holds privileges its config does not grant.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: sets_match_the_config,
    },
    Scenario {
        area: "capabilities",
        name: "no_sys_admin_no_sethostname_or_mount",
        checks: "Without CAP_SYS_ADMIN, sethostname and mount fail with EPERM.",
        control: Control::config(Edit::Grant(Capability::SysAdmin)),
        means: "The container can do administrative operations it was not granted.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: no_sys_admin,
    },
    Scenario {
        area: "capabilities",
        name: "no_net_raw_no_raw_socket",
        checks: "Without CAP_NET_RAW, opening a raw socket fails with EPERM.",
        control: Control::config(Edit::Grant(Capability::NetRaw)),
        means: "The container can forge packets without being granted it.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: no_net_raw,
    },
    Scenario {
        area: "capabilities",
        name: "no_sys_chroot_no_chroot",
        checks: "Without CAP_SYS_CHROOT, chroot fails with EPERM.",
        control: Control::config(Edit::Grant(Capability::SysChroot)),
        means: "The container can chroot, the first step of the classic escape.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: no_sys_chroot,
    },
    Scenario {
        area: "capabilities",
        name: "no_new_privileges_is_set",
        checks: "With `noNewPrivileges: true`, /proc/self/status inside reads `NoNewPrivs: 1`.",
        control: Control::config(Edit::NoNewPrivileges(false)),
        means: "Setuid binaries can raise privileges inside the container.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: no_new_privileges_is_set,
    },
];

fn sets_match_the_config(cx: &Ctx) -> Outcome {
    let baseline = capability_mask(&default_capabilities());
    let facts = cx.facts_of(cx.spec("caps-sets")?)?;
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

/// Runs `requests` in a container without `missing`; each must fail with EPERM.
fn refused(cx: &Ctx, label: &str, missing: Capability, requests: &[Request]) -> Outcome {
    let mut container = cx.launch(cx.spec(label)?)?;
    for request in requests {
        let reply = container.ask(request)?;
        check!(
            matches!(&reply, Reply::Syscall(o) if o.errno.as_deref() == Some("EPERM")),
            "expected {request:?} to fail with EPERM without {missing}, saw {reply:?}: the \
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
    let spec = cx.spec("caps-nnp")?.edit(|s| {
        if let Some(process) = s.process_mut() {
            process.set_no_new_privileges(Some(true));
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
