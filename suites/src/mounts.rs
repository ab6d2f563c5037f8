//! Mount isolation: mounts made inside stay inside, mounts made on the host stay outside.
//!
//! Each scenario gives its thread a mount namespace that plays the host
//! ([`Ctx::isolate_host_mounts`]): it receives the real host's mounts but sends none back, so a
//! negative control that lets mounts propagate never touches the real host's mount table.

use oci_spec::runtime::Capability;
use oci_spec::runtime::MountBuilder;
use palisade_harness::lab::hostfs::{
    UnmountTagged, mount_points_of, mount_tmpfs, parse, shared_volume, thread_mounts,
};
use palisade_harness::run::control::{Control, Edit};
use palisade_harness::run::scenario::Schedule;
use palisade_harness::{
    Ctx, Failure, Outcome, Reply, Request, Requirement, Scenario, check, require,
};

const PRIVILEGED: &[Requirement] = &[Requirement::Privileged];

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        area: "mounts",
        name: "container_mount_stays_inside",
        checks: "A tmpfs the container mounts (CAP_SYS_ADMIN granted) inside a volume bound from the host does not appear in the host's mount table.",
        control: Control::config(Edit::Bidirectional(VOLUME)),
        means: "Mounts made in the container change what the host sees.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: container_mount_stays_inside,
    },
    Scenario {
        area: "mounts",
        name: "host_mount_stays_outside",
        checks: "With `rootfsPropagation: private`, the container's `/` is private (no `shared:` or `master:` tag) and a tmpfs the host mounts inside the bundle's rootfs after the container started does not appear inside.",
        control: Control::config(Edit::RootfsPropagation("slave")),
        means: "Host mounts, secrets included, flow into the container.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: host_mount_stays_outside,
    },
];

/// Where the host's volume appears inside the container.
const VOLUME: &str = "/palisade-volume";

fn container_mount_stays_inside(cx: &Ctx) -> Outcome {
    cx.isolate_host_mounts()?;
    // A volume from the host: a shared tmpfs on the host side, bound into the container.
    let volume_tag = cx.run.name("volume");
    let volume = cx.run.dir.join(&volume_tag);
    let _volume = shared_volume(&volume, &volume_tag)?;
    let bind = MountBuilder::default()
        .destination(VOLUME)
        .typ("bind")
        .source(&volume)
        .options(vec!["rbind".to_owned()])
        .build()
        .map_err(|e| Failure::Broken(format!("building the volume's bind mount: {e}")))?;
    let spec = cx
        .spec("mounts-inner")?
        .grant(&[Capability::SysAdmin])
        .mount(bind);

    let tag = cx.run.name("inner-tmpfs");
    let mut container = cx.launch(spec)?;
    // Dropped before the container: whatever propagated out is unmounted before its bundle goes.
    let _unmount = UnmountTagged::new(&tag);
    let mounted = container.ask(&Request::MountTmpfs {
        target: format!("{VOLUME}/inner"),
        source: tag.clone(),
    })?;
    require!(
        matches!(&mounted, Reply::Syscall(o) if o.succeeded()),
        "expected the container to mount a tmpfs with CAP_SYS_ADMIN granted, saw {mounted:?}"
    );
    // Propagation happens inside mount(2), which returned before the probe answered.
    let leaked = mount_points_of(&thread_mounts()?, &tag);
    check!(
        leaked.is_empty(),
        "expected the container's tmpfs `{tag}` to stay out of the host's mount table, saw it at \
         {leaked:?}: mounts made in the container change the host's filesystem view"
    );
    Ok(())
}

/// The propagation of the container's root mount, as its own mountinfo (read from the host)
/// shows it: `shared`, `slave` or `private`.
fn root_propagation(host_pid: i32) -> Result<&'static str, Failure> {
    use procfs::process::MountOptFields;
    let mounts = procfs::process::Process::new(host_pid)
        .and_then(|p| p.mountinfo())
        .map_err(|e| Failure::Broken(format!("reading /proc/{host_pid}/mountinfo: {e}")))?;
    let root = mounts
        .into_iter()
        .find(|m| m.mount_point == std::path::Path::new("/"))
        .ok_or_else(|| Failure::Broken(format!("/proc/{host_pid}/mountinfo lists no `/`")))?;
    let shared = root
        .opt_fields
        .iter()
        .any(|f| matches!(f, MountOptFields::Shared(_)));
    let slave = root
        .opt_fields
        .iter()
        .any(|f| matches!(f, MountOptFields::Master(_)));
    Ok(match (shared, slave) {
        (true, _) => "shared",
        (false, true) => "slave",
        (false, false) => "private",
    })
}

fn host_mount_stays_outside(cx: &Ctx) -> Outcome {
    cx.isolate_host_mounts()?;
    let tag = cx.run.name("outer-tmpfs");
    let mut container = cx.launch(cx.spec("mounts-outer")?.rootfs_propagation("private"))?;
    container.ask(&Request::Facts)?;
    let configured = container
        .spec()
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().clone())
        .unwrap_or_default();
    let seen = root_propagation(container.host_pid())?;
    check!(
        configured.trim_start_matches('r') == seen,
        "expected the container's `/` to be {configured} as `rootfsPropagation` says, its mountinfo \
         shows it {seen}: the runtime does not apply the propagation it was given"
    );
    // Mounted on the host side after the container is running, inside its rootfs directory.
    let _host_mount = mount_tmpfs(&container.rootfs()?.join("palisade-outer"), &tag)?;
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
        .ok_or_else(|| {
            Failure::Broken(format!("the probe could not read its mountinfo: {files:?}"))
        })?;
    let inside = parse(&mountinfo)
        .map_err(|e| Failure::Broken(format!("the container's /proc/self/mountinfo: {e}")))?;
    let leaked = mount_points_of(&inside, &tag);
    check!(
        leaked.is_empty(),
        "expected the host's later tmpfs `{tag}` to stay invisible inside, saw it at {leaked:?}: \
         the host's mounts propagate into the container"
    );
    Ok(())
}
