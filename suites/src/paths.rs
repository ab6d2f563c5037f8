//! Read-only root, masked paths, read-only paths and a read-only `/sys`, as the config asks: each
//! checked on every path it names and everything beneath, from the container's own mount table
//! and by writes that are harmless even when they go through (they write back what they read).

use std::path::Path;

use oci_spec::runtime::Capability;
use palisade_common::mountinfo::{self, MountInfo};
use palisade_harness::lab::host::{CgroupMode, HostFacts};
use palisade_harness::run::control::{Control, Edit};
use palisade_harness::run::scenario::Schedule;
use palisade_harness::{
    ContainerSpec, Ctx, Failure, Outcome, Reply, Request, Requirement, Scenario, check, require,
};
use palisade_probe::protocol::{FileKind, PathStat, WriteBackOutcome};

const PRIVILEGED: &[Requirement] = &[Requirement::Privileged];

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        area: "paths",
        name: "readonly_root_refuses_writes",
        checks: "With `root.readonly: true`, writing a file under `/` fails with EROFS.",
        control: Control::config(Edit::RootReadonly(false)),
        means: "The container can modify an image you marked read-only.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: readonly_root_refuses_writes,
    },
    Scenario {
        area: "paths",
        name: "masked_paths_are_masked",
        checks: "Every maskedPath that exists on the host is masked inside: files are the null device (1:3) and read empty, directories are empty read-only tmpfs mounts; CAP_SYS_RAWIO is granted, so only the mask can stop a read.",
        control: Control::config(Edit::DropMaskedPath(DROPPED_MASK)),
        means: "The container can read kernel state the config hides (kernel memory, keys, timers, firmware).",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: masked_paths_are_masked,
    },
    Scenario {
        area: "paths",
        name: "readonly_paths_refuse_writes",
        checks: "Every readonlyPath that exists is mounted read-only with every mount beneath it, and writing back a value in /proc/sys/kernel, /proc/sys/net and /proc/sys/vm fails with EROFS.",
        control: Control::config(Edit::NarrowReadonlyPath {
            from: "/proc/sys",
            to: "/proc/sys/kernel",
        }),
        means: "The container can change kernel settings the config marks read-only.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: readonly_paths_refuse_writes,
    },
    Scenario {
        area: "paths",
        name: "sys_is_readonly",
        checks: "With /sys and /sys/fs/cgroup mounted `ro`, they and every mount beneath them are read-only in the container's mount table, and writes there (a new file, writing back an attribute) fail with EROFS.",
        control: Control::config(Edit::SysReadWrite),
        means: "The container can change kernel and cgroup settings through sysfs and the cgroup filesystem.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: sys_is_readonly,
    },
];

/// The masked path the control drops: one every Linux host has.
const DROPPED_MASK: &str = "/proc/timer_list";

/// Sysctls in three subtrees of /proc/sys, each owned by the container's own namespaces or
/// written back unchanged: harmless when the write goes through.
const SYSCTLS: &[&str] = &[
    "/proc/sys/kernel/hostname",
    "/proc/sys/net/ipv4/ip_forward",
    "/proc/sys/vm/swappiness",
];

fn syscall(reply: Reply) -> Result<Option<String>, Failure> {
    match reply {
        Reply::Syscall(outcome) => Ok(outcome.errno),
        other => Err(Failure::Broken(format!(
            "expected a syscall outcome, saw {other:?}"
        ))),
    }
}

fn readonly_root_refuses_writes(cx: &Ctx) -> Outcome {
    let request = Request::WriteFile {
        path: "/palisade-written".into(),
        contents: "x".into(),
    };
    let spec = cx.spec("paths-ro-root")?.one_shot(&request).edit(|s| {
        if let Some(root) = s.root_mut() {
            root.set_readonly(Some(true));
        }
    });
    let errno = syscall(cx.run_once(spec)?)?;
    check!(
        errno.as_deref() == Some("EROFS"),
        "expected writing /palisade-written on a read-only root to fail with EROFS, saw {errno:?}: \
         the container can modify its image"
    );
    Ok(())
}

/// The paths of a config list, as the scenario configured them.
fn listed(spec: &ContainerSpec, masked: bool) -> Vec<String> {
    let linux = spec.spec.linux().clone().unwrap_or_default();
    let list = if masked {
        linux.masked_paths().clone()
    } else {
        linux.readonly_paths().clone()
    };
    list.unwrap_or_default()
}

fn is_readonly(mount: &MountInfo) -> bool {
    mount.mount_options.contains_key("ro")
}

/// The mounts at or below `path` that are not read-only, including the one holding it.
fn writable_at_or_below(mounts: &[MountInfo], path: &Path) -> Vec<String> {
    let holding = mountinfo::holding(mounts, path);
    mounts
        .iter()
        .filter(|m| {
            m.mount_point.starts_with(path) || holding.is_some_and(|h| h.mnt_id == m.mnt_id)
        })
        .filter(|m| !is_readonly(m))
        .map(|m| format!("{} ({})", m.mount_point.display(), m.fs_type))
        .collect()
}

fn stats(reply: Reply) -> Result<Vec<PathStat>, Failure> {
    match reply {
        Reply::Stats { stats } => Ok(stats),
        other => Err(Failure::Broken(format!(
            "expected path stats, saw {other:?}"
        ))),
    }
}

fn masked_paths_are_masked(cx: &Ctx) -> Outcome {
    // CAP_SYS_RAWIO opens /proc/kcore: granted, so a path is hidden only by its mask.
    let spec = cx.spec("paths-masked")?.grant(&[Capability::SysRawio]);
    let present: Vec<String> = listed(&spec, true)
        .into_iter()
        .filter(|p| Path::new(p).exists())
        .collect();
    require!(
        present.iter().any(|p| p == DROPPED_MASK),
        "expected the host to have {DROPPED_MASK}, which the control unmasks"
    );
    let mut container = cx.launch(spec)?;
    let mounts = container.mountinfo()?;
    let seen = stats(container.ask(&Request::StatPaths {
        paths: present.clone(),
    })?)?;
    let Reply::Files { files } = container.ask(&Request::ReadFiles {
        paths: present.clone(),
    })?
    else {
        return Err(Failure::Broken("the probe did not report the files".into()));
    };

    for (stat, read) in seen.iter().zip(&files) {
        let path = Path::new(&stat.path);
        match stat.kind {
            Some(FileKind::Dir) => {
                let mount = mounts.iter().rev().find(|m| m.mount_point == path);
                check!(
                    mount.is_some_and(|m| m.fs_type == "tmpfs" && is_readonly(m)),
                    "expected the masked directory {} to be a read-only tmpfs mount inside, saw {:?}: \
                     the container can read what the config hides",
                    stat.path,
                    mount.map(|m| (&m.fs_type, &m.mount_options))
                );
                let Reply::Tree { entries } = container.ask(&Request::ListTree {
                    path: stat.path.clone(),
                    depth: 1,
                })?
                else {
                    return Err(Failure::Broken(format!(
                        "the probe did not list {}",
                        stat.path
                    )));
                };
                check!(
                    entries.is_empty(),
                    "expected the masked directory {} to be empty, it lists {:?}",
                    stat.path,
                    entries.iter().map(|e| &e.path).collect::<Vec<_>>()
                );
            }
            Some(_) => {
                check!(
                    stat.kind == Some(FileKind::Char) && stat.rdev == Some((1, 3)),
                    "expected the masked file {} to be the null device (c 1:3) inside, saw {:?} {:?}: \
                     the container reads the real file",
                    stat.path,
                    stat.kind,
                    stat.rdev
                );
                check!(
                    read.contents.as_deref().is_none_or(str::is_empty),
                    "expected the masked file {} to read empty, the container read {} bytes of it",
                    stat.path,
                    read.contents.as_deref().map_or(0, str::len)
                );
            }
            None => {
                return Err(Failure::Failed(format!(
                    "expected the masked path {} (it exists on the host) to be there, masked, \
                     inside; lstat said {:?}",
                    stat.path, stat.errno
                )));
            }
        }
    }
    Ok(())
}

/// What writing back each path did; paths the kernel does not have are left out.
fn written_back(reply: Reply) -> Result<Vec<WriteBackOutcome>, Failure> {
    let Reply::WrittenBack { writes } = reply else {
        return Err(Failure::Broken(format!(
            "expected write-back outcomes, saw {reply:?}"
        )));
    };
    let mut kept = Vec::new();
    for write in writes {
        match write.read.as_deref() {
            None => kept.push(write),
            Some("ENOENT") => {}
            Some(errno) => {
                return Err(Failure::Broken(format!(
                    "the probe could not read {} to write it back: {errno}",
                    write.path
                )));
            }
        }
    }
    Ok(kept)
}

fn readonly_paths_refuse_writes(cx: &Ctx) -> Outcome {
    let spec = cx.spec("paths-ro")?;
    let present: Vec<String> = listed(&spec, false)
        .into_iter()
        .filter(|p| Path::new(p).exists())
        .collect();
    let mut container = cx.launch(spec)?;
    let mounts = container.mountinfo()?;
    for path in &present {
        let writable = writable_at_or_below(&mounts, Path::new(path));
        check!(
            writable.is_empty(),
            "expected the read-only path {path} and every mount beneath it to be read-only inside, \
             these are writable: {writable:?}: the container can change what the config protects"
        );
    }
    let writes = written_back(container.ask(&Request::WriteBack {
        paths: SYSCTLS.iter().map(|p| (*p).to_owned()).collect(),
    })?)?;
    require!(
        !writes.is_empty(),
        "none of {SYSCTLS:?} exists inside: nothing to write back"
    );
    for write in writes {
        let errno = write.write.as_ref().and_then(|w| w.errno.clone());
        check!(
            errno.as_deref() == Some("EROFS"),
            "expected writing back {} to fail with EROFS, saw {errno:?}: the container can change \
             kernel settings the config marks read-only",
            write.path
        );
    }
    Ok(())
}

/// A cgroup file every container's cgroup has, on this host's layout.
fn cgroup_attribute(host: &HostFacts) -> &'static str {
    match host.cgroup_mode {
        CgroupMode::V2 => "/sys/fs/cgroup/cgroup.max.depth",
        _ => "/sys/fs/cgroup/pids/pids.max",
    }
}

fn sys_is_readonly(cx: &Ctx) -> Outcome {
    let mut container = cx.launch(cx.spec("paths-sys")?)?;
    let mounts = container.mountinfo()?;
    let writable = writable_at_or_below(&mounts, Path::new("/sys"));
    check!(
        writable.is_empty(),
        "expected /sys and every mount beneath it (the config mounts sysfs and the cgroup fs `ro`) \
         to be read-only inside, these are writable: {writable:?}"
    );
    // A new file in the cgroup mount (the container's own tmpfs or cgroup), and attributes written
    // back unchanged: the container's own loopback, and its own cgroup.
    let created = syscall(container.ask(&Request::WriteFile {
        path: "/sys/fs/cgroup/palisade-write".into(),
        contents: String::new(),
    })?)?;
    check!(
        created.as_deref() == Some("EROFS"),
        "expected creating /sys/fs/cgroup/palisade-write to fail with EROFS, saw {created:?}"
    );
    let attributes = vec![
        "/sys/class/net/lo/mtu".to_owned(),
        cgroup_attribute(cx.host()).to_owned(),
    ];
    let writes = written_back(container.ask(&Request::WriteBack { paths: attributes })?)?;
    for write in writes {
        let errno = write.write.as_ref().and_then(|w| w.errno.clone());
        check!(
            errno.as_deref() == Some("EROFS"),
            "expected writing back {} to fail with EROFS, saw {errno:?}",
            write.path
        );
    }
    Ok(())
}
