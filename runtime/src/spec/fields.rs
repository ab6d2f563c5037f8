//! THE RULE, enforced: every field of the runtime spec's config, as oci-spec models it, is applied
//! (the plan carries it) or refused (`plan` fails with an error that names it); never dropped.
//!
//! [`table`] lists every field, one row each, with a config that sets it and what must happen.
//! [`every_field_of_oci_spec_is_in_the_table`] asks oci-spec's own types for their fields (serde
//! knows them), so a field that a new oci-spec adds fails the test until it has a row.
//! Objects refused as a whole (`linux.seccomp`, other platforms, …) are one row; their inner
//! fields need no rows of their own.

use std::path::Path;

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::resource::Resource;
use nix::sys::stat::SFlag;
use oci_spec::runtime::{
    ExecCPUAffinity, Hook, Hooks, Linux, LinuxCapabilities, LinuxCpu, LinuxDevice, LinuxIOPriority,
    LinuxIdMapping, LinuxMemory, LinuxNamespace, LinuxPersonality, LinuxPids, LinuxResources,
    LinuxTimeOffset, Mount, PosixRlimit, Process, Root, Scheduler, Spec, User,
};
use serde::de::{self, Deserialize, Visitor};
use serde_json::{Value, json};

use super::{Lsm, Plan, SpecError, plan};
use crate::hooks::HookKind;

/// What happens to a field.
enum Expect {
    /// The plan carries it: the check looks at that part of the plan.
    Applied(Box<dyn Fn(&Plan) -> bool>),
    /// `plan` fails with an error that names the field.
    Refused,
    /// Validated and carried in the plan for another verb: the spec says it does not apply to the
    /// container's init (`process.execCPUAffinity` is for `exec`).
    Carried(&'static str, Box<dyn Fn(&Plan) -> bool>),
    /// The spec itself tells the runtime to ignore it in this config.
    Ignored(&'static str),
}

struct Row {
    /// The field as a path: `process.user.umask`, `mounts[].type`, `linux.timeOffsets{}.secs`.
    field: String,
    /// Merged into the base config to set the field.
    patch: Value,
    expect: Expect,
}

fn row(field: &str, patch: Value, expect: Expect) -> Row {
    Row {
        field: field.to_owned(),
        patch,
        expect,
    }
}

fn applied(check: impl Fn(&Plan) -> bool + 'static) -> Expect {
    Expect::Applied(Box::new(check))
}

/// A config with one linux section member set (and the mount namespace the base has).
fn linux(patch: Value) -> Value {
    json!({"linux": patch})
}

fn with_ns(types: &[&str], mut patch: Value) -> Value {
    let mut namespaces: Vec<Value> = vec![json!({"type": "mount"})];
    namespaces.extend(types.iter().map(|t| json!({"type": t})));
    patch["linux"]["namespaces"] = Value::Array(namespaces);
    patch
}

/// A config with a new user namespace and these maps (an empty one replaced by `0 100000 65536`).
fn user_maps(uid: Value, gid: Value) -> Value {
    let default = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    let or_default = |v: Value| if v == json!([]) { default.clone() } else { v };
    linux(json!({
        "namespaces": [{"type": "mount"}, {"type": "user"}],
        "uidMappings": or_default(uid),
        "gidMappings": or_default(gid)
    }))
}

fn id_maps(p: &Plan, check: impl Fn(&super::IdMaps) -> bool) -> bool {
    p.id_maps.as_ref().is_some_and(check)
}

fn process(patch: Value) -> Value {
    json!({"process": patch})
}

fn resources(patch: Value) -> Value {
    linux(json!({"resources": patch}))
}

/// Every field, in the order of the runtime spec's documents.
fn table() -> Vec<Row> {
    use Expect::{Ignored, Refused};
    let cap = caps::Capability::CAP_KILL;
    let mut rows = vec![
        // --- config.md ---------------------------------------------------------------------
        row(
            "ociVersion",
            json!({"ociVersion": "1.0.9"}),
            applied(|p| p.oci_version == "1.0.9"),
        ),
        row(
            "root.path",
            json!({"root": {"path": "rootfs2"}}),
            applied(|p| p.rootfs.ends_with("rootfs2")),
        ),
        row(
            "root.readonly",
            json!({"root": {"path": "rootfs", "readonly": true}}),
            applied(|p| p.readonly_root),
        ),
        row(
            "mounts[].destination",
            json!({"mounts": [{"destination": "/data", "type": "tmpfs", "source": "tmpfs"}]}),
            applied(|p| p.mounts[0].destination == Path::new("/data")),
        ),
        row(
            "mounts[].type",
            json!({"mounts": [{"destination": "/data", "type": "mqueue", "source": "mqueue"}]}),
            applied(|p| p.mounts[0].fstype == "mqueue"),
        ),
        row(
            "mounts[].source",
            json!({"mounts": [{"destination": "/data", "type": "tmpfs", "source": "src"}]}),
            applied(|p| p.mounts[0].source.as_deref() == Some(Path::new("src"))),
        ),
        row(
            "mounts[].options",
            json!({"mounts": [{"destination": "/d", "type": "tmpfs", "options": ["ro", "size=1k"]}]}),
            applied(|p| {
                p.mounts[0].flags.contains(MsFlags::MS_RDONLY) && p.mounts[0].data == "size=1k"
            }),
        ),
        row(
            "mounts[].uidMappings",
            json!({"mounts": [{"destination": "/d", "type": "tmpfs", "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}]}),
            Refused,
        ),
        row(
            "mounts[].gidMappings",
            json!({"mounts": [{"destination": "/d", "type": "tmpfs", "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}]}),
            Refused,
        ),
        row(
            "process.terminal",
            process(json!({"terminal": true})),
            Refused,
        ),
        row(
            "process.consoleSize",
            process(json!({"consoleSize": {"height": 24, "width": 80}})),
            Ignored(
                "runtimes MUST ignore consoleSize if terminal is false or unset (and a terminal is refused)",
            ),
        ),
        row(
            "process.user.uid",
            process(json!({"user": {"uid": 1000, "gid": 0}})),
            applied(|p| p.process.uid == 1000),
        ),
        row(
            "process.user.gid",
            process(json!({"user": {"uid": 0, "gid": 100}})),
            applied(|p| p.process.gid == 100),
        ),
        row(
            "process.user.umask",
            process(json!({"user": {"uid": 0, "gid": 0, "umask": 2}})),
            applied(|p| p.process.umask == Some(0o002)),
        ),
        row(
            "process.user.additionalGids",
            process(json!({"user": {"uid": 0, "gid": 0, "additionalGids": [5, 6]}})),
            applied(|p| p.process.additional_gids == [5, 6]),
        ),
        row(
            "process.user.username",
            process(json!({"user": {"uid": 0, "gid": 0, "username": "bob"}})),
            Refused,
        ),
        row(
            "process.args",
            process(json!({"args": ["/bin/app", "-v"]})),
            applied(|p| p.process.args == [c"/bin/app", c"-v"]),
        ),
        row(
            "process.commandLine",
            process(json!({"commandLine": "app.exe -v"})),
            Refused,
        ),
        row(
            "process.env",
            process(json!({"env": ["A=1", "PATH=/x"]})),
            applied(|p| p.process.env == [c"A=1", c"PATH=/x"] && p.process.path_env == "/x"),
        ),
        row(
            "process.cwd",
            process(json!({"cwd": "/work"})),
            applied(|p| p.process.cwd == Path::new("/work")),
        ),
        row(
            "process.capabilities.bounding",
            process(json!({"capabilities": {"bounding": ["CAP_KILL"]}})),
            applied(move |p| p.process.caps.bounding.contains(&cap)),
        ),
        row(
            "process.capabilities.effective",
            process(json!({"capabilities": {"effective": ["CAP_KILL"]}})),
            applied(move |p| p.process.caps.effective.contains(&cap)),
        ),
        row(
            "process.capabilities.inheritable",
            process(json!({"capabilities": {"inheritable": ["CAP_KILL"]}})),
            applied(move |p| p.process.caps.inheritable.contains(&cap)),
        ),
        row(
            "process.capabilities.permitted",
            process(json!({"capabilities": {"permitted": ["CAP_KILL"]}})),
            applied(move |p| p.process.caps.permitted.contains(&cap)),
        ),
        row(
            "process.capabilities.ambient",
            process(json!({"capabilities": {"ambient": ["CAP_KILL"]}})),
            applied(move |p| p.process.caps.ambient.contains(&cap)),
        ),
        row(
            "process.rlimits[].type",
            process(json!({"rlimits": [{"type": "RLIMIT_CORE", "hard": 2, "soft": 1}]})),
            applied(|p| p.process.rlimits[0].0 == Resource::RLIMIT_CORE),
        ),
        row(
            "process.rlimits[].hard",
            process(json!({"rlimits": [{"type": "RLIMIT_NOFILE", "hard": 20, "soft": 10}]})),
            applied(|p| p.process.rlimits[0].2 == 20),
        ),
        row(
            "process.rlimits[].soft",
            process(json!({"rlimits": [{"type": "RLIMIT_NOFILE", "hard": 20, "soft": 10}]})),
            applied(|p| p.process.rlimits[0].1 == 10),
        ),
        row(
            "process.noNewPrivileges",
            process(json!({"noNewPrivileges": true})),
            applied(|p| p.process.no_new_privileges),
        ),
        // This table runs with a host without LSMs: see spec::attrs for the applied labels.
        row(
            "process.apparmorProfile",
            process(json!({"apparmorProfile": "p"})),
            Refused,
        ),
        row(
            "process.oomScoreAdj",
            process(json!({"oomScoreAdj": 500})),
            applied(|p| p.process.oom_score_adj == Some(500)),
        ),
        row(
            "process.selinuxLabel",
            process(json!({"selinuxLabel": "l"})),
            Refused,
        ),
        row(
            "process.ioPriority.class",
            process(json!({"ioPriority": {"class": "IOPRIO_CLASS_RT", "priority": 0}})),
            applied(|p| p.process.io_priority == Some(1 << 13)),
        ),
        row(
            "process.ioPriority.priority",
            process(json!({"ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 6}})),
            applied(|p| p.process.io_priority == Some(2 << 13 | 6)),
        ),
        row(
            "process.scheduler.policy",
            process(json!({"scheduler": {"policy": "SCHED_BATCH"}})),
            applied(|p| p.process.scheduler.is_some_and(|s| s.policy == 3)),
        ),
        row(
            "process.scheduler.nice",
            process(json!({"scheduler": {"policy": "SCHED_OTHER", "nice": 7}})),
            applied(|p| p.process.scheduler.is_some_and(|s| s.nice == 7)),
        ),
        row(
            "process.scheduler.priority",
            process(json!({"scheduler": {"policy": "SCHED_RR", "priority": 9}})),
            applied(|p| p.process.scheduler.is_some_and(|s| s.priority == 9)),
        ),
        row(
            "process.scheduler.flags",
            process(
                json!({"scheduler": {"policy": "SCHED_OTHER", "flags": ["SCHED_RESET_ON_FORK"]}}),
            ),
            applied(|p| p.process.scheduler.is_some_and(|s| s.flags == 1)),
        ),
        row(
            "process.scheduler.runtime",
            process(
                json!({"scheduler": {"policy": "SCHED_DEADLINE", "runtime": 10, "deadline": 20, "period": 30}}),
            ),
            applied(|p| p.process.scheduler.is_some_and(|s| s.runtime == 10)),
        ),
        row(
            "process.scheduler.deadline",
            process(
                json!({"scheduler": {"policy": "SCHED_DEADLINE", "runtime": 10, "deadline": 20, "period": 30}}),
            ),
            applied(|p| p.process.scheduler.is_some_and(|s| s.deadline == 20)),
        ),
        row(
            "process.scheduler.period",
            process(
                json!({"scheduler": {"policy": "SCHED_DEADLINE", "runtime": 10, "deadline": 20, "period": 30}}),
            ),
            applied(|p| p.process.scheduler.is_some_and(|s| s.period == 30)),
        ),
        row(
            "process.execCPUAffinity.initial",
            process(json!({"execCPUAffinity": {"initial": "0-1"}})),
            Expect::Carried(
                "for exec: the spec does not apply it to the init",
                Box::new(|p| {
                    p.process
                        .exec_cpu_affinity
                        .as_ref()
                        .is_some_and(|a| a.initial.as_deref() == Some(&[0, 1][..]))
                }),
            ),
        ),
        row(
            "process.execCPUAffinity.final",
            process(json!({"execCPUAffinity": {"final": "1"}})),
            Expect::Carried(
                "for exec: the spec does not apply it to the init",
                Box::new(|p| {
                    p.process
                        .exec_cpu_affinity
                        .as_ref()
                        .is_some_and(|a| a.after_cgroup.as_deref() == Some(&[1][..]))
                }),
            ),
        ),
        row(
            "hostname",
            with_ns(&["uts"], json!({"hostname": "box"})),
            applied(|p| p.hostname.as_deref() == Some("box")),
        ),
        row(
            "domainname",
            with_ns(&["uts"], json!({"domainname": "example.org"})),
            applied(|p| p.domainname.as_deref() == Some("example.org")),
        ),
        row(
            "annotations",
            json!({"annotations": {"a": "b"}}),
            applied(|p| p.annotations.get("a").map(String::as_str) == Some("b")),
        ),
        row("solaris", json!({"solaris": {}}), Refused),
        row("windows", json!({"windows": {"layerFolders": []}}), Refused),
        row("vm", json!({"vm": {"kernel": {"path": "/k"}}}), Refused),
        row("zos", json!({"zos": {}}), Refused),
        row("uidMappings", json!({"uidMappings": []}), Refused),
        row("gidMappings", json!({"gidMappings": []}), Refused),
        // --- config-linux.md ---------------------------------------------------------------
        row(
            "linux.namespaces[].type",
            linux(json!({"namespaces": [{"type": "mount"}, {"type": "ipc"}]})),
            applied(|p| p.has_new_namespace(CloneFlags::CLONE_NEWIPC)),
        ),
        row(
            "linux.namespaces[].path",
            linux(
                json!({"namespaces": [{"type": "mount"}, {"type": "network", "path": "/run/netns/x"}]}),
            ),
            applied(|p| {
                p.namespaces
                    .iter()
                    .any(|n| n.path.as_deref() == Some(Path::new("/run/netns/x")))
            }),
        ),
        row(
            "linux.uidMappings[].containerID",
            user_maps(
                json!([{"containerID": 0, "hostID": 1000, "size": 1},
                             {"containerID": 5, "hostID": 2000, "size": 1}]),
                json!([]),
            ),
            applied(|p| id_maps(p, |m| m.uid[1].container == 5)),
        ),
        row(
            "linux.uidMappings[].hostID",
            user_maps(
                json!([{"containerID": 0, "hostID": 1000, "size": 1}]),
                json!([]),
            ),
            applied(|p| id_maps(p, |m| m.uid[0].host == 1000)),
        ),
        row(
            "linux.uidMappings[].size",
            user_maps(
                json!([{"containerID": 0, "hostID": 1000, "size": 3}]),
                json!([]),
            ),
            applied(|p| id_maps(p, |m| m.uid[0].size == 3)),
        ),
        row(
            "linux.gidMappings[].containerID",
            user_maps(
                json!([]),
                json!([{"containerID": 0, "hostID": 1000, "size": 1},
                                        {"containerID": 5, "hostID": 2000, "size": 1}]),
            ),
            applied(|p| id_maps(p, |m| m.gid[1].container == 5)),
        ),
        row(
            "linux.gidMappings[].hostID",
            user_maps(
                json!([]),
                json!([{"containerID": 0, "hostID": 1000, "size": 1}]),
            ),
            applied(|p| id_maps(p, |m| m.gid[0].host == 1000)),
        ),
        row(
            "linux.gidMappings[].size",
            user_maps(
                json!([]),
                json!([{"containerID": 0, "hostID": 1000, "size": 3}]),
            ),
            applied(|p| id_maps(p, |m| m.gid[0].size == 3)),
        ),
        row(
            "linux.timeOffsets{}.secs",
            with_ns(
                &["time"],
                linux(json!({"timeOffsets": {"monotonic": {"secs": 5}}})),
            ),
            applied(|p| {
                p.time_offsets
                    .first()
                    .is_some_and(|o| o.clock == "monotonic" && o.secs == 5)
            }),
        ),
        row(
            "linux.timeOffsets{}.nanosecs",
            with_ns(
                &["time"],
                linux(json!({"timeOffsets": {"boottime": {"nanosecs": 7}}})),
            ),
            applied(|p| {
                p.time_offsets
                    .first()
                    .is_some_and(|o| o.clock == "boottime" && o.nanosecs == 7)
            }),
        ),
        row(
            "linux.devices[].type",
            linux(json!({"devices": [{"path": "/dev/sda", "type": "b", "major": 8, "minor": 0}]})),
            applied(|p| p.devices[0].kind == SFlag::S_IFBLK),
        ),
        row(
            "linux.devices[].path",
            linux(
                json!({"devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]}),
            ),
            applied(|p| p.devices[0].path == Path::new("/dev/fuse")),
        ),
        row(
            "linux.devices[].major",
            linux(
                json!({"devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]}),
            ),
            applied(|p| p.devices[0].major == 10),
        ),
        row(
            "linux.devices[].minor",
            linux(
                json!({"devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]}),
            ),
            applied(|p| p.devices[0].minor == 229),
        ),
        row(
            "linux.devices[].fileMode",
            linux(
                json!({"devices": [{"path": "/dev/x", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600}]}),
            ),
            applied(|p| p.devices[0].mode == 0o600),
        ),
        row(
            "linux.devices[].uid",
            linux(
                json!({"devices": [{"path": "/dev/x", "type": "c", "major": 1, "minor": 3, "uid": 7}]}),
            ),
            applied(|p| p.devices[0].uid == 7),
        ),
        row(
            "linux.devices[].gid",
            linux(
                json!({"devices": [{"path": "/dev/x", "type": "c", "major": 1, "minor": 3, "gid": 8}]}),
            ),
            applied(|p| p.devices[0].gid == 8),
        ),
        row(
            "linux.cgroupsPath",
            linux(json!({"cgroupsPath": "/a/b"})),
            applied(|p| p.cgroup_path == Path::new("/a/b")),
        ),
        row(
            "linux.resources.devices",
            resources(json!({"devices": [{"allow": true, "access": "rwm"}]})),
            applied(|p| p.resources.devices.default_allow),
        ),
        row(
            "linux.resources.memory.limit",
            resources(json!({"memory": {"limit": 1048576}})),
            applied(|p| p.resources.memory.limit == Some(1_048_576)),
        ),
        row(
            "linux.resources.memory.swap",
            resources(json!({"memory": {"limit": 1048576, "swap": 2097152}})),
            applied(|p| p.resources.memory.swap == Some(2_097_152)),
        ),
        row(
            "linux.resources.cpu.shares",
            resources(json!({"cpu": {"shares": 512}})),
            applied(|p| p.resources.cpu.shares == Some(512)),
        ),
        row(
            "linux.resources.cpu.quota",
            resources(json!({"cpu": {"quota": 5000}})),
            applied(|p| p.resources.cpu.quota == Some(5000)),
        ),
        row(
            "linux.resources.cpu.period",
            resources(json!({"cpu": {"period": 10000}})),
            applied(|p| p.resources.cpu.period == Some(10000)),
        ),
        row(
            "linux.resources.cpu.cpus",
            resources(json!({"cpu": {"cpus": "0-1"}})),
            applied(|p| p.resources.cpu.cpus.as_deref() == Some("0-1")),
        ),
        row(
            "linux.resources.cpu.mems",
            resources(json!({"cpu": {"mems": "0"}})),
            applied(|p| p.resources.cpu.mems.as_deref() == Some("0")),
        ),
        row(
            "linux.resources.pids.limit",
            resources(json!({"pids": {"limit": 64}})),
            applied(|p| p.resources.pids_limit == Some(64)),
        ),
        row(
            "linux.resources.blockIO",
            resources(json!({"blockIO": {"weight": 100}})),
            applied(|p| p.resources.block_io.weight == Some(100)),
        ),
        row(
            "linux.resources.hugepageLimits",
            resources(json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 0}]})),
            applied(|p| p.resources.hugepages.len() == 1),
        ),
        row(
            "linux.resources.network",
            resources(json!({"network": {"classID": 1}})),
            applied(|p| p.resources.network.class_id == Some(1)),
        ),
        row(
            "linux.resources.rdma",
            resources(json!({"rdma": {"mlx5_1": {"hcaHandles": 3}}})),
            applied(|p| p.resources.rdma.len() == 1),
        ),
        row(
            "linux.resources.unified",
            resources(json!({"unified": {"memory.high": "1M"}})),
            applied(|p| p.resources.unified == [("memory.high".to_owned(), "1M".to_owned())]),
        ),
        row(
            "linux.intelRdt",
            linux(json!({"intelRdt": {"closID": "c"}})),
            Refused,
        ),
        row(
            "linux.memoryPolicy",
            linux(json!({"memoryPolicy": {"mode": "MPOL_BIND", "nodes": "0"}})),
            Refused,
        ),
        row(
            "linux.netDevices",
            linux(json!({"netDevices": {"eth1": {"name": "eth0"}}})),
            Refused,
        ),
        row(
            "linux.sysctl",
            linux(json!({"sysctl": {"net.ipv4.ip_forward": "1"},
                         "namespaces": [{"type": "mount"}, {"type": "network"}]})),
            applied(|p| p.sysctl == [("net.ipv4.ip_forward".to_owned(), "1".to_owned())]),
        ),
        row(
            "linux.seccomp",
            linux(json!({"seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}})),
            applied(|p| p.seccomp.is_some()),
        ),
        row(
            "linux.rootfsPropagation",
            linux(json!({"rootfsPropagation": "shared"})),
            applied(|p| p.rootfs_propagation == MsFlags::MS_SHARED | MsFlags::MS_REC),
        ),
        row(
            "linux.maskedPaths",
            linux(json!({"maskedPaths": ["/proc/kcore"]})),
            applied(|p| p.masked_paths == [Path::new("/proc/kcore")]),
        ),
        row(
            "linux.readonlyPaths",
            linux(json!({"readonlyPaths": ["/proc/sys"]})),
            applied(|p| p.readonly_paths == [Path::new("/proc/sys")]),
        ),
        row(
            "linux.mountLabel",
            linux(json!({"mountLabel": "system_u:object_r:c"})),
            Refused,
        ),
        row(
            "linux.personality.domain",
            linux(json!({"personality": {"domain": "LINUX32"}})),
            applied(|p| p.personality == Some(8)),
        ),
        row(
            "linux.personality.flags",
            linux(json!({"personality": {"domain": "LINUX", "flags": ["x"]}})),
            Refused,
        ),
    ];
    rows.extend([
        row(
            "linux.resources.memory.reservation",
            resources(json!({"memory": {"reservation": 1}})),
            applied(|p| p.resources.memory.reservation == Some(1)),
        ),
        row(
            "linux.resources.memory.kernel",
            resources(json!({"memory": {"kernel": 1}})),
            applied(|p| p.resources.memory.kernel == Some(1)),
        ),
        row(
            "linux.resources.memory.kernelTCP",
            resources(json!({"memory": {"kernelTCP": 1}})),
            applied(|p| p.resources.memory.kernel_tcp == Some(1)),
        ),
        row(
            "linux.resources.memory.swappiness",
            resources(json!({"memory": {"swappiness": 1}})),
            applied(|p| p.resources.memory.swappiness == Some(1)),
        ),
        row(
            "linux.resources.memory.disableOOMKiller",
            resources(json!({"memory": {"disableOOMKiller": true}})),
            applied(|p| p.resources.memory.disable_oom_killer == Some(true)),
        ),
        row(
            "linux.resources.memory.useHierarchy",
            resources(json!({"memory": {"useHierarchy": true}})),
            applied(|p| p.resources.memory.use_hierarchy == Some(true)),
        ),
        row(
            "linux.resources.memory.checkBeforeUpdate",
            resources(json!({"memory": {"checkBeforeUpdate": true}})),
            Ignored(
                "only `update` compares with the current usage; at `create` the cgroup is empty",
            ),
        ),
        row(
            "linux.resources.cpu.idle",
            resources(json!({"cpu": {"idle": 1}})),
            applied(|p| p.resources.cpu.idle == Some(1)),
        ),
        row(
            "linux.resources.cpu.burst",
            resources(json!({"cpu": {"burst": 1}})),
            applied(|p| p.resources.cpu.burst == Some(1)),
        ),
        row(
            "linux.resources.cpu.realtimeRuntime",
            resources(json!({"cpu": {"realtimeRuntime": 1}})),
            applied(|p| p.resources.cpu.realtime_runtime == Some(1)),
        ),
        row(
            "linux.resources.cpu.realtimePeriod",
            resources(json!({"cpu": {"realtimePeriod": 1}})),
            applied(|p| p.resources.cpu.realtime_period == Some(1)),
        ),
    ]);
    // --- config.md, POSIX-platform hooks: every field of every kind -------------------------
    for kind in HookKind::ALL {
        let name = kind.name();
        let patch = json!({"hooks": {name: [{"path": "/bin/hook", "args": ["hook", "-v"], "env": ["A=1"], "timeout": 7}]}});
        let first = move |p: &Plan| p.hooks.of(kind).first().cloned();
        rows.push(row(
            &format!("hooks.{name}[].path"),
            patch.clone(),
            applied(move |p| first(p).is_some_and(|h| h.path == Path::new("/bin/hook"))),
        ));
        rows.push(row(
            &format!("hooks.{name}[].args"),
            patch.clone(),
            applied(move |p| first(p).is_some_and(|h| h.args == ["hook", "-v"])),
        ));
        rows.push(row(
            &format!("hooks.{name}[].env"),
            patch.clone(),
            applied(move |p| first(p).is_some_and(|h| h.env == Some(vec!["A=1".to_owned()]))),
        ));
        rows.push(row(
            &format!("hooks.{name}[].timeout"),
            patch,
            applied(move |p| {
                first(p).is_some_and(|h| h.timeout == Some(std::time::Duration::from_secs(7)))
            }),
        ));
    }
    rows
}

// --- the fields oci-spec knows ----------------------------------------------------------------

/// The field names serde's derive gives `deserialize_struct`: exactly the JSON keys of `T`.
fn fields_of<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    let mut probe = Probe(&[]);
    let _ = T::deserialize(&mut probe);
    assert!(
        !probe.0.is_empty(),
        "{} is not a struct",
        std::any::type_name::<T>()
    );
    probe.0
}

struct Probe(&'static [&'static str]);

#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("probe stops here")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> de::Deserializer<'de> for &mut Probe {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        self.0 = fields;
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

/// Every struct of the config this table walks into, with where it sits. A struct that is
/// refused as a whole (seccomp, the other platforms, intelRdt, …) is not walked into.
fn structs() -> Vec<(String, &'static [&'static str])> {
    let mut all = vec![
        (String::new(), fields_of::<Spec>()),
        ("root".into(), fields_of::<Root>()),
        ("mounts[]".into(), fields_of::<Mount>()),
        ("process".into(), fields_of::<Process>()),
        ("process.user".into(), fields_of::<User>()),
        (
            "process.capabilities".into(),
            fields_of::<LinuxCapabilities>(),
        ),
        ("process.rlimits[]".into(), fields_of::<PosixRlimit>()),
        ("process.ioPriority".into(), fields_of::<LinuxIOPriority>()),
        ("process.scheduler".into(), fields_of::<Scheduler>()),
        (
            "process.execCPUAffinity".into(),
            fields_of::<ExecCPUAffinity>(),
        ),
        ("hooks".into(), fields_of::<Hooks>()),
        ("linux".into(), fields_of::<Linux>()),
        ("linux.namespaces[]".into(), fields_of::<LinuxNamespace>()),
        ("linux.uidMappings[]".into(), fields_of::<LinuxIdMapping>()),
        ("linux.gidMappings[]".into(), fields_of::<LinuxIdMapping>()),
        ("linux.timeOffsets{}".into(), fields_of::<LinuxTimeOffset>()),
        ("linux.devices[]".into(), fields_of::<LinuxDevice>()),
        ("linux.resources".into(), fields_of::<LinuxResources>()),
        ("linux.resources.memory".into(), fields_of::<LinuxMemory>()),
        ("linux.resources.cpu".into(), fields_of::<LinuxCpu>()),
        ("linux.resources.pids".into(), fields_of::<LinuxPids>()),
        ("linux.personality".into(), fields_of::<LinuxPersonality>()),
    ];
    for kind in HookKind::ALL {
        all.push((format!("hooks.{}[]", kind.name()), fields_of::<Hook>()));
    }
    all
}

/// The leaf fields: every field of every walked struct that is not itself walked into.
fn oci_spec_fields() -> Vec<String> {
    let structs = structs();
    let containers: Vec<String> = structs
        .iter()
        .map(|(prefix, _)| {
            prefix
                .trim_end_matches("[]")
                .trim_end_matches("{}")
                .to_owned()
        })
        .collect();
    let mut leaves = Vec::new();
    for (prefix, fields) in &structs {
        for field in *fields {
            let name = if prefix.is_empty() {
                (*field).to_owned()
            } else {
                format!("{prefix}.{field}")
            };
            if !containers.contains(&name) {
                leaves.push(name);
            }
        }
    }
    leaves
}

// --- running a row ----------------------------------------------------------------------------

fn base() -> Value {
    json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs"},
        "process": {"user": {"uid": 0, "gid": 0}, "args": ["true"], "cwd": "/"},
        "linux": {"namespaces": [{"type": "mount"}]}
    })
}

/// Objects merge key by key; anything else (arrays included) replaces.
fn merge(into: &mut Value, patch: &Value) {
    match (into, patch) {
        (Value::Object(into), Value::Object(patch)) => {
            for (k, v) in patch {
                merge(into.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (into, patch) => *into = patch.clone(),
    }
}

/// Whether `value` has `field` (with `[]` any element, `{}` any member).
fn has(value: &Value, field: &str) -> bool {
    let mut steps = field.split('.').peekable();
    let Some(step) = steps.next() else {
        return !value.is_null();
    };
    let rest: Vec<&str> = steps.collect();
    let rest = rest.join(".");
    let (key, each) = if let Some(k) = step.strip_suffix("[]") {
        (k, "[]")
    } else if let Some(k) = step.strip_suffix("{}") {
        (k, "{}")
    } else {
        (step, "")
    };
    let Some(v) = value.get(key).filter(|v| !v.is_null()) else {
        return false;
    };
    let inner: Vec<&Value> = match each {
        "[]" => v.as_array().map(|a| a.iter().collect()).unwrap_or_default(),
        "{}" => v
            .as_object()
            .map(|o| o.values().collect())
            .unwrap_or_default(),
        _ => vec![v],
    };
    if rest.is_empty() {
        return !inner.is_empty();
    }
    inner.iter().any(|v| has(v, &rest))
}

fn bundle() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for d in ["rootfs", "rootfs2"] {
        std::fs::create_dir(dir.path().join(d)).expect("mkdir");
    }
    dir
}

/// The plan of `base()` with `patch`, on a host without LSMs; and the config oci-spec read.
fn plan_of(patch: &Value, bundle: &Path) -> (Result<Plan, SpecError>, Value) {
    let mut config = base();
    merge(&mut config, patch);
    let spec: Spec = serde_json::from_value(config).expect("oci-spec reads the row's config");
    let read = serde_json::to_value(&spec).expect("serialize");
    (
        plan(&spec, bundle.to_owned(), "c1", false, Lsm::default()),
        read,
    )
}

#[test]
fn every_field_of_oci_spec_is_in_the_table() {
    let known = oci_spec_fields();
    let listed: Vec<String> = table().into_iter().map(|r| r.field).collect();
    let missing: Vec<&String> = known.iter().filter(|f| !listed.contains(f)).collect();
    assert!(
        missing.is_empty(),
        "oci-spec has fields the table does not list (each must be applied or refused by name): {missing:?}"
    );
    let unknown: Vec<&String> = listed.iter().filter(|f| !known.contains(f)).collect();
    assert!(
        unknown.is_empty(),
        "rows for fields oci-spec does not have: {unknown:?}"
    );
    let mut sorted = listed.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), listed.len(), "a field is listed twice");
}

#[test]
fn every_field_is_applied_or_refused_by_name() {
    let dir = bundle();
    let mut failures = Vec::new();
    for r in table() {
        let (result, read) = plan_of(&r.patch, dir.path());
        // The row really sets its field (oci-spec drops keys it does not know).
        if !has(&read, &r.field) {
            failures.push(format!("{}: the row's config does not set it", r.field));
            continue;
        }
        let named = r.field.replace("[]", "[0]");
        let named = named.split("{}").next().unwrap_or_default();
        match (&r.expect, result) {
            (Expect::Applied(check) | Expect::Carried(_, check), Ok(p)) => {
                if !check(&p) {
                    failures.push(format!("{}: accepted but not in the plan", r.field));
                }
            }
            (Expect::Refused, Err(e)) => {
                if !e.to_string().contains(named) {
                    failures.push(format!("{}: refused without naming it: {e}", r.field));
                }
            }
            (Expect::Ignored(_), Ok(_)) => {}
            (Expect::Refused, Ok(_)) => {
                failures.push(format!("{}: accepted, expected refused", r.field))
            }
            (_, Err(e)) => failures.push(format!("{}: refused: {e}", r.field)),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The table as the documentation's field list (`cargo test -p palisade-runtime field_table --
/// --nocapture`).
#[test]
fn field_table() {
    for r in table() {
        let what = match &r.expect {
            Expect::Applied(_) => "applied".to_owned(),
            Expect::Refused => "refused".to_owned(),
            Expect::Carried(why, _) => format!("carried ({why})"),
            Expect::Ignored(why) => format!("ignored ({why})"),
        };
        println!("| `{}` | {what} |", r.field);
    }
}

#[test]
fn the_probe_sees_every_key_serde_writes() {
    // A check of the probe itself on a type whose keys are easy to see.
    let mut keys: Vec<&str> = fields_of::<LinuxTimeOffset>().to_vec();
    keys.sort_unstable();
    assert_eq!(keys, ["nanosecs", "secs"]);
}

// --- configs without a mount namespace --------------------------------------------------------

fn without_mount_ns(extra: Value) -> Value {
    let mut patch = json!({"linux": {"namespaces": [{"type": "pid"}, {"type": "uts"}]}});
    merge(&mut patch, &extra);
    patch
}

#[test]
fn a_config_without_a_mount_namespace_is_planned_as_a_chroot() {
    let dir = bundle();
    let (result, _) = plan_of(&without_mount_ns(json!({"hostname": "box"})), dir.path());
    let p = result.expect("runc accepts it, and so does this runtime");
    assert!(!p.has_mount_namespace());
    assert_eq!(p.hostname.as_deref(), Some("box"));
}

#[rstest::rstest]
#[case::mounts(json!({"mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}]}), "mounts")]
#[case::devices(json!({"linux": {"devices": [{"path": "/dev/x", "type": "c", "major": 1, "minor": 3}]}}), "linux.devices")]
#[case::masked(json!({"linux": {"maskedPaths": ["/proc/kcore"]}}), "linux.maskedPaths")]
#[case::readonly_paths(json!({"linux": {"readonlyPaths": ["/proc/sys"]}}), "linux.readonlyPaths")]
#[case::readonly_root(json!({"root": {"path": "rootfs", "readonly": true}}), "root.readonly")]
#[case::propagation(json!({"linux": {"rootfsPropagation": "private"}}), "linux.rootfsPropagation")]
fn without_a_mount_namespace_mounting_is_refused(#[case] extra: Value, #[case] field: &str) {
    let dir = bundle();
    let (result, _) = plan_of(&without_mount_ns(extra), dir.path());
    assert_eq!(
        result.expect_err("refused").to_string(),
        format!("invalid config: {field}: requires a mount namespace (linux.namespaces has none)")
    );
}

#[test]
fn without_a_mount_namespace_no_pivot_is_refused() {
    let dir = bundle();
    let mut config = base();
    merge(&mut config, &without_mount_ns(json!({})));
    let spec: Spec = serde_json::from_value(config).expect("spec");
    assert_eq!(
        plan(&spec, dir.path().to_owned(), "c1", true, Lsm::default())
            .expect_err("refused")
            .to_string(),
        "invalid config: --no-pivot: requires a mount namespace (linux.namespaces has none)"
    );
}
