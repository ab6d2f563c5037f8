//! Pure cgroup v2.

use std::path::{Path, PathBuf};

use super::{CgroupError, CgroupManager, CgroupRecord, Freezer, Write, devices, refused, write};
use crate::spec::{Resources, ThrottleDevice};

pub struct V2Manager {
    root: PathBuf,
    rel: PathBuf,
    record: CgroupRecord,
}

impl V2Manager {
    pub fn new(root: &Path, rel: &Path) -> Self {
        Self {
            root: root.to_owned(),
            rel: rel.to_owned(),
            record: CgroupRecord::default(),
        }
    }
}

/// cgroup v1 `cpu.shares` (2..262144) to v2 `cpu.weight` (1..10000), the conversion runc uses.
fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 100;
    }
    1 + (shares.saturating_sub(2) * 9999) / 262_142
}

/// A blkio weight (10..1000) as `io.weight` (1..10000), the conversion runc uses.
fn blkio_to_io_weight(weight: u16) -> u64 {
    1 + (u64::from(weight).saturating_sub(10) * 9999) / 990
}

/// A byte limit as v2 spells it: -1 is "max".
fn bytes(v: i64) -> String {
    if v == -1 {
        "max".to_owned()
    } else {
        v.to_string()
    }
}

const R: &str = "linux.resources";

/// What v2 has no counterpart for.
fn no_v2(field: &str, what: &str) -> CgroupError {
    refused(
        &format!("{R}.{field}"),
        format!("cgroup v2 has no {what}; refused rather than ignored"),
    )
}

fn throttle_writes(out: &mut Vec<Write>, list: &[ThrottleDevice], field: &str, key: &str) {
    for (i, t) in list.iter().enumerate() {
        out.push(Write::new(
            &format!("{R}.blockIO.{field}[{i}]"),
            "io",
            "io.max",
            format!("{}:{} {key}={}", t.major, t.minor, t.rate),
        ));
    }
}

/// Every v2 file to write for `r`, in order (the device rules aside: they are a BPF program),
/// or the first field v2 cannot express.
pub fn writes(r: &Resources) -> Result<Vec<Write>, CgroupError> {
    let mut w = Vec::new();
    let c = &r.cpu;
    if c.quota.is_some() || c.period.is_some() {
        let period = c.period.unwrap_or(100_000);
        let quota = match c.quota {
            Some(q) if q > 0 => q.to_string(),
            _ => "max".into(),
        };
        let field = if c.quota.is_some() { "quota" } else { "period" };
        w.push(Write::new(
            &format!("{R}.cpu.{field}"),
            "cpu",
            "cpu.max",
            format!("{quota} {period}"),
        ));
    }
    if let Some(b) = c.burst {
        w.push(Write::new(
            &format!("{R}.cpu.burst"),
            "cpu",
            "cpu.max.burst",
            b,
        ));
    }
    if let Some(s) = c.shares {
        w.push(Write::new(
            &format!("{R}.cpu.shares"),
            "cpu",
            "cpu.weight",
            shares_to_weight(s),
        ));
    }
    if let Some(idle) = c.idle {
        w.push(Write::new(
            &format!("{R}.cpu.idle"),
            "cpu",
            "cpu.idle",
            idle,
        ));
    }
    if c.realtime_runtime.is_some() {
        return Err(no_v2("cpu.realtimeRuntime", "real-time CPU bandwidth"));
    }
    if c.realtime_period.is_some() {
        return Err(no_v2("cpu.realtimePeriod", "real-time CPU bandwidth"));
    }
    w.extend(super::cpuset_writes(c));

    let m = &r.memory;
    let mem = |field: &str, file: &str, value: String| {
        Write::new(&format!("{R}.memory.{field}"), "memory", file, value)
    };
    if let Some(l) = m.limit {
        w.push(mem("limit", "memory.max", bytes(l)));
    }
    if let Some(s) = m.swap {
        // v1's swap is memory+swap; v2 limits swap alone. The plan made sure a finite swap
        // comes with a finite limit no larger than it.
        let value = match (s, m.limit) {
            (-1, _) => "max".to_owned(),
            (s, Some(l)) => (s - l).to_string(),
            (s, None) => s.to_string(),
        };
        let write = mem("swap", "memory.swap.max", value);
        // Without swap accounting there is no file; "no limit" needs nothing then.
        w.push(if s == -1 { write.if_present() } else { write });
    }
    if let Some(v) = m.reservation {
        w.push(mem("reservation", "memory.low", bytes(v)));
    }
    if m.swappiness.is_some() {
        return Err(no_v2("memory.swappiness", "per-cgroup swappiness"));
    }
    if m.kernel.is_some() {
        return Err(no_v2("memory.kernel", "kernel memory limit"));
    }
    if m.kernel_tcp.is_some() {
        return Err(no_v2("memory.kernelTCP", "kernel TCP buffer limit"));
    }
    // The defaults (OOM killer on, hierarchical accounting) are all v2 has.
    if m.disable_oom_killer == Some(true) {
        return Err(no_v2(
            "memory.disableOOMKiller",
            "way to disable the OOM killer",
        ));
    }
    if m.use_hierarchy == Some(false) {
        return Err(no_v2(
            "memory.useHierarchy",
            "non-hierarchical accounting (it is always hierarchical)",
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
            &format!("hugetlb.{size}.max"),
            bytes(h.limit),
        ));
        w.push(
            Write::new(
                &field,
                "hugetlb",
                &format!("hugetlb.{size}.rsvd.max"),
                bytes(h.limit),
            )
            .if_present(),
        );
    }

    let b = &r.block_io;
    // BFQ's weight takes the v1 range as it is; io.weight (1..10000) a conversion.
    if let Some(v) = b.weight {
        w.push(
            Write::new(&format!("{R}.blockIO.weight"), "io", "io.bfq.weight", v)
                .or("io.weight", blkio_to_io_weight(v)),
        );
    }
    if b.leaf_weight.is_some() {
        return Err(no_v2("blockIO.leafWeight", "leaf weight"));
    }
    for (i, d) in b.weight_device.iter().enumerate() {
        let field = format!("{R}.blockIO.weightDevice[{i}]");
        if d.leaf_weight.is_some() {
            return Err(no_v2(
                &format!("blockIO.weightDevice[{i}].leafWeight"),
                "leaf weight",
            ));
        }
        if let Some(v) = d.weight {
            let dev = format!("{}:{}", d.major, d.minor);
            w.push(
                Write::new(
                    &format!("{field}.weight"),
                    "io",
                    "io.bfq.weight",
                    format!("{dev} {v}"),
                )
                .or("io.weight", format!("{dev} {}", blkio_to_io_weight(v))),
            );
        }
    }
    throttle_writes(
        &mut w,
        &b.throttle_read_bps,
        "throttleReadBpsDevice",
        "rbps",
    );
    throttle_writes(
        &mut w,
        &b.throttle_write_bps,
        "throttleWriteBpsDevice",
        "wbps",
    );
    throttle_writes(
        &mut w,
        &b.throttle_read_iops,
        "throttleReadIOPSDevice",
        "riops",
    );
    throttle_writes(
        &mut w,
        &b.throttle_write_iops,
        "throttleWriteIOPSDevice",
        "wiops",
    );

    if r.network.class_id.is_some() {
        return Err(no_v2("network.classID", "net_cls controller"));
    }
    if !r.network.priorities.is_empty() {
        return Err(no_v2("network.priorities", "net_prio controller"));
    }

    for rdma in &r.rdma {
        w.push(Write::new(
            &format!("{R}.rdma.{:?}", rdma.device),
            "rdma",
            "rdma.max",
            super::rdma_line(rdma),
        ));
    }

    // Last, so that they may refine what the typed fields wrote (as runc).
    for (key, value) in &r.unified {
        let controller = key.split_once('.').map(|(c, _)| c).unwrap_or_default();
        w.push(Write::new(
            &format!("{R}.unified.{key:?}"),
            controller,
            key,
            value,
        ));
    }
    Ok(w)
}

impl CgroupManager for V2Manager {
    fn create(&mut self, r: &Resources) -> Result<(), CgroupError> {
        let writes = writes(r)?;
        let available =
            std::fs::read_to_string(self.root.join("cgroup.controllers")).unwrap_or_default();
        let available: Vec<&str> = available.split_whitespace().collect();
        let mut controllers: Vec<&str> = Vec::new();
        for w in &writes {
            let c = w.controller.as_str();
            if c == "cgroup" || controllers.contains(&c) {
                continue;
            }
            if !available.contains(&c) {
                return Err(refused(
                    &w.field,
                    format!(
                        "the {c} controller is not available in this host's cgroup v2 \
                         (cgroup.controllers: {})",
                        available.join(" ")
                    ),
                ));
            }
            controllers.push(c);
        }
        let enable: String = controllers
            .iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(" ");
        // Controllers must be enabled in every ancestor's subtree_control before the leaf has them.
        let mut dir = self.root.clone();
        for comp in self
            .rel
            .components()
            .filter(|c| matches!(c, std::path::Component::Normal(_)))
        {
            if !enable.is_empty() {
                write(&dir, "cgroup.subtree_control", &enable)?;
            }
            dir.push(comp);
            match std::fs::create_dir(&dir) {
                Ok(()) => self.record.created.push(dir.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(source) => return Err(CgroupError::Create { path: dir, source }),
            }
        }
        self.record.paths.push(dir.clone());
        self.record.freezer = Some(Freezer::V2(dir.clone()));
        for w in &writes {
            w.apply(&dir)?;
        }
        devices::attach(&dir, &r.devices)
    }

    fn record(&self) -> &CgroupRecord {
        &self.record
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;
    use crate::spec::HostLimits;

    fn resources(value: serde_json::Value) -> Resources {
        let linux: oci_spec::runtime::Linux =
            serde_json::from_value(serde_json::json!({ "resources": value })).expect("valid");
        let host = HostLimits {
            hugepage_sizes: vec!["2MB".into()],
        };
        crate::spec::resources_for_tests(&linux, &host).expect("a valid plan")
    }

    fn choices(value: serde_json::Value) -> Vec<Vec<(String, String)>> {
        writes(&resources(value))
            .expect("v2 can")
            .into_iter()
            .map(|w| w.choices)
            .collect()
    }

    fn one(file: &str, value: &str) -> Vec<(String, String)> {
        vec![(file.to_owned(), value.to_owned())]
    }

    #[rstest]
    #[case::limit_and_swap(serde_json::json!({"memory": {"limit": 1048576, "swap": 3145728}}),
        vec![one("memory.max", "1048576"), one("memory.swap.max", "2097152")])]
    #[case::swap_equal_to_limit_is_no_swap(serde_json::json!({"memory": {"limit": 1048576, "swap": 1048576}}),
        vec![one("memory.max", "1048576"), one("memory.swap.max", "0")])]
    #[case::no_limits(serde_json::json!({"memory": {"limit": -1, "swap": -1, "reservation": -1}}),
        vec![one("memory.max", "max"), one("memory.swap.max", "max"), one("memory.low", "max")])]
    #[case::reservation(serde_json::json!({"memory": {"reservation": 33554432, "useHierarchy": true, "disableOOMKiller": false}}),
        vec![one("memory.low", "33554432")])]
    #[case::cpu(serde_json::json!({"cpu": {"quota": 50000, "period": 100000, "burst": 1000, "shares": 1024, "idle": 1}}),
        vec![one("cpu.max", "50000 100000"), one("cpu.max.burst", "1000"), one("cpu.weight", "39"), one("cpu.idle", "1")])]
    #[case::hugepages(serde_json::json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}),
        vec![one("hugetlb.2MB.max", "4194304"), one("hugetlb.2MB.rsvd.max", "4194304")])]
    #[case::io(serde_json::json!({"blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 1000}],
                                              "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                                              "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 20}]}}),
        vec![
            vec![("io.bfq.weight".to_owned(), "500".to_owned()), ("io.weight".to_owned(), "4950".to_owned())],
            vec![("io.bfq.weight".to_owned(), "8:0 1000".to_owned()), ("io.weight".to_owned(), "8:0 10000".to_owned())],
            one("io.max", "8:0 rbps=1048576"),
            one("io.max", "8:16 wiops=20"),
        ])]
    #[case::rdma(serde_json::json!({"rdma": {"mlx4_0": {"hcaHandles": 2, "hcaObjects": 2000}}}),
        vec![one("rdma.max", "mlx4_0 hca_handle=2 hca_object=2000")])]
    // Last, after what they may refine.
    #[case::unified(serde_json::json!({"pids": {"limit": 10}, "unified": {"pids.max": "20", "memory.high": "max"}}),
        vec![one("pids.max", "10"), one("memory.high", "max"), one("pids.max", "20")])]
    fn applied(#[case] value: serde_json::Value, #[case] expected: Vec<Vec<(String, String)>>) {
        assert_eq!(choices(value), expected);
    }

    #[rstest]
    #[case::swappiness(serde_json::json!({"memory": {"swappiness": 10}}), "linux.resources.memory.swappiness: cgroup v2 has no per-cgroup swappiness; refused rather than ignored")]
    #[case::kernel(serde_json::json!({"memory": {"kernel": 1048576}}), "linux.resources.memory.kernel: cgroup v2 has no kernel memory limit; refused rather than ignored")]
    #[case::kernel_tcp(serde_json::json!({"memory": {"kernelTCP": 1048576}}), "linux.resources.memory.kernelTCP: cgroup v2 has no kernel TCP buffer limit; refused rather than ignored")]
    #[case::oom_killer(serde_json::json!({"memory": {"disableOOMKiller": true}}), "linux.resources.memory.disableOOMKiller: cgroup v2 has no way to disable the OOM killer; refused rather than ignored")]
    #[case::hierarchy(serde_json::json!({"memory": {"useHierarchy": false}}), "linux.resources.memory.useHierarchy: cgroup v2 has no non-hierarchical accounting (it is always hierarchical); refused rather than ignored")]
    #[case::realtime(serde_json::json!({"cpu": {"realtimeRuntime": 1000}}), "linux.resources.cpu.realtimeRuntime: cgroup v2 has no real-time CPU bandwidth; refused rather than ignored")]
    #[case::leaf_weight(serde_json::json!({"blockIO": {"leafWeight": 100}}), "linux.resources.blockIO.leafWeight: cgroup v2 has no leaf weight; refused rather than ignored")]
    #[case::class_id(serde_json::json!({"network": {"classID": 1}}), "linux.resources.network.classID: cgroup v2 has no net_cls controller; refused rather than ignored")]
    #[case::priorities(serde_json::json!({"network": {"priorities": [{"name": "eth0", "priority": 1}]}}), "linux.resources.network.priorities: cgroup v2 has no net_prio controller; refused rather than ignored")]
    fn refused(#[case] value: serde_json::Value, #[case] error: &str) {
        assert_eq!(
            writes(&resources(value))
                .expect_err("v2 cannot")
                .to_string(),
            error
        );
    }

    #[test]
    fn an_unavailable_controller_is_refused_before_anything_is_made() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(tmp.path().join("cgroup.controllers"), "cpu memory pids\n").expect("write");
        let mut m = V2Manager::new(tmp.path(), Path::new("/ctr"));
        let r = resources(serde_json::json!({"memory": {"limit": 1048576},
                                             "hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}));
        let err = m.create(&r).expect_err("no hugetlb").to_string();
        assert_eq!(
            err,
            "linux.resources.hugepageLimits[0].limit: the hugetlb controller is not available in \
             this host's cgroup v2 (cgroup.controllers: cpu memory pids)"
        );
        assert!(!tmp.path().join("ctr").exists());
        // A unified key names its controller too.
        let r = resources(serde_json::json!({"unified": {"misc.max": "x 1"}}));
        let err = m.create(&r).expect_err("no misc").to_string();
        assert!(
            err.starts_with(
                "linux.resources.unified.\"misc.max\": the misc controller is not available"
            ),
            "{err}"
        );
    }
}
