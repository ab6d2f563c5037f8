//! Rootfs containment: the container's `/` is the bundle's rootfs, and nothing of the host's
//! filesystem is reachable from it, not even by the classic chroot escape.
//!
//! Each scenario plants a marker file with a random token in the run directory on the host
//! (outside every bundle), tells the probe its host path, and fails if the probe reads the token.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Capability;
use palisade_harness::lab::hostfs::{Marker, parse, thread_mounts};
use palisade_harness::run::control::{Control, Defect, Edit, HostPath};
use palisade_harness::run::scenario::Schedule;
use palisade_harness::{
    ContainerSpec, Ctx, Failure, Outcome, Reply, Request, Requirement, Scenario, check, require,
};
use palisade_probe::protocol::FileRead;

const PRIVILEGED: &[Requirement] = &[Requirement::Privileged];

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        area: "rootfs",
        name: "host_marker_unreachable",
        checks: "A host file outside the bundle cannot be read from inside by its host path, `..` walks, /proc/1/root or /proc/self/root.",
        control: Control::config(Edit::BindHost(HostPath::RunDir)),
        means: "The container can read, and probably write, the host's files.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: host_marker_unreachable,
    },
    Scenario {
        area: "rootfs",
        name: "writes_land_in_the_bundle",
        checks: "A file the container writes under `/` appears in the bundle's rootfs on the host (under an engine: in the container's own writable layer).",
        control: Control::config(Edit::Tmpfs("/palisade-out")),
        means: "The container's `/` is not the rootfs you gave it.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: writes_land_in_the_bundle,
    },
    Scenario {
        area: "rootfs",
        name: "chroot_escape_stays_inside",
        checks: "With CAP_SYS_CHROOT, `mkdir x; chroot x; chdir(..)`×64; `chroot(.)`, inherited directory fds and /proc/<pid>/root all stay inside the rootfs.",
        control: Control::Defect(Defect::EscapableJail),
        means: "A process in the container can climb out to the host's filesystem.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: chroot_escape_stays_inside,
    },
    Scenario {
        area: "rootfs",
        name: "old_root_is_gone",
        checks: "Even after a chroot escape attempt, /proc/self/mountinfo inside lists no host mount point and nothing under the run directory.",
        control: Control::config(Edit::BindHost(HostPath::RunDir)),
        means: "The host's mount tree is still reachable from inside.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
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
    let spec = cx
        .spec("rootfs-marker")?
        .one_shot(&Request::ReadFiles { paths });
    let Reply::Files { files } = cx.run_once(spec)? else {
        return Err(Failure::Broken("the probe did not report the files".into()));
    };
    check_marker_unseen(&files, &marker, "by path")
}

fn writes_land_in_the_bundle(cx: &Ctx) -> Outcome {
    let token = Marker::plant(&cx.run, "write")?.token.clone();
    let path = "/palisade-out/written";
    let spec = cx.spec("rootfs-write")?.one_shot(&Request::WriteFile {
        path: path.into(),
        contents: token.clone(),
    });
    let container = cx.create(spec)?;
    std::fs::create_dir_all(container.write_layer()?.join("palisade-out"))
        .map_err(|e| Failure::Broken(format!("making /palisade-out in the rootfs: {e}")))?;
    container.start()?;
    let reply = container.reply()?;
    require!(
        matches!(&reply, Reply::Syscall(o) if o.succeeded()),
        "expected the container to write {path}, saw {reply:?}"
    );
    container.wait_exit()?;
    let on_host = container.write_layer()?.join("palisade-out/written");
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
    let spec = cx
        .spec("rootfs-escape")?
        .grant(&[Capability::SysChroot])
        .one_shot(&request);
    let Reply::Escape(report) = cx.run_once(spec)? else {
        return Err(Failure::Broken(
            "the probe did not report the escape".into(),
        ));
    };
    require!(
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
    let spec = cx
        .spec("rootfs-old-root")?
        .grant(&[Capability::SysChroot])
        .one_shot(&request);
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
    let host_points: Vec<PathBuf> = thread_mounts()?
        .into_iter()
        .map(|m| m.mount_point)
        .collect();
    let inside = parse(&mountinfo)
        .map_err(|e| Failure::Broken(format!("the container's /proc/self/mountinfo: {e}")))?;
    let leaked: Vec<PathBuf> = inside
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|point| {
            let configured =
                point == Path::new("/") || destinations.iter().any(|d| point.starts_with(d));
            point.starts_with(&cx.run.dir) || (!configured && host_points.contains(point))
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
fn configured_mount_points(spec: &ContainerSpec) -> Vec<PathBuf> {
    let mut points: Vec<PathBuf> = spec
        .spec
        .mounts()
        .iter()
        .flatten()
        .map(|m| m.destination().clone())
        .collect();
    if let Some(linux) = spec.spec.linux() {
        points.extend(linux.masked_paths().iter().flatten().map(PathBuf::from));
        points.extend(linux.readonly_paths().iter().flatten().map(PathBuf::from));
    }
    points
}
