//! Mount isolation: mounts made inside stay inside, mounts made on the host stay outside.
//!
//! Each scenario gives its thread a mount namespace that plays the host
//! ([`Ctx::isolate_host_mounts`]): it receives the real host's mounts but sends none back, so a
//! negative control that lets mounts propagate never touches the real host's mount table.

use std::path::Path;

use oci_spec::runtime::Capability;
use oci_spec::runtime::MountBuilder;
use palisade_common::mountinfo::MountInfo;
use palisade_harness::lab::hostfs::{
    UnmountTagged, mount_points_of, mount_tmpfs, shared_volume, thread_mounts,
};
use palisade_harness::run::control::{Control, Edit};
use palisade_harness::run::scenario::Schedule;
use palisade_harness::{
    ContainerSpec, Ctx, Failure, Outcome, Reply, Request, Requirement, Scenario, check, require,
};

const PRIVILEGED: &[Requirement] = &[Requirement::Privileged];

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        area: "mounts",
        name: "only_configured_mounts",
        checks: "The container's mount table holds exactly the rootfs, the config's mounts (each from its configured source or of its configured type), and what the spec says a runtime adds: default device binds, masked and read-only path mounts, cgroup submounts; every configured mount is there.",
        control: Control::config(Edit::ExtraBind {
            source: "/usr",
            destination: "/mnt/palisade-host",
        }),
        means: "The runtime exposes host directories nobody asked for, or drops mounts the config relies on.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: only_configured_mounts,
    },
    Scenario {
        area: "mounts",
        name: "recursive_readonly_volume",
        checks: "A volume bound `rbind,rro` refuses writes (EROFS) at its top and in a submount it carries from the host.",
        control: Control::config(Edit::MountOption {
            destination: RRO_VOLUME,
            from: "rro",
            to: "ro",
        }),
        means: "A volume you mounted read-only can be written through its submounts.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: recursive_readonly_volume,
    },
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

/// Devices a runtime may bind-mount from the host into /dev (the spec's default devices).
const DEFAULT_DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// `major:minor` of the filesystem holding `path` on the host, as mountinfo writes it.
fn device_of(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path).ok()?.dev();
    Some(format!(
        "{}:{}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    ))
}

/// Whether `mount` (inside) is `source` (on the host) bound: the same filesystem, and a root
/// within it that the host path ends with.
fn is_bind_of(mount: &MountInfo, source: &Path) -> bool {
    device_of(source).is_some_and(|dev| dev == mount.majmin)
        && source.ends_with(mount.root.trim_start_matches('/'))
}

/// What explains a mount the container has, or `None` if nothing the config says does.
fn explain(
    mount: &MountInfo,
    spec: &ContainerSpec,
    rootfs: &Path,
    host: &[MountInfo],
    inside: &[MountInfo],
) -> Option<String> {
    let point = mount.mount_point.as_path();
    if point == Path::new("/") {
        return is_bind_of(mount, rootfs).then(|| "the rootfs".to_owned());
    }
    for configured in spec.spec.mounts().iter().flatten() {
        let destination = configured.destination().as_path();
        let options = configured.options().clone().unwrap_or_default();
        let bind = configured.typ().as_deref() == Some("bind")
            || options.iter().any(|o| o == "bind" || o == "rbind");
        let typ = configured.typ().clone().unwrap_or_default();
        if point == destination {
            let matches = if bind {
                configured
                    .source()
                    .as_deref()
                    .is_some_and(|source| is_bind_of(mount, source))
            } else if typ == "cgroup" {
                matches!(mount.fs_type.as_str(), "cgroup2" | "tmpfs")
            } else {
                mount.fs_type == typ
            };
            if matches {
                return Some(format!("the config's {typ} mount"));
            }
        } else if point.starts_with(destination) {
            if typ == "cgroup" && matches!(mount.fs_type.as_str(), "cgroup" | "cgroup2") {
                return Some("a cgroup hierarchy under the config's cgroup mount".into());
            }
            if bind && options.iter().any(|o| o == "rbind") {
                let below = configured
                    .source()
                    .as_deref()
                    .and_then(|source| Some(source.join(point.strip_prefix(destination).ok()?)));
                if below.is_some_and(|b| host.iter().any(|h| h.mount_point == b)) {
                    return Some("a host mount under the config's rbind".into());
                }
            }
        }
    }
    let linux = spec.spec.linux().clone().unwrap_or_default();
    let null_bind = mount.root.ends_with("/null");
    if linux
        .masked_paths()
        .iter()
        .flatten()
        .any(|p| Path::new(p) == point)
        && (null_bind || (mount.fs_type == "tmpfs" && mount.mount_options.contains_key("ro")))
    {
        return Some("a masked path".into());
    }
    if linux
        .readonly_paths()
        .iter()
        .flatten()
        .any(|p| Path::new(p) == point)
    {
        let parent = point.parent().unwrap_or(Path::new("/"));
        let same_fs = palisade_common::mountinfo::holding(
            &inside
                .iter()
                .filter(|m| m.mount_point != point)
                .cloned()
                .collect::<Vec<_>>(),
            parent,
        )
        .is_some_and(|holder| holder.fs_type == mount.fs_type);
        if same_fs && mount.mount_options.contains_key("ro") {
            return Some("a read-only path".into());
        }
    }
    let device = point
        .strip_prefix("/dev")
        .ok()
        .and_then(|name| name.to_str())
        .filter(|name| DEFAULT_DEVICES.contains(name));
    if device.is_some_and(|name| mount.root == format!("/{name}")) {
        return Some("a default device".into());
    }
    None
}

fn only_configured_mounts(cx: &Ctx) -> Outcome {
    let spec = cx.spec("mounts-only")?;
    let mut container = cx.launch(spec.clone())?;
    let inside = container.mountinfo()?;
    let host = thread_mounts()?;
    let rootfs = container.rootfs()?.to_owned();

    let unexpected: Vec<String> = inside
        .iter()
        .filter(|m| explain(m, &spec, &rootfs, &host, &inside).is_none())
        .map(|m| {
            format!(
                "{} ({} from {}, root {})",
                m.mount_point.display(),
                m.fs_type,
                m.mount_source.as_deref().unwrap_or("?"),
                m.root
            )
        })
        .collect();
    check!(
        unexpected.is_empty(),
        "expected only the rootfs, the configured mounts and the spec's defaults inside, saw mounts \
         nobody configured: {unexpected:?}: the runtime exposes more of the host than asked"
    );
    let missing: Vec<String> = spec
        .spec
        .mounts()
        .iter()
        .flatten()
        .map(|m| m.destination().clone())
        .filter(|d| !inside.iter().any(|m| &m.mount_point == d))
        .map(|d| d.display().to_string())
        .collect();
    check!(
        missing.is_empty(),
        "expected every configured mount inside, these are missing: {missing:?}"
    );
    Ok(())
}

/// Where the recursive read-only volume appears inside.
const RRO_VOLUME: &str = "/palisade-rro";

fn recursive_readonly_volume(cx: &Ctx) -> Outcome {
    cx.isolate_host_mounts()?;
    // The host's volume: a directory with a tmpfs submount, in this thread's mount namespace.
    let volume = cx.run.dir.join(cx.run.name("rro-volume"));
    std::fs::create_dir_all(&volume)
        .map_err(|e| Failure::Broken(format!("making {}: {e}", volume.display())))?;
    let tag = cx.run.name("rro-sub");
    let _sub = mount_tmpfs(&volume.join("sub"), &tag)?;
    let bind = MountBuilder::default()
        .destination(RRO_VOLUME)
        .typ("bind")
        .source(&volume)
        .options(vec!["rbind".to_owned(), "rro".to_owned()])
        .build()
        .map_err(|e| Failure::Broken(format!("building the volume's bind mount: {e}")))?;
    let mut container = cx.launch(cx.spec("mounts-rro")?.mount(bind))?;
    for path in [
        format!("{RRO_VOLUME}/written"),
        format!("{RRO_VOLUME}/sub/written"),
    ] {
        let reply = container.ask(&Request::WriteFile {
            path: path.clone(),
            contents: "x".into(),
        })?;
        let Reply::Syscall(outcome) = reply else {
            return Err(Failure::Broken(format!(
                "expected a write outcome, saw {reply:?}"
            )));
        };
        check!(
            outcome.errno.as_deref() == Some("EROFS"),
            "expected writing {path} in an `rro` volume to fail with EROFS, saw {outcome:?}: the \
             volume is not read-only all the way down"
        );
    }
    Ok(())
}

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
    use palisade_common::mountinfo::{is_shared, is_slave};
    let mounts =
        palisade_common::mountinfo::read(&host_pid.to_string()).map_err(Failure::Broken)?;
    let root = mounts
        .into_iter()
        .find(|m| m.mount_point == std::path::Path::new("/"))
        .ok_or_else(|| Failure::Broken(format!("/proc/{host_pid}/mountinfo lists no `/`")))?;
    Ok(match (is_shared(&root), is_slave(&root)) {
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
    let seen = root_propagation(container.host_pid()?)?;
    check!(
        configured.trim_start_matches('r') == seen,
        "expected the container's `/` to be {configured} as `rootfsPropagation` says, its mountinfo \
         shows it {seen}: the runtime does not apply the propagation it was given"
    );
    // Mounted on the host side after the container is running, inside its rootfs directory.
    let _host_mount = mount_tmpfs(&container.rootfs()?.join("palisade-outer"), &tag)?;
    let inside = container.mountinfo()?;
    let leaked = mount_points_of(&inside, &tag);
    check!(
        leaked.is_empty(),
        "expected the host's later tmpfs `{tag}` to stay invisible inside, saw it at {leaked:?}: \
         the host's mounts propagate into the container"
    );
    Ok(())
}
