//! Mount isolation: mounts made inside stay inside, mounts made on the host stay outside.
//!
//! Each scenario gives its thread a mount namespace that plays the host
//! ([`Ctx::isolate_host_mounts`]): it receives the real host's mounts but sends none back, so a
//! negative control that lets mounts propagate never touches the real host's mount table.

use oci_spec::runtime::Capability;
use palisade_harness::hostfs::{UnmountTagged, mount_tmpfs, parse_mountinfo, thread_mounts};
use palisade_harness::{
    ContainerSpec, Ctx, Failure, Outcome, Reply, Request, Requirement, Scenario, check, skip,
};

const PRIVILEGED: &[Requirement] = &[Requirement::Privileged];

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        area: "mounts",
        name: "container_mount_stays_inside",
        checks: "A tmpfs the container mounts (CAP_SYS_ADMIN granted) does not appear in the host's mount table.",
        control: "`linux.rootfsPropagation: shared` (the container's mounts propagate to the host)",
        means: "Mounts made in the container change what the host sees.",
        requires: PRIVILEGED,
        run: container_mount_stays_inside,
    },
    Scenario {
        area: "mounts",
        name: "host_mount_stays_outside",
        checks: "With `rootfsPropagation: private`, a tmpfs the host mounts inside the bundle's rootfs after the container started does not appear inside.",
        control: "`linux.rootfsPropagation: rslave` (host mounts propagate into the container)",
        means: "Host mounts, secrets included, flow into the container.",
        requires: PRIVILEGED,
        run: host_mount_stays_outside,
    },
];

fn propagation(spec: ContainerSpec, mode: &str) -> ContainerSpec {
    spec.edit(|s| {
        if let Some(linux) = s.linux_mut() {
            linux.set_rootfs_propagation(Some(mode.to_owned()));
        }
    })
}

fn container_mount_stays_inside(cx: &Ctx) -> Outcome {
    cx.isolate_host_mounts()?;
    let tag = cx.run.name("inner-tmpfs");
    let mut spec = cx
        .spec("mounts-inner", &Request::Facts)?
        .grant(&[Capability::SysAdmin])
        .serve();
    if cx.under_control() {
        spec = propagation(spec, "shared");
    }
    let mut container = cx.launch(spec)?;
    // Dropped before the container: whatever propagated out is unmounted before its bundle goes.
    let _unmount = UnmountTagged::new(&tag);
    if cx.under_control() && !shares_peer_group_with_host(&container) {
        skip!(
            "the runtime does not put the rootfs in the host's peer group under `rootfsPropagation: shared`, so the control cannot be set up"
        );
    }
    let mounted = container.ask(&Request::MountTmpfs {
        target: "/palisade-inner".into(),
        source: tag.clone(),
    })?;
    check!(
        matches!(&mounted, Reply::Syscall(o) if o.succeeded()),
        "expected the container to mount a tmpfs with CAP_SYS_ADMIN granted, saw {mounted:?}"
    );
    // Propagation happens inside mount(2), which returned before the probe answered.
    let leaked: Vec<String> = thread_mounts()?
        .into_iter()
        .filter(|m| m.source == tag)
        .map(|m| m.mount_point)
        .collect();
    check!(
        leaked.is_empty(),
        "expected the container's tmpfs `{tag}` to stay out of the host's mount table, saw it at \
         {leaked:?}: mounts made in the container change the host's filesystem view"
    );
    Ok(())
}

/// The mountinfo line of the container's root mount, as the host sees it.
fn root_tag(host_pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{host_pid}/mountinfo"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.split_whitespace().nth(4) == Some("/"))
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

/// The `shared:N` peer group in a mountinfo line, if any.
fn peer_group(line: &str) -> Option<String> {
    line.split(" - ")
        .next()?
        .split_whitespace()
        .find(|f| f.starts_with("shared:"))
        .map(str::to_owned)
}

/// Whether the container's root mount is a peer of the host-side mount holding its bundle, so
/// mounts made inside propagate out.
fn shares_peer_group_with_host(container: &palisade_harness::Container) -> bool {
    let rootfs = container.rootfs().to_string_lossy().into_owned();
    let host = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap_or_default();
    let holder = host
        .lines()
        .filter_map(|l| Some((l.split_whitespace().nth(4)?.to_owned(), l)))
        .filter(|(point, _)| rootfs.starts_with(point.as_str()))
        .max_by_key(|(point, _)| point.len())
        .and_then(|(_, line)| peer_group(line));
    holder.is_some() && holder == peer_group(&root_tag(container.host_pid()))
}

/// Whether the container's root mount is a slave of a host peer group (`master:N`).
fn receives_host_mounts(host_pid: i32) -> bool {
    root_tag(host_pid).contains(" master:")
}

fn host_mount_stays_outside(cx: &Ctx) -> Outcome {
    cx.isolate_host_mounts()?;
    let tag = cx.run.name("outer-tmpfs");
    let spec = cx.spec("mounts-outer", &Request::Facts)?.serve();
    let spec = propagation(
        spec,
        if cx.under_control() {
            "rslave"
        } else {
            "private"
        },
    );
    let mut container = cx.launch(spec)?;
    container.ask(&Request::Facts)?;
    if cx.under_control() && !receives_host_mounts(container.host_pid()) {
        skip!(
            "the runtime does not apply `rootfsPropagation: rslave` to the rootfs (no `master:` tag), so the control cannot be set up"
        );
    }
    // Mounted on the host side after the container is running, inside its rootfs directory.
    let _host_mount = mount_tmpfs(&container.rootfs().join("palisade-outer"), &tag)?;
    let Reply::Files { files } = container.ask(&Request::ReadFiles {
        paths: vec!["/proc/self/mountinfo".into()],
    })?
    else {
        return Err(Failure::Failed(
            "the probe did not report its mountinfo".into(),
        ));
    };
    let mountinfo = files
        .first()
        .and_then(|f| f.contents.clone())
        .unwrap_or_default();
    let leaked: Vec<String> = parse_mountinfo(&mountinfo)
        .into_iter()
        .filter(|m| m.source == tag)
        .map(|m| m.mount_point)
        .collect();
    check!(
        leaked.is_empty(),
        "expected the host's later tmpfs `{tag}` to stay invisible inside, saw it at {leaked:?}: \
         the host's mounts propagate into the container"
    );
    Ok(())
}
