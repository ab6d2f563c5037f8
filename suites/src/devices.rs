//! Devices: the container's /dev holds the spec's default devices and the configured ones, and
//! the device cgroup (v1 controller, v2 BPF) refuses every other device, even to root with
//! CAP_MKNOD.

use std::path::Path;

use oci_spec::runtime::{Capability, LinuxDeviceCgroupBuilder, LinuxResourcesBuilder};
use palisade_harness::run::control::{Control, Edit};
use palisade_harness::run::scenario::Schedule;
use palisade_harness::{
    ContainerSpec, Ctx, Failure, Outcome, Reply, Request, Requirement, Scenario, check, skip,
};
use palisade_probe::protocol::{FileKind, SyscallOutcome};

const PRIVILEGED: &[Requirement] = &[Requirement::Privileged];

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        area: "devices",
        name: "unlisted_device_cannot_be_opened",
        checks: "With CAP_MKNOD and only the spec's default device rule (deny all), a device outside the defaults (/dev/loop-control, c 10:237) cannot be created or opened: EPERM from the device cgroup. It is opened read-only and nothing is read.",
        control: Control::config(Edit::AllowAllDevices),
        means: "The container can open host devices (disks, loop devices, kernel interfaces) directly.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: unlisted_device_cannot_be_opened,
    },
    Scenario {
        area: "devices",
        name: "dev_holds_only_configured_nodes",
        checks: "Every device node in the container's /dev (two levels deep) is one of the spec's defaults (null, zero, full, random, urandom, tty, pts/ptmx) with its standard number, or listed in linux.devices.",
        control: Control::config(Edit::ExtraDevice {
            path: "/dev/palisade-extra",
            major: 1,
            minor: 7,
        }),
        means: "The container has device nodes nobody gave it, a way to the host's hardware.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: dev_holds_only_configured_nodes,
    },
];

/// The device the open check tries: present on this host, outside every default rule, and
/// harmless to open read-only (opening the loop control device does nothing).
const PROBED_DEVICE: (&str, u64, u64) = ("/dev/loop-control", 10, 237);

/// The spec's default device rule: deny everything (the runtime adds its default devices).
fn deny_all(spec: ContainerSpec) -> ContainerSpec {
    spec.edit(|s| {
        let deny = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .unwrap_or_default();
        if let Some(linux) = s.linux_mut() {
            let resources = linux.resources_mut().get_or_insert_with(|| {
                LinuxResourcesBuilder::default().build().unwrap_or_default()
            });
            resources.set_devices(Some(vec![deny]));
        }
    })
}

fn unlisted_device_cannot_be_opened(cx: &Ctx) -> Outcome {
    let (host_path, major, minor) = PROBED_DEVICE;
    if !Path::new(host_path).exists() {
        skip!("this host has no {host_path} (c {major}:{minor}) to try");
    }
    let spec = deny_all(cx.spec("devices-open")?.grant(&[Capability::Mknod]));
    let reply = cx.run_once(spec.one_shot(&Request::OpenDevice {
        path: "/dev/palisade-probe-dev".into(),
        block: false,
        major,
        minor,
    }))?;
    let Reply::Device { mknod, open } = reply else {
        return Err(Failure::Broken(format!(
            "expected the device steps, saw {reply:?}"
        )));
    };
    let refused = |o: &SyscallOutcome| o.errno.as_deref() == Some("EPERM");
    let denied = refused(&mknod) || open.as_ref().is_some_and(refused);
    check!(
        denied,
        "expected mknod or open of c {major}:{minor} to fail with EPERM under a deny-all device rule, \
         saw mknod {mknod:?}, open {open:?}: the device cgroup lets the container at host devices"
    );
    Ok(())
}

/// The spec's default devices, with their standard numbers.
const DEFAULTS: &[(&str, u64, u64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
    ("/dev/pts/ptmx", 5, 2),
];

fn dev_holds_only_configured_nodes(cx: &Ctx) -> Outcome {
    let spec = cx.spec("devices-dev")?;
    let configured: Vec<(String, u64, u64)> = spec
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().clone())
        .unwrap_or_default()
        .iter()
        .map(|d| {
            (
                d.path().display().to_string(),
                d.major().unsigned_abs(),
                d.minor().unsigned_abs(),
            )
        })
        .collect();
    let reply = cx.run_once(spec.one_shot(&Request::ListTree {
        path: "/dev".into(),
        depth: 2,
    }))?;
    let Reply::Tree { entries } = reply else {
        return Err(Failure::Broken(format!(
            "expected /dev's entries, saw {reply:?}"
        )));
    };
    let unexpected: Vec<String> = entries
        .iter()
        .filter(|e| matches!(e.kind, Some(FileKind::Char | FileKind::Block)))
        .filter(|e| {
            let (major, minor) = e.rdev.unwrap_or((u64::MAX, u64::MAX));
            let known = |list: &[(&str, u64, u64)]| {
                list.iter()
                    .any(|(path, ma, mi)| *path == e.path && (*ma, *mi) == (major, minor))
            };
            let listed = configured
                .iter()
                .any(|(path, ma, mi)| *path == e.path && (*ma, *mi) == (major, minor));
            !known(DEFAULTS) && !listed
        })
        .map(|e| format!("{} ({:?} {:?})", e.path, e.kind, e.rdev))
        .collect();
    check!(
        unexpected.is_empty(),
        "expected only the default devices and those in linux.devices in /dev, saw also \
         {unexpected:?}: the container has device nodes nobody gave it"
    );
    Ok(())
}
