//! Rootfs containment: the container's `/` is the bundle's rootfs, and nothing of the host's
//! filesystem is reachable from it, not even by the classic chroot escape.
//!
//! Each scenario plants a marker file with a random token in the run directory on the host
//! (outside every bundle), tells the probe its host path, and fails if the probe reads the token.

use std::path::Path;

use oci_spec::runtime::{Capability, Mount, MountBuilder, Spec};
use palisade_common::annotations;
use palisade_harness::driver::Defect;
use palisade_harness::hostfs::{Marker, parse_mountinfo, thread_mounts};
use palisade_harness::{
    ContainerSpec, Ctx, Failure, Outcome, Reply, Request, Requirement, Scenario, check, skip,
};
use palisade_probe::protocol::FileRead;

const PRIVILEGED: &[Requirement] = &[Requirement::Privileged];

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        area: "rootfs",
        name: "host_marker_unreachable",
        checks: "A host file outside the bundle cannot be read from inside by its host path, `..` walks, /proc/1/root or /proc/self/root.",
        control: "the run directory is bind-mounted into the container at its host path",
        means: "The container can read, and probably write, the host's files.",
        requires: PRIVILEGED,
        run: host_marker_unreachable,
    },
    Scenario {
        area: "rootfs",
        name: "writes_land_in_the_bundle",
        checks: "A file the container writes under `/` appears in the bundle's rootfs on the host.",
        control: "a tmpfs is mounted where the container writes, so the file never reaches the bundle",
        means: "The container's `/` is not the rootfs you gave it.",
        requires: PRIVILEGED,
        run: writes_land_in_the_bundle,
    },
    Scenario {
        area: "rootfs",
        name: "chroot_escape_stays_inside",
        checks: "With CAP_SYS_CHROOT, `mkdir x; chroot x; chdir(..)`×64; `chroot(.)`, inherited directory fds and /proc/<pid>/root all stay inside the rootfs.",
        control: "the runtime jails with chroot only (`--no-pivot`, bundled runtime: annotation) and leaks a host directory fd (`--preserve-fds`, as in CVE-2024-21626)",
        means: "A process in the container can climb out to the host's filesystem.",
        requires: PRIVILEGED,
        run: chroot_escape_stays_inside,
    },
    Scenario {
        area: "rootfs",
        name: "old_root_is_gone",
        checks: "Even after a chroot escape attempt, /proc/self/mountinfo inside lists no host mount point and nothing under the run directory.",
        control: "the run directory is bind-mounted into the container at its host path (a host mount left in reach)",
        means: "The host's mount tree is still reachable from inside.",
        requires: PRIVILEGED,
        run: old_root_is_gone,
    },
];

fn host_marker_unreachable(cx: &Ctx) -> Outcome {
    let marker = Marker::plant(&cx.run, "rootfs")?;
    let host = marker.host_path();
    let paths = vec![
        host.clone(),
        format!("/../../../../../..{host}"),
        format!("/tmp/../../..{host}"),
        format!("/proc/1/root{host}"),
        format!("/proc/self/root{host}"),
    ];
    let mut spec = cx.spec("rootfs-marker", &Request::ReadFiles { paths })?;
    if cx.under_control() {
        spec = spec.edit(|s| bind_host_dir(s, &cx.run.dir));
    }
    let Reply::Files { files } = cx.run_once(spec)? else {
        return Err(Failure::Broken("the probe did not report the files".into()));
    };
    check_marker_unseen(&files, &marker, "by path")
}

fn writes_land_in_the_bundle(cx: &Ctx) -> Outcome {
    let token = Marker::plant(&cx.run, "write")?.token.clone();
    let path = "/palisade-out/written";
    let mut spec = cx.spec(
        "rootfs-write",
        &Request::WriteFile {
            path: path.into(),
            contents: token.clone(),
        },
    )?;
    if cx.under_control() {
        spec = spec.edit(|s| add_mount(s, tmpfs_at("/palisade-out")));
    }
    let container = cx.create(spec)?;
    std::fs::create_dir_all(container.rootfs().join("palisade-out"))
        .map_err(|e| Failure::Broken(format!("making /palisade-out in the rootfs: {e}")))?;
    container.start()?;
    let reply = container.reply()?;
    check!(
        matches!(&reply, Reply::Syscall(o) if o.succeeded()),
        "expected the container to write {path}, saw {reply:?}"
    );
    container.wait_exit()?;
    let on_host = container.rootfs().join("palisade-out/written");
    let seen = std::fs::read_to_string(&on_host).ok();
    check!(
        seen.as_deref() == Some(token.as_str()),
        "expected {} on the host to hold what the container wrote to {path}, saw {seen:?}: the \
         container's `/` is not the bundle's rootfs",
        on_host.display()
    );
    container.delete()?;
    Ok(())
}

fn chroot_escape_stays_inside(cx: &Ctx) -> Outcome {
    let marker = Marker::plant(&cx.run, "escape")?;
    let request = Request::ChrootEscape {
        depth: 64,
        paths: vec![marker.host_path()],
    };
    let mut spec = cx
        .spec("rootfs-escape", &request)?
        .grant(&[Capability::SysChroot]);
    let variant;
    let cx = if cx.under_control() {
        // The bundled runtime has a bare-chroot mode for exactly this; for runtimes that only
        // offer --no-pivot (not escapable by the climb, see the README), a leaked host fd is added.
        spec = spec.edit(annotate_chroot_only);
        let with_leak = Defect {
            create_flags: vec!["--no-pivot".into()],
            leaked_dir: Some("/".into()),
        };
        let without_leak = Defect {
            leaked_dir: None,
            ..with_leak.clone()
        };
        variant = cx
            .with_defect(&with_leak, "nopivot")
            .or_else(|| cx.with_defect(&without_leak, "chroot"));
        match &variant {
            Some(variant) => variant,
            None => skip!("the runtime driver cannot apply the control's defect"),
        }
    } else {
        cx
    };
    let Reply::Escape(report) = cx.run_once(spec)? else {
        return Err(Failure::Broken(
            "the probe did not report the escape".into(),
        ));
    };
    check!(
        report.first_chroot.succeeded(),
        "expected chroot into a subdirectory to work with CAP_SYS_CHROOT granted, saw {:?}",
        report.first_chroot
    );
    check_marker_unseen(&report.files, &marker, "after the chroot escape")?;
    check!(
        report.root_entries.iter().any(|e| e == "palisade-probe"),
        "expected the escape to land back in the rootfs (it holds /palisade-probe), saw / = {:?}: \
         the container climbed out of its rootfs",
        report.root_entries
    );
    Ok(())
}

fn old_root_is_gone(cx: &Ctx) -> Outcome {
    let request = Request::ChrootEscape {
        depth: 64,
        paths: vec!["/proc/self/mountinfo".into()],
    };
    let mut spec = cx
        .spec("rootfs-old-root", &request)?
        .grant(&[Capability::SysChroot]);
    if cx.under_control() {
        spec = spec.edit(|s| bind_host_dir(s, &cx.run.dir));
    }
    let destinations = configured_mount_points(&spec);
    let Reply::Escape(report) = cx.run_once(spec)? else {
        return Err(Failure::Broken(
            "the probe did not report the escape".into(),
        ));
    };
    let Some(mountinfo) = report.files.last().and_then(|f| f.contents.clone()) else {
        return Err(Failure::Broken(format!(
            "the probe could not read /proc/self/mountinfo: {:?}",
            report.files.last()
        )));
    };
    let host_points: Vec<String> = thread_mounts()?
        .into_iter()
        .map(|m| m.mount_point)
        .collect();
    let run_dir = cx.run.dir.to_string_lossy().into_owned();
    let leaked: Vec<String> = parse_mountinfo(&mountinfo)
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|point| {
            let configured = point == "/"
                || destinations
                    .iter()
                    .any(|d| point == d || point.starts_with(&format!("{d}/")));
            point.starts_with(&run_dir) || (!configured && host_points.contains(point))
        })
        .collect();
    check!(
        leaked.is_empty(),
        "expected only the container's own mounts in its mountinfo, saw host mount points {leaked:?}: \
         the host's mount tree (the old root) is still reachable from the container"
    );
    Ok(())
}

/// Fails if any read returned the marker's token.
fn check_marker_unseen(files: &[FileRead], marker: &Marker, how: &str) -> Outcome {
    let seen: Vec<&str> = files
        .iter()
        .filter(|f| f.contents.as_deref() == Some(marker.token.as_str()))
        .map(|f| f.path.as_str())
        .collect();
    check!(
        seen.is_empty(),
        "expected the host file {} to be unreachable from inside ({how}), but the probe read its \
         token through {seen:?}: the container can read (and likely write) the host's filesystem",
        marker.path.display()
    );
    Ok(())
}

/// Mount destinations the config asks for, plus masked and read-only paths (also mounts).
fn configured_mount_points(spec: &ContainerSpec) -> Vec<String> {
    let mut points: Vec<String> = spec
        .spec
        .mounts()
        .iter()
        .flatten()
        .map(|m| m.destination().to_string_lossy().into_owned())
        .collect();
    if let Some(linux) = spec.spec.linux() {
        points.extend(linux.masked_paths().iter().flatten().cloned());
        points.extend(linux.readonly_paths().iter().flatten().cloned());
    }
    points
}

fn add_mount(spec: &mut Spec, mount: Mount) {
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.push(mount);
    spec.set_mounts(Some(mounts));
}

fn tmpfs_at(destination: &str) -> Mount {
    MountBuilder::default()
        .destination(destination)
        .typ("tmpfs")
        .source("tmpfs")
        .options(vec!["size=64k".to_owned()])
        .build()
        .unwrap_or_default()
}

/// The control's leak: the host directory `dir`, read-only, at its own host path inside.
fn bind_host_dir(spec: &mut Spec, dir: &Path) {
    let mount = MountBuilder::default()
        .destination(dir)
        .typ("bind")
        .source(dir)
        .options(vec!["rbind".to_owned(), "ro".to_owned()])
        .build()
        .unwrap_or_default();
    add_mount(spec, mount);
}

/// Asks the bundled runtime for its test-only modes: a bare chroot (other runtimes ignore both).
fn annotate_chroot_only(spec: &mut Spec) {
    let mut map = spec.annotations().clone().unwrap_or_default();
    map.insert(annotations::NO_PIVOT.to_owned(), "true".to_owned());
    map.insert(annotations::CHROOT_ONLY.to_owned(), "true".to_owned());
    spec.set_annotations(Some(map));
}
