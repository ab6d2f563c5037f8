//! cgroup v1 (and the hybrid layout's unified mount, where the container is only placed).

use std::path::{Path, PathBuf};

use super::{
    CgroupError, CgroupManager, CgroupRecord, Freezer, Hierarchy, Write, mkdir_p, refused, write,
};
use crate::spec::{Resources, ThrottleDevice};

pub struct V1Manager {
    hierarchies: Vec<Hierarchy>,
    unified: Option<PathBuf>,
    rel: PathBuf,
    record: CgroupRecord,
}

impl V1Manager {
    pub fn new(hierarchies: Vec<Hierarchy>, unified: Option<PathBuf>, rel: &Path) -> Self {
        Self {
            hierarchies,
            unified,
            rel: rel.to_owned(),
            record: CgroupRecord::default(),
        }
    }
}

/// A new v1 cpuset cgroup starts with empty cpus/mems and refuses tasks (ENOSPC) until they are
/// set. Every level from the mount point down is checked, not only the ones this process made:
/// another container may have just created a shared parent and not filled it in yet.
fn ensure_cpuset(mountpoint: &Path, dir: &Path) -> Result<(), CgroupError> {
    let Ok(rel) = dir.strip_prefix(mountpoint) else {
        return Ok(());
    };
    let mut level = mountpoint.to_path_buf();
    for component in rel.components() {
        let parent = level.clone();
        level.push(component);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let current = std::fs::read_to_string(level.join(file)).unwrap_or_default();
            if current.trim().is_empty() {
                let inherited = std::fs::read_to_string(parent.join(file)).unwrap_or_default();
                write(&level, file, inherited.trim())?;
            }
        }
    }
    Ok(())
}

const R: &str = "linux.resources";

fn throttle_writes(out: &mut Vec<Write>, list: &[ThrottleDevice], field: &str, file: &str) {
    for (i, t) in list.iter().enumerate() {
        out.push(Write::new(
            &format!("{R}.blockIO.{field}[{i}]"),
            "blkio",
            file,
            format!("{}:{} {}", t.major, t.minor, t.rate),
        ));
    }
}

/// Every v1 file to write for `r`, in the order the kernel accepts them (the unified entries
/// aside: they go to the hybrid layout's cgroup2 mount, if any).
pub fn writes(r: &Resources) -> Vec<Write> {
    let mut w = Vec::new();
    let c = &r.cpu;
    // Period before quota: the kernel validates quota against the current period; the same for
    // the real-time pair.
    let cpu: [(&str, &str, Option<String>); 7] = [
        (
            "period",
            "cpu.cfs_period_us",
            c.period.map(|v| v.to_string()),
        ),
        ("quota", "cpu.cfs_quota_us", c.quota.map(|v| v.to_string())),
        ("burst", "cpu.cfs_burst_us", c.burst.map(|v| v.to_string())),
        ("shares", "cpu.shares", c.shares.map(|v| v.to_string())),
        (
            "realtimePeriod",
            "cpu.rt_period_us",
            c.realtime_period.map(|v| v.to_string()),
        ),
        (
            "realtimeRuntime",
            "cpu.rt_runtime_us",
            c.realtime_runtime.map(|v| v.to_string()),
        ),
        ("idle", "cpu.idle", c.idle.map(|v| v.to_string())),
    ];
    for (field, file, value) in cpu {
        if let Some(value) = value {
            w.push(Write::new(&format!("{R}.cpu.{field}"), "cpu", file, value));
        }
    }
    w.extend(super::cpuset_writes(c));

    let m = &r.memory;
    let mem = |field: &str, file: &str, value: String| {
        Write::new(&format!("{R}.memory.{field}"), "memory", file, value)
    };
    // The limit before memory+swap, which must not be below it.
    if let Some(v) = m.limit {
        w.push(mem("limit", "memory.limit_in_bytes", v.to_string()));
    }
    if let Some(v) = m.swap {
        let write = mem("swap", "memory.memsw.limit_in_bytes", v.to_string());
        // memsw only exists when the kernel accounts swap; "no limit" needs nothing then.
        w.push(if v == -1 { write.if_present() } else { write });
    }
    if let Some(v) = m.reservation {
        w.push(mem(
            "reservation",
            "memory.soft_limit_in_bytes",
            v.to_string(),
        ));
    }
    if let Some(v) = m.swappiness {
        w.push(mem("swappiness", "memory.swappiness", v.to_string()));
    }
    if let Some(v) = m.kernel {
        w.push(mem("kernel", "memory.kmem.limit_in_bytes", v.to_string()).verified());
    }
    if let Some(v) = m.kernel_tcp {
        w.push(mem("kernelTCP", "memory.kmem.tcp.limit_in_bytes", v.to_string()).verified());
    }
    if let Some(v) = m.disable_oom_killer {
        w.push(mem(
            "disableOOMKiller",
            "memory.oom_control",
            u8::from(v).to_string(),
        ));
    }
    if let Some(v) = m.use_hierarchy {
        w.push(mem(
            "useHierarchy",
            "memory.use_hierarchy",
            u8::from(v).to_string(),
        ));
    }

    if let Some(l) = r.pids_limit {
        let v = if l > 0 { l.to_string() } else { "max".into() };
        w.push(Write::new(
            &format!("{R}.pids.limit"),
            "pids",
            "pids.max",
            v,
        ));
    }

    for (i, h) in r.hugepages.iter().enumerate() {
        let field = format!("{R}.hugepageLimits[{i}].limit");
        let size = &h.page_size;
        w.push(Write::new(
            &field,
            "hugetlb",
            &format!("hugetlb.{size}.limit_in_bytes"),
            h.limit,
        ));
        // Reservations are limited too where the kernel has them (5.7+), as runc does.
        w.push(
            Write::new(
                &field,
                "hugetlb",
                &format!("hugetlb.{size}.rsvd.limit_in_bytes"),
                h.limit,
            )
            .if_present(),
        );
    }

    let b = &r.block_io;
    // CFQ's files, or BFQ's (the only proportional scheduler since 5.0).
    if let Some(v) = b.weight {
        w.push(
            Write::new(&format!("{R}.blockIO.weight"), "blkio", "blkio.weight", v)
                .or("blkio.bfq.weight", v),
        );
    }
    if let Some(v) = b.leaf_weight {
        w.push(Write::new(
            &format!("{R}.blockIO.leafWeight"),
            "blkio",
            "blkio.leaf_weight",
            v,
        ));
    }
    for (i, d) in b.weight_device.iter().enumerate() {
        let field = format!("{R}.blockIO.weightDevice[{i}]");
        if let Some(v) = d.weight {
            let line = format!("{}:{} {v}", d.major, d.minor);
            w.push(
                Write::new(
                    &format!("{field}.weight"),
                    "blkio",
                    "blkio.weight_device",
                    &line,
                )
                .or("blkio.bfq.weight_device", &line),
            );
        }
        if let Some(v) = d.leaf_weight {
            w.push(Write::new(
                &format!("{field}.leafWeight"),
                "blkio",
                "blkio.leaf_weight_device",
                format!("{}:{} {v}", d.major, d.minor),
            ));
        }
    }
    throttle_writes(
        &mut w,
        &b.throttle_read_bps,
        "throttleReadBpsDevice",
        "blkio.throttle.read_bps_device",
    );
    throttle_writes(
        &mut w,
        &b.throttle_write_bps,
        "throttleWriteBpsDevice",
        "blkio.throttle.write_bps_device",
    );
    throttle_writes(
        &mut w,
        &b.throttle_read_iops,
        "throttleReadIOPSDevice",
        "blkio.throttle.read_iops_device",
    );
    throttle_writes(
        &mut w,
        &b.throttle_write_iops,
        "throttleWriteIOPSDevice",
        "blkio.throttle.write_iops_device",
    );

    if let Some(id) = r.network.class_id {
        w.push(Write::new(
            &format!("{R}.network.classID"),
            "net_cls",
            "net_cls.classid",
            id,
        ));
    }
    for (i, (name, prio)) in r.network.priorities.iter().enumerate() {
        w.push(Write::new(
            &format!("{R}.network.priorities[{i}]"),
            "net_prio",
            "net_prio.ifpriomap",
            format!("{name} {prio}"),
        ));
    }

    for rdma in &r.rdma {
        w.push(Write::new(
            &format!("{R}.rdma.{:?}", rdma.device),
            "rdma",
            "rdma.max",
            super::rdma_line(rdma),
        ));
    }

    for (file, line) in r.devices.v1_writes() {
        w.push(Write::new(&format!("{R}.devices"), "devices", file, line));
    }
    w
}

impl CgroupManager for V1Manager {
    fn create(&mut self, r: &Resources) -> Result<(), CgroupError> {
        let writes = writes(r);
        // Everything this layout cannot take is refused before the first directory is made.
        for w in &writes {
            if !self.hierarchies.iter().any(|h| h.has(&w.controller)) {
                return Err(refused(
                    &w.field,
                    format!(
                        "no cgroup v1 hierarchy with the {} controller is mounted",
                        w.controller
                    ),
                ));
            }
        }
        if let Some((key, _)) = r.unified.first()
            && self.unified.is_none()
        {
            return Err(refused(
                &format!("{R}.unified.{key:?}"),
                "unified needs cgroup v2, and this host has only cgroup v1",
            ));
        }
        let mut dirs = Vec::new();
        for h in &self.hierarchies {
            let dir = mkdir_p(&h.mountpoint, &self.rel, &mut self.record.created)?;
            if h.has("cpuset") {
                ensure_cpuset(&h.mountpoint, &dir)?;
            }
            self.record.paths.push(dir.clone());
            if h.has("freezer") {
                self.record.freezer = Some(Freezer::V1(dir.clone()));
            }
            dirs.push((h, dir));
        }
        for w in &writes {
            if let Some((_, dir)) = dirs.iter().find(|(h, _)| h.has(&w.controller)) {
                w.apply(dir)?;
            }
        }
        if let Some(unified) = &self.unified {
            // Placement: controllers stay on v1 (enabling any here would break crun/runc).
            let dir = mkdir_p(unified, &self.rel, &mut self.record.created)?;
            // Without a v1 freezer hierarchy, cgroup v2's own freezer does (its core files
            // exist with no controller enabled).
            if self.record.freezer.is_none() {
                self.record.freezer = Some(Freezer::V2(dir.clone()));
            }
            self.record.paths.push(dir.clone());
            // The core files (and any controller not bound to v1) are there to write.
            for (key, value) in &r.unified {
                let field = format!("{R}.unified.{key:?}");
                if !dir.join(key).exists() {
                    return Err(refused(
                        &field,
                        format!(
                            "unified needs cgroup v2, and this hybrid host's cgroup2 mount has \
                             no {key} (its controller is on cgroup v1)"
                        ),
                    ));
                }
                Write::new(&field, "unified", key, value).apply(&dir)?;
            }
        }
        Ok(())
    }

    fn record(&self) -> &CgroupRecord {
        &self.record
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;
    use crate::spec::{HostLimits, Resources};

    fn resources(value: serde_json::Value) -> Resources {
        let linux: oci_spec::runtime::Linux =
            serde_json::from_value(serde_json::json!({ "resources": value })).expect("valid");
        let host = HostLimits {
            hugepage_sizes: vec!["2MB".into()],
        };
        crate::spec::resources_for_tests(&linux, &host).expect("a valid plan")
    }

    /// (file, value) of every write, and whether it may be skipped.
    fn files(writes: &[Write]) -> Vec<(String, String, bool)> {
        writes
            .iter()
            .map(|w| (w.choices[0].0.clone(), w.choices[0].1.clone(), w.if_present))
            .collect()
    }

    fn has(writes: &[Write], file: &str, value: &str) -> bool {
        writes
            .iter()
            .any(|w| w.choices.iter().any(|(f, v)| f == file && v == value))
    }

    #[test]
    fn memory_in_an_order_the_kernel_accepts() {
        let r = resources(serde_json::json!({"memory": {
            "limit": 67108864, "swap": 134217728, "reservation": 33554432, "swappiness": 10,
            "kernel": 8388608, "kernelTCP": 4194304, "disableOOMKiller": true, "useHierarchy": true
        }}));
        let w = writes(&r);
        let memory: Vec<(String, String, bool)> = files(&w)
            .into_iter()
            .filter(|(f, _, _)| f.starts_with("memory."))
            .collect();
        let row = |f: &str, v: &str| (f.to_owned(), v.to_owned(), false);
        assert_eq!(
            memory,
            [
                row("memory.limit_in_bytes", "67108864"),
                row("memory.memsw.limit_in_bytes", "134217728"),
                row("memory.soft_limit_in_bytes", "33554432"),
                row("memory.swappiness", "10"),
                row("memory.kmem.limit_in_bytes", "8388608"),
                row("memory.kmem.tcp.limit_in_bytes", "4194304"),
                row("memory.oom_control", "1"),
                row("memory.use_hierarchy", "1"),
            ]
        );
        // The kernel takes kmem limits it no longer enforces: they are read back.
        assert!(w.iter().filter(|w| w.verify).count() == 2);
        let swap = w
            .iter()
            .find(|w| w.choices[0].0 == "memory.memsw.limit_in_bytes")
            .expect("swap");
        assert_eq!(swap.field, "linux.resources.memory.swap");
    }

    #[test]
    fn unlimited_swap_needs_no_swap_accounting() {
        let r = resources(serde_json::json!({"memory": {"limit": 1048576, "swap": -1}}));
        let w = writes(&r);
        let swap = w
            .iter()
            .find(|w| w.choices[0].0 == "memory.memsw.limit_in_bytes")
            .expect("swap");
        assert!(swap.if_present);
    }

    #[test]
    fn everything_else() {
        let r = resources(serde_json::json!({
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 1000,
                    "realtimeRuntime": 950, "realtimePeriod": 1000, "idle": 0, "cpus": "0"},
            "pids": {"limit": 64},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
            "blockIO": {"weight": 500, "leafWeight": 300,
                        "weightDevice": [{"major": 8, "minor": 0, "weight": 600, "leafWeight": 50}],
                        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                        "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 20}]},
            "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]},
            "rdma": {"mlx4_0": {"hcaHandles": 2}}
        }));
        let w = writes(&r);
        let files = files(&w);
        let pos = |file: &str| {
            files
                .iter()
                .position(|(f, _, _)| f == file)
                .unwrap_or_else(|| panic!("no {file} in {files:?}"))
        };
        // Periods before what is checked against them.
        assert!(pos("cpu.cfs_period_us") < pos("cpu.cfs_quota_us"));
        assert!(pos("cpu.rt_period_us") < pos("cpu.rt_runtime_us"));
        for (file, value) in [
            ("cpu.cfs_burst_us", "1000"),
            ("cpu.shares", "512"),
            ("cpu.idle", "0"),
            ("cpuset.cpus", "0"),
            ("pids.max", "64"),
            ("hugetlb.2MB.limit_in_bytes", "4194304"),
            ("hugetlb.2MB.rsvd.limit_in_bytes", "4194304"),
            // CFQ's name, or BFQ's.
            ("blkio.weight", "500"),
            ("blkio.bfq.weight", "500"),
            ("blkio.leaf_weight", "300"),
            ("blkio.weight_device", "8:0 600"),
            ("blkio.bfq.weight_device", "8:0 600"),
            ("blkio.leaf_weight_device", "8:0 50"),
            ("blkio.throttle.read_bps_device", "8:0 1048576"),
            ("blkio.throttle.write_iops_device", "8:0 20"),
            ("net_cls.classid", "1048577"),
            ("net_prio.ifpriomap", "eth0 5"),
            ("rdma.max", "mlx4_0 hca_handle=2 hca_object=max"),
        ] {
            assert!(has(&w, file, value), "{file} = {value} missing in {w:#?}");
        }
        let rsvd = w
            .iter()
            .find(|w| w.choices[0].0 == "hugetlb.2MB.rsvd.limit_in_bytes")
            .expect("rsvd");
        assert!(rsvd.if_present);
    }

    #[test]
    fn device_rules_come_last_deny_all_first() {
        let r = resources(serde_json::json!({"devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 10, "minor": 237, "access": "rw"}
        ]}));
        let w = writes(&r);
        let devices: Vec<(String, String, bool)> = files(&w)
            .into_iter()
            .filter(|(f, _, _)| f.starts_with("devices."))
            .collect();
        assert_eq!(devices.len(), w.len());
        assert_eq!(devices[0], ("devices.deny".into(), "a".into(), false));
        assert_eq!(
            devices[1],
            ("devices.allow".into(), "c 10:237 rw".into(), false)
        );
        assert!(devices.contains(&("devices.allow".into(), "c 1:3 rwm".into(), false)));
    }

    /// Fake hierarchies below a temporary directory, with the container's cgroup made already
    /// and holding `files` (as the kernel would), so the manager can write into it.
    fn fake(controllers: &[&str], files: &[&str]) -> (tempfile::TempDir, Vec<Hierarchy>) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut hierarchies = Vec::new();
        for c in controllers {
            let mountpoint = tmp.path().join(c);
            let dir = mountpoint.join("ctr");
            std::fs::create_dir_all(&dir).expect("mkdir");
            for f in files.iter().filter(|f| f.starts_with(&format!("{c}."))) {
                std::fs::write(dir.join(f), "").expect("write");
            }
            hierarchies.push(Hierarchy {
                mountpoint,
                options: vec![(*c).to_owned()],
            });
        }
        (tmp, hierarchies)
    }

    const DEVICE_FILES: &[&str] = &["devices.allow", "devices.deny"];

    #[test]
    fn writes_land_in_each_controllers_hierarchy() {
        let (tmp, h) = fake(
            &["memory", "devices"],
            &[
                "memory.limit_in_bytes",
                "memory.swappiness",
                "memory.oom_control",
                "devices.allow",
                "devices.deny",
            ],
        );
        let r = resources(serde_json::json!({"memory": {
            "limit": 1048576, "swappiness": 10, "disableOOMKiller": true
        }}));
        let mut m = V1Manager::new(h, None, Path::new("/ctr"));
        m.create(&r).expect("created");
        let read = |f: &str| std::fs::read_to_string(tmp.path().join(f)).expect("read");
        assert_eq!(read("memory/ctr/memory.swappiness"), "10");
        assert_eq!(read("memory/ctr/memory.oom_control"), "1");
        // The last line written; the real file keeps every rule.
        assert_eq!(read("devices/ctr/devices.allow"), "c 136:* rwm");
        assert_eq!(read("devices/ctr/devices.deny"), "a");
        assert_eq!(m.record().paths.len(), 2);
    }

    #[rstest]
    #[case::no_memory_hierarchy(&["devices"], serde_json::json!({"memory": {"limit": 1048576}}),
        "linux.resources.memory.limit: no cgroup v1 hierarchy with the memory controller is mounted")]
    #[case::no_net_cls(&["devices"], serde_json::json!({"network": {"classID": 1}}),
        "linux.resources.network.classID: no cgroup v1 hierarchy with the net_cls controller is mounted")]
    #[case::no_rdma(&["devices"], serde_json::json!({"rdma": {"mlx4_0": {"hcaHandles": 1}}}),
        "linux.resources.rdma.\"mlx4_0\": no cgroup v1 hierarchy with the rdma controller is mounted")]
    #[case::no_devices_controller(&["memory"], serde_json::json!({}),
        "linux.resources.devices: no cgroup v1 hierarchy with the devices controller is mounted")]
    #[case::unified_without_cgroup2(&["devices"], serde_json::json!({"unified": {"memory.high": "1"}}),
        "linux.resources.unified.\"memory.high\": unified needs cgroup v2, and this host has only cgroup v1")]
    fn what_the_layout_lacks_is_refused_before_anything_is_made(
        #[case] controllers: &[&str],
        #[case] value: serde_json::Value,
        #[case] error: &str,
    ) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let h = controllers
            .iter()
            .map(|c| Hierarchy {
                mountpoint: tmp.path().join(c),
                options: vec![(*c).to_owned()],
            })
            .collect();
        let mut m = V1Manager::new(h, None, Path::new("/ctr"));
        let err = m.create(&resources(value)).expect_err("refused");
        assert_eq!(err.to_string(), error);
        assert!(m.record().created.is_empty());
        assert!(
            std::fs::read_dir(tmp.path())
                .expect("read")
                .next()
                .is_none()
        );
    }

    #[test]
    fn a_file_the_kernel_lacks_is_refused_with_its_field() {
        let (_tmp, h) = fake(&["memory", "devices"], DEVICE_FILES);
        let r = resources(serde_json::json!({"memory": {"limit": 1048576, "swap": 2097152}}));
        let mut m = V1Manager::new(h, None, Path::new("/ctr"));
        let err = m.create(&r).expect_err("no memsw").to_string();
        assert!(
            err.starts_with(
                "linux.resources.memory.limit: this kernel has no memory.limit_in_bytes"
            ),
            "{err}"
        );
    }

    #[test]
    fn a_value_the_kernel_takes_but_ignores_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = "memory.kmem.limit_in_bytes";
        // What 5.16+ reads back after any write: "unlimited".
        std::fs::write(tmp.path().join(file), "9223372036854771712").expect("write");
        assert!(super::super::verify(tmp.path(), file, "8388608").is_err());
        std::fs::write(tmp.path().join(file), "8388608").expect("write");
        assert!(super::super::verify(tmp.path(), file, "8388608").is_ok());
        // Rounded down to a page: enforced.
        std::fs::write(tmp.path().join(file), "1998848").expect("write");
        assert!(super::super::verify(tmp.path(), file, "2000000").is_ok());
    }

    #[test]
    fn unified_on_a_hybrid_host_goes_to_the_cgroup2_mount_if_the_file_is_there() {
        let (tmp, h) = fake(&["devices"], DEVICE_FILES);
        let unified = tmp.path().join("unified");
        std::fs::create_dir_all(unified.join("ctr")).expect("mkdir");
        std::fs::write(unified.join("ctr/cgroup.max.depth"), "").expect("write");
        let r = resources(serde_json::json!({"unified": {"cgroup.max.depth": "3"}}));
        let mut m = V1Manager::new(h.clone(), Some(unified.clone()), Path::new("/ctr"));
        m.create(&r).expect("created");
        assert_eq!(
            std::fs::read_to_string(unified.join("ctr/cgroup.max.depth")).expect("read"),
            "3"
        );
        let r = resources(serde_json::json!({"unified": {"memory.high": "1048576"}}));
        let mut m = V1Manager::new(h, Some(unified), Path::new("/ctr"));
        let err = m.create(&r).expect_err("memory is on v1").to_string();
        assert_eq!(
            err,
            "linux.resources.unified.\"memory.high\": unified needs cgroup v2, and this hybrid \
             host's cgroup2 mount has no memory.high (its controller is on cgroup v1)"
        );
    }

    #[test]
    fn the_freezer_is_the_v1_freezer_hierarchy_else_the_unified_mount() {
        let (tmp, h) = fake(&["devices", "freezer"], DEVICE_FILES);
        let mut m = V1Manager::new(h, None, Path::new("/ctr"));
        m.create(&resources(serde_json::json!({})))
            .expect("created");
        assert_eq!(
            m.record().freezer,
            Some(Freezer::V1(tmp.path().join("freezer/ctr")))
        );
        // No v1 freezer: cgroup v2's core freezer on the hybrid layout's cgroup2 mount.
        let (tmp, h) = fake(&["devices"], DEVICE_FILES);
        let unified = tmp.path().join("unified");
        std::fs::create_dir(&unified).expect("mkdir");
        let mut m = V1Manager::new(h, Some(unified.clone()), Path::new("/ctr"));
        m.create(&resources(serde_json::json!({})))
            .expect("created");
        assert_eq!(m.record().freezer, Some(Freezer::V2(unified.join("ctr"))));
        let (_tmp, h) = fake(&["devices"], DEVICE_FILES);
        let mut m = V1Manager::new(h, None, Path::new("/ctr"));
        m.create(&resources(serde_json::json!({})))
            .expect("created");
        assert_eq!(m.record().freezer, None);
    }
}
