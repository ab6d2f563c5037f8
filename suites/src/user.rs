//! User namespaces: root in the container is an unprivileged user on the host.
//!
//! Every container here maps its root to host uid/gid 100000 (65536 ids). What it may try under
//! the negative control (no user namespace: real root) is harmless: it writes a Palisade-owned
//! temp file, writes back a sysctl's own value, and mounts only in its own mount namespace.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Capability, LinuxNamespaceType::User, MountBuilder};
use palisade_harness::run::control::{Control, Edit};
use palisade_harness::run::scenario::{Schedule, expect_facts};
use palisade_harness::{
    ContainerSpec, Ctx, Failure, Outcome, Reply, Request, Requirement, Scenario, check, require,
};

const NEEDS: &[Requirement] = &[Requirement::Privileged, Requirement::Namespace("user")];

/// The host uid and gid the container's root maps to, and how many ids are mapped.
const MAPPED_ROOT: u32 = 100_000;
const MAPPED_IDS: u32 = 65_536;

const NO_USER_NAMESPACE: Control = Control::config(Edit::WithoutNamespace(User));

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        area: "user",
        name: "root_inside_is_unprivileged_outside",
        checks: "With uid/gid 0 mapped to 100000 (65536 ids), the process is uid 0 inside, /proc/self/uid_map reads `0 100000 65536`, and a file it creates in the rootfs is owned by 100000 on the host.",
        control: NO_USER_NAMESPACE,
        means: "Root in the container is root on the host: any escape hands over the machine.",
        requires: NEEDS,
        schedule: Schedule::Parallel,
        run: root_inside_is_unprivileged_outside,
    },
    Scenario {
        area: "user",
        name: "capabilities_stop_at_the_namespace",
        checks: "Holding every capability inside its user namespace, the container still cannot write a root-owned host file bound into it read-write (EACCES), write a host-owned sysctl (vm.swappiness, its own value back), or mount a filesystem the kernel keeps out of user namespaces (debugfs).",
        control: NO_USER_NAMESPACE,
        means: "The container's capabilities reach the host's resources: a container granted many capabilities is a privileged one.",
        requires: NEEDS,
        schedule: Schedule::Parallel,
        run: capabilities_stop_at_the_namespace,
    },
    Scenario {
        area: "user",
        name: "unmapped_ids_show_as_overflow",
        checks: "A host file owned by host root (not mapped into the container) shows inside as owned by the overflow ids (65534).",
        control: NO_USER_NAMESPACE,
        means: "Host ids are visible, and usable, inside the container as if they were its own.",
        requires: NEEDS,
        schedule: Schedule::Parallel,
        run: unmapped_ids_show_as_overflow,
    },
];

fn with_user_namespace(cx: &Ctx, label: &str) -> Result<ContainerSpec, Failure> {
    Ok(cx.spec(label)?.user_namespace(MAPPED_ROOT, MAPPED_IDS))
}

fn root_inside_is_unprivileged_outside(cx: &Ctx) -> Outcome {
    let mut container = cx.launch(with_user_namespace(cx, "user-root")?)?;
    let facts = expect_facts(container.ask(&Request::Facts)?)?;
    require!(
        facts.uid == 0,
        "expected the container's process to run as uid 0 inside, saw {}",
        facts.uid
    );
    let map = container.read_file("/proc/self/uid_map")?;
    let fields: Vec<&str> = map.split_whitespace().collect();
    check!(
        fields == ["0", "100000", "65536"],
        "expected /proc/self/uid_map to read `0 100000 65536`, saw {map:?}: root in the container \
         is not mapped to an unprivileged host user"
    );
    // In /tmp (1777 in every rootfs): an image's `/` may be writable only with CAP_DAC_OVERRIDE.
    let written = container.ask(&Request::WriteFile {
        path: "/tmp/palisade-owned-by".into(),
        contents: "x".into(),
    })?;
    require!(
        matches!(&written, Reply::Syscall(o) if o.succeeded()),
        "expected the container's root to write its own rootfs, saw {written:?}"
    );
    let on_host = container.write_layer()?.join("tmp/palisade-owned-by");
    let owner = std::fs::metadata(&on_host)
        .map_err(|e| Failure::Broken(format!("stat {} on the host: {e}", on_host.display())))?
        .uid();
    check!(
        owner == MAPPED_ROOT,
        "expected the file the container's root created to be owned by host uid {MAPPED_ROOT}, \
         it is owned by {owner}: the container's root acts as host uid {owner}"
    );
    Ok(())
}

/// A Palisade-owned file on the host, owned by root, mode 0600: harmless to write.
fn host_file(cx: &Ctx, what: &str) -> Result<PathBuf, Failure> {
    use std::os::unix::fs::PermissionsExt;
    let path = cx.run.dir.join(cx.run.name(what));
    std::fs::write(&path, "host\n")
        .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)))
        .map_err(|e| Failure::Broken(format!("writing {}: {e}", path.display())))?;
    Ok(path)
}

fn bind_file(
    host: &Path,
    inside: &str,
    options: &[&str],
) -> Result<oci_spec::runtime::Mount, Failure> {
    MountBuilder::default()
        .destination(inside)
        .typ("bind")
        .source(host)
        .options(options.iter().map(|o| (*o).to_owned()).collect::<Vec<_>>())
        .build()
        .map_err(|e| Failure::Broken(format!("building the bind of {}: {e}", host.display())))
}

/// A filesystem type this kernel has and keeps out of user namespaces.
fn kernel_only_fs() -> Option<&'static str> {
    let known = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    ["debugfs", "tracefs", "securityfs", "pstore"]
        .into_iter()
        .find(|fs| {
            known
                .lines()
                .any(|l| l.split_whitespace().last() == Some(fs))
        })
}

fn capabilities_stop_at_the_namespace(cx: &Ctx) -> Outcome {
    let file = host_file(cx, "userns-target")?;
    let fstype = kernel_only_fs().ok_or_else(|| {
        Failure::Skipped("this kernel has none of debugfs, tracefs, securityfs, pstore".into())
    })?;
    // Every capability this host can grant.
    let every: Vec<Capability> = caps::all()
        .into_iter()
        .filter(|c| cx.host().can_grant(*c))
        .filter_map(palisade_common::capabilities::to_oci)
        .collect();
    let spec = with_user_namespace(cx, "user-caps")?
        .grant(&every)
        .mount(bind_file(&file, "/palisade-host-file", &["bind", "rw"])?)
        // /proc/sys read-only would refuse the sysctl write before any ownership check could.
        .edit(|s| {
            if let Some(linux) = s.linux_mut() {
                linux.set_readonly_paths(None);
            }
        });
    let mut container = cx.launch(spec)?;
    let refused = |outcome: Option<String>| matches!(outcome.as_deref(), Some("EACCES" | "EPERM"));

    let write = container.ask(&Request::WriteFile {
        path: "/palisade-host-file".into(),
        contents: "container\n".into(),
    })?;
    let Reply::Syscall(write) = write else {
        return Err(Failure::Broken(format!(
            "expected a write outcome, saw {write:?}"
        )));
    };
    check!(
        refused(write.errno.clone()),
        "expected writing a root-owned host file (mode 0600) to be refused, saw {write:?}: the \
         container's capabilities apply to host-owned files"
    );

    let Reply::WrittenBack { writes } = container.ask(&Request::WriteBack {
        paths: vec!["/proc/sys/vm/swappiness".into()],
    })?
    else {
        return Err(Failure::Broken(
            "the probe did not write back the sysctl".into(),
        ));
    };
    let sysctl = writes.first().and_then(|w| w.write.clone());
    check!(
        refused(sysctl.as_ref().and_then(|o| o.errno.clone())),
        "expected writing back vm.swappiness (a host-wide setting) to be refused, saw {writes:?}: \
         the container can change the host's kernel settings"
    );

    let mounted = container.ask(&Request::Mount {
        fstype: fstype.into(),
        target: "/tmp/palisade-kernel-fs".into(),
    })?;
    let Reply::Syscall(mounted) = mounted else {
        return Err(Failure::Broken(format!(
            "expected a mount outcome, saw {mounted:?}"
        )));
    };
    check!(
        refused(mounted.errno.clone()),
        "expected mounting {fstype} (not allowed in user namespaces) to be refused, saw \
         {mounted:?}: the container mounts with the host's privileges"
    );
    Ok(())
}

fn unmapped_ids_show_as_overflow(cx: &Ctx) -> Outcome {
    let file = host_file(cx, "userns-owned")?;
    let overflow = |what: &str| -> Result<u32, Failure> {
        std::fs::read_to_string(format!("/proc/sys/kernel/overflow{what}"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .ok_or_else(|| Failure::Broken(format!("reading the kernel's overflow{what}")))
    };
    let (uid, gid) = (overflow("uid")?, overflow("gid")?);
    let spec = with_user_namespace(cx, "user-overflow")?.mount(bind_file(
        &file,
        "/palisade-host-file",
        &["bind", "ro"],
    )?);
    let reply = cx.run_once(spec.one_shot(&Request::StatPaths {
        paths: vec!["/palisade-host-file".into()],
    }))?;
    let Reply::Stats { stats } = reply else {
        return Err(Failure::Broken(format!(
            "expected path stats, saw {reply:?}"
        )));
    };
    let owner = stats.first().and_then(|s| s.owner);
    check!(
        owner == Some((uid, gid)),
        "expected a file owned by host root (unmapped) to show as owned by {uid}:{gid} inside, \
         saw {owner:?}: host ids keep their meaning inside the container"
    );
    Ok(())
}
