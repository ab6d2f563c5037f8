//! Mount isolation: mounts made inside stay inside, mounts made on the host stay outside.
//!
//! Each scenario gives its thread a mount namespace that plays the host
//! ([`Ctx::isolate_host_mounts`]): it receives the real host's mounts but sends none back, so a
//! negative control that lets mounts propagate never touches the real host's mount table.

use oci_spec::runtime::Capability;
use oci_spec::runtime::MountBuilder;
use palisade_harness::hostfs::{
    UnmountTagged, mount_points_of, mount_tmpfs, parse_mountinfo, shared_volume, thread_mounts,
};
use palisade_harness::{
    ContainerSpec, Ctx, Failure, Outcome, Reply, Request, Requirement, Scenario, check, skip,
};

const PRIVILEGED: &[Requirement] = &[Requirement::Privileged];

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        area: "mounts",
        name: "container_mount_stays_inside",
        checks: "A tmpfs the container mounts (CAP_SYS_ADMIN granted) inside a volume bound from the host does not appear in the host's mount table.",
        control: "`rootfsPropagation: shared` and the volume bound `rshared` (mounts propagate back to the host)",
        means: "Mounts made in the container change what the host sees.",
        requires: PRIVILEGED,
        run: container_mount_stays_inside,
    },
    Scenario {
        area: "mounts",
        name: "host_mount_stays_outside",
        checks: "With `rootfsPropagation: private`, a tmpfs the host mounts inside the bundle's rootfs after the container started does not appear inside.",
        control: "`linux.rootfsPropagation: slave` (host mounts propagate into the container)",
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
    // A volume from the host: a shared tmpfs on the host side, bound into the container.
    let volume_tag = cx.run.name("volume");
    let volume = cx.run.dir.join(&volume_tag);
    let _volume = shared_volume(&volume, &volume_tag)?;
    let mut bind_options = vec!["rbind".to_owned()];
    let mut spec = cx
        .spec("mounts-inner", &Request::Facts)?
        .grant(&[Capability::SysAdmin])
        .serve();
    if cx.under_control() {
        // What Kubernetes' Bidirectional propagation asks for.
        bind_options.push("rshared".to_owned());
        spec = propagation(spec, "shared");
    }
    let bind = MountBuilder::default()
        .destination("/palisade-volume")
        .typ("bind")
        .source(&volume)
        .options(bind_options)
        .build()
        .map_err(|e| Failure::Broken(format!("building the volume's bind mount: {e}")))?;
    spec = spec.edit(|s| s.mounts_mut().get_or_insert_with(Vec::new).push(bind));

    let tag = cx.run.name("inner-tmpfs");
    let mut container = cx.launch(spec)?;
    // Dropped before the container: whatever propagated out is unmounted before its bundle goes.
    let _unmount = UnmountTagged::new(&tag);
    let mounted = container.ask(&Request::MountTmpfs {
        target: "/palisade-volume/inner".into(),
        source: tag.clone(),
    })?;
    check!(
        matches!(&mounted, Reply::Syscall(o) if o.succeeded()),
        "expected the container to mount a tmpfs with CAP_SYS_ADMIN granted, saw {mounted:?}"
    );
    // Propagation happens inside mount(2), which returned before the probe answered.
    let leaked = mount_points_of(thread_mounts()?, &tag);
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
            "slave"
        } else {
            "private"
        },
    );
    let mut container = cx.launch(spec)?;
    container.ask(&Request::Facts)?;
    if cx.under_control() && !receives_host_mounts(container.host_pid()) {
        skip!(
            "the runtime does not apply `rootfsPropagation: slave` to the rootfs (no `master:` tag), so the control cannot be set up"
        );
    }
    // Mounted on the host side after the container is running, inside its rootfs directory.
    let _host_mount = mount_tmpfs(&container.rootfs().join("palisade-outer"), &tag)?;
    let Reply::Files { files } = container.ask(&Request::ReadFiles {
        paths: vec!["/proc/self/mountinfo".into()],
    })?
    else {
        return Err(Failure::Broken(
            "the probe did not report its mountinfo".into(),
        ));
    };
    let mountinfo = files
        .first()
        .and_then(|f| f.contents.clone())
        .unwrap_or_default();
    let leaked = mount_points_of(parse_mountinfo(&mountinfo), &tag);
    check!(
        leaked.is_empty(),
        "expected the host's later tmpfs `{tag}` to stay invisible inside, saw it at {leaked:?}: \
         the host's mounts propagate into the container"
    );
    Ok(())
}
