//! `linux.resources` → plan: every field, and bad input refused with the field named.

use rstest::rstest;
use serde_json::{Value, json};

use super::*;
use crate::cgroups::devices::{DEFAULT_ALLOWED, DeviceRule};

fn host() -> HostLimits {
    HostLimits {
        hugepage_sizes: vec!["2MB".into(), "1GB".into()],
    }
}

fn plan(resources: Value) -> Result<Resources, SpecError> {
    let linux: Linux =
        serde_json::from_value(json!({"resources": resources})).expect("a valid linux section");
    super::resources(&linux, &host())
}

fn refused(resources: Value) -> String {
    plan(resources)
        .expect_err("the input is invalid")
        .to_string()
}

#[test]
fn nothing_configured_is_deny_all_devices_plus_the_defaults() {
    let r = plan(json!({})).expect("valid");
    assert_eq!(r, Resources::default());
    assert_eq!(r.devices, DeviceRules::with_defaults([]));
    assert!(!r.devices.default_allow);
    assert_eq!(r.devices.exceptions, DEFAULT_ALLOWED);
}

#[test]
fn cpu() {
    let r = plan(json!({"cpu": {
        "shares": 512, "quota": 50000, "period": 100000, "burst": 1000,
        "realtimeRuntime": 950, "realtimePeriod": 1000, "idle": 1, "cpus": "0-1", "mems": ""
    }}))
    .expect("valid");
    assert_eq!(
        r.cpu,
        Cpu {
            shares: Some(512),
            quota: Some(50000),
            period: Some(100000),
            burst: Some(1000),
            realtime_runtime: Some(950),
            realtime_period: Some(1000),
            idle: Some(1),
            cpus: Some("0-1".into()),
            // Empty is unset.
            mems: None,
        }
    );
}

#[test]
fn memory() {
    let r = plan(json!({"memory": {
        "limit": 67108864, "reservation": 33554432, "swap": 134217728, "swappiness": 10,
        "kernel": -1, "kernelTCP": 16777216, "disableOOMKiller": true, "useHierarchy": true,
        "checkBeforeUpdate": true
    }, "pids": {"limit": 64}}))
    .expect("valid");
    assert_eq!(
        r.memory,
        Memory {
            limit: Some(67108864),
            reservation: Some(33554432),
            swap: Some(134217728),
            swappiness: Some(10),
            kernel: Some(-1),
            kernel_tcp: Some(16777216),
            disable_oom_killer: Some(true),
            use_hierarchy: Some(true),
        }
    );
    assert_eq!(r.pids_limit, Some(64));
}

#[rstest]
#[case::no_limits(json!({"limit": -1, "swap": -1}))]
#[case::swap_equal_to_limit(json!({"limit": 1048576, "swap": 1048576}))]
#[case::unlimited_swap_over_a_limit(json!({"limit": 1048576, "swap": -1}))]
#[case::swappiness_bounds(json!({"swappiness": 0}))]
#[case::swappiness_top(json!({"swappiness": 100}))]
fn memory_accepted(#[case] memory: Value) {
    plan(json!({"memory": memory})).expect("valid");
}

#[rstest]
#[case::swap_below_limit(json!({"limit": 2097152, "swap": 1048576}), "invalid config: linux.resources.memory.swap: 1048576 is less than memory.limit 2097152 (swap is the limit of memory+swap)")]
#[case::swap_without_limit(json!({"swap": 1048576}), "invalid config: linux.resources.memory.swap: a memory+swap limit needs a memory.limit")]
#[case::swap_over_no_limit(json!({"limit": -1, "swap": 1048576}), "invalid config: linux.resources.memory.swap: a memory+swap limit needs a memory.limit")]
#[case::swappiness_over_100(json!({"swappiness": 101}), "invalid config: linux.resources.memory.swappiness: 101 is not in 0..=100")]
#[case::negative_limit(json!({"limit": -2}), "invalid config: linux.resources.memory.limit: -2 is neither a byte count nor -1 (no limit)")]
#[case::negative_reservation(json!({"reservation": -5}), "invalid config: linux.resources.memory.reservation: -5 is neither a byte count nor -1 (no limit)")]
#[case::negative_kernel_tcp(json!({"kernelTCP": -3}), "invalid config: linux.resources.memory.kernelTCP: -3 is neither a byte count nor -1 (no limit)")]
fn memory_refused(#[case] memory: Value, #[case] error: &str) {
    assert_eq!(refused(json!({"memory": memory})), error);
}

#[test]
fn hugepages_of_the_kernels_sizes() {
    let r = plan(json!({"hugepageLimits": [
        {"pageSize": "2MB", "limit": 4194304}, {"pageSize": "1GB", "limit": -1}
    ]}))
    .expect("valid");
    assert_eq!(
        r.hugepages,
        [
            Hugepage {
                page_size: "2MB".into(),
                limit: 4194304
            },
            Hugepage {
                page_size: "1GB".into(),
                limit: -1
            },
        ]
    );
}

#[rstest]
#[case::unknown_size(json!([{"pageSize": "3MB", "limit": 1}]), "invalid config: linux.resources.hugepageLimits[0].pageSize: \"3MB\" is not a huge page size of this kernel (it has: 2MB, 1GB)")]
#[case::kernel_spelling(json!([{"pageSize": "2048kB", "limit": 1}]), "invalid config: linux.resources.hugepageLimits[0].pageSize: \"2048kB\" is not a huge page size of this kernel (it has: 2MB, 1GB)")]
#[case::path_in_size(json!([{"pageSize": "2MB/../x", "limit": 1}]), "invalid config: linux.resources.hugepageLimits[0].pageSize: \"2MB/../x\" is not a huge page size of this kernel (it has: 2MB, 1GB)")]
#[case::twice(json!([{"pageSize": "2MB", "limit": 1}, {"pageSize": "2MB", "limit": 2}]), "invalid config: linux.resources.hugepageLimits[1].pageSize: 2MB is listed twice")]
#[case::negative(json!([{"pageSize": "1GB", "limit": -7}]), "invalid config: linux.resources.hugepageLimits[0].limit: -7 is neither a byte count nor -1 (no limit)")]
fn hugepages_refused(#[case] limits: Value, #[case] error: &str) {
    assert_eq!(refused(json!({"hugepageLimits": limits})), error);
}

#[test]
fn no_huge_pages_on_the_host_says_so() {
    let linux: Linux = serde_json::from_value(
        json!({"resources": {"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}}),
    )
    .expect("valid");
    let err = super::resources(&linux, &HostLimits::default()).expect_err("no sizes");
    assert!(err.to_string().ends_with("(it has: none)"), "{err}");
}

#[rstest]
#[case::kb(64, "64KB")]
#[case::mb(2048, "2MB")]
#[case::gb(1_048_576, "1GB")]
#[case::odd(1536, "1536KB")]
fn hugepage_sizes_are_named_like_the_cgroup_files(#[case] kb: u64, #[case] name: &str) {
    assert_eq!(hugepage_size_name(kb), name);
}

#[test]
fn block_io() {
    let r = plan(json!({"blockIO": {
        "weight": 500, "leafWeight": 300,
        "weightDevice": [{"major": 8, "minor": 0, "weight": 600}, {"major": 8, "minor": 16, "leafWeight": 20}],
        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
        "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2097152}],
        "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}],
        "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 200}]
    }}))
    .expect("valid");
    let t = |rate| {
        vec![ThrottleDevice {
            major: 8,
            minor: 0,
            rate,
        }]
    };
    assert_eq!(
        r.block_io,
        BlockIo {
            weight: Some(500),
            leaf_weight: Some(300),
            weight_device: vec![
                WeightDevice {
                    major: 8,
                    minor: 0,
                    weight: Some(600),
                    leaf_weight: None
                },
                WeightDevice {
                    major: 8,
                    minor: 16,
                    weight: None,
                    leaf_weight: Some(20)
                },
            ],
            throttle_read_bps: t(1048576),
            throttle_write_bps: t(2097152),
            throttle_read_iops: t(100),
            throttle_write_iops: t(200),
        }
    );
}

#[rstest]
#[case::weight_low(json!({"weight": 9}), "invalid config: linux.resources.blockIO.weight: 9 is not in 10..=1000")]
#[case::leaf_high(json!({"leafWeight": 1001}), "invalid config: linux.resources.blockIO.leafWeight: 1001 is not in 10..=1000")]
#[case::device_without_weight(json!({"weightDevice": [{"major": 8, "minor": 0}]}), "invalid config: linux.resources.blockIO.weightDevice[0]: has neither weight nor leafWeight")]
#[case::device_weight_low(json!({"weightDevice": [{"major": 8, "minor": 0, "weight": 1}]}), "invalid config: linux.resources.blockIO.weightDevice[0].weight: 1 is not in 10..=1000")]
#[case::negative_major(json!({"throttleReadBpsDevice": [{"major": -1, "minor": 0, "rate": 1}]}), "invalid config: linux.resources.blockIO.throttleReadBpsDevice[0].major: -1 is not a device number (0..=4095)")]
#[case::huge_minor(json!({"throttleWriteIOPSDevice": [{"major": 8, "minor": 1048576, "rate": 1}]}), "invalid config: linux.resources.blockIO.throttleWriteIOPSDevice[0].minor: 1048576 is not a device number (0..=1048575)")]
fn block_io_refused(#[case] block_io: Value, #[case] error: &str) {
    assert_eq!(refused(json!({"blockIO": block_io})), error);
}

#[test]
fn network_rdma_and_unified() {
    let r = plan(json!({
        "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]},
        "rdma": {"mlx5_1": {"hcaHandles": 3}, "mlx4_0": {"hcaHandles": 2, "hcaObjects": 2000}},
        "unified": {"memory.high": "1048576", "cgroup.max.depth": "2", "io.latency": "8:0 target=10"}
    }))
    .expect("valid");
    assert_eq!(
        r.network,
        Network {
            class_id: Some(1048577),
            priorities: vec![("eth0".into(), 5)]
        }
    );
    // Sorted by device, and by file: the same order every time.
    assert_eq!(
        r.rdma,
        [
            Rdma {
                device: "mlx4_0".into(),
                hca_handles: Some(2),
                hca_objects: Some(2000)
            },
            Rdma {
                device: "mlx5_1".into(),
                hca_handles: Some(3),
                hca_objects: None
            },
        ]
    );
    let keys: Vec<&str> = r.unified.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["cgroup.max.depth", "io.latency", "memory.high"]);
}

#[rstest]
#[case::dotdot_path(json!({"unified": {"../x": "1"}}), "invalid config: linux.resources.unified.\"../x\": not the name of a cgroup v2 interface file (<controller>.<name>, no path)")]
#[case::path_after_a_name(json!({"unified": {"memory.high/../../x": "1"}}), "invalid config: linux.resources.unified.\"memory.high/../../x\": not the name of a cgroup v2 interface file (<controller>.<name>, no path)")]
#[case::absolute(json!({"unified": {"/etc/passwd": "1"}}), "invalid config: linux.resources.unified.\"/etc/passwd\": not the name of a cgroup v2 interface file (<controller>.<name>, no path)")]
#[case::no_controller(json!({"unified": {"high": "1"}}), "invalid config: linux.resources.unified.\"high\": not the name of a cgroup v2 interface file (<controller>.<name>, no path)")]
#[case::procs(json!({"unified": {"cgroup.procs": "1"}}), "invalid config: linux.resources.unified.\"cgroup.procs\": not a resource: the runtime manages this file (placement, freezing, the tree)")]
#[case::kill(json!({"unified": {"cgroup.kill": "1"}}), "invalid config: linux.resources.unified.\"cgroup.kill\": not a resource: the runtime manages this file (placement, freezing, the tree)")]
#[case::hidden(json!({"unified": {".x": "1"}}), "invalid config: linux.resources.unified.\".x\": not the name of a cgroup v2 interface file (<controller>.<name>, no path)")]
#[case::rdma_device_with_space(json!({"rdma": {"a b": {"hcaHandles": 1}}}), "invalid config: linux.resources.rdma.\"a b\": not an RDMA device name")]
#[case::rdma_without_limits(json!({"rdma": {"mlx4_0": {}}}), "invalid config: linux.resources.rdma.\"mlx4_0\": has neither hcaHandles nor hcaObjects")]
#[case::priority_without_name(json!({"network": {"priorities": [{"name": "", "priority": 1}]}}), "invalid config: linux.resources.network.priorities[0].name: \"\" is not an interface name")]
#[case::cpu_idle(json!({"cpu": {"idle": 2}}), "invalid config: linux.resources.cpu.idle: 2 is neither 0 nor 1")]
fn other_resources_refused(#[case] resources: Value, #[case] error: &str) {
    assert_eq!(refused(resources), error);
}

fn device(
    allow: bool,
    kind: DevKind,
    major: Option<u32>,
    minor: Option<u32>,
    access: u8,
) -> DeviceRule {
    DeviceRule {
        allow,
        kind,
        major,
        minor,
        access,
    }
}

#[test]
fn device_rules_go_in_config_order_before_the_defaults() {
    let r = plan(json!({"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 10, "minor": 237, "access": "rw"},
        {"allow": true, "type": "b", "major": 8, "minor": -1, "access": "r"},
        // `u` is a character device to the cgroup.
        {"allow": true, "type": "u", "major": 10, "minor": 200}
    ]}))
    .expect("valid");
    let rules = [
        device(false, DevKind::All, None, None, DeviceRule::RWM),
        device(true, DevKind::Char, Some(10), Some(237), 6),
        device(true, DevKind::Block, Some(8), None, 2),
        device(true, DevKind::Char, Some(10), Some(200), DeviceRule::RWM),
    ];
    assert_eq!(r.devices, DeviceRules::with_defaults(rules));
    assert_eq!(r.devices.exceptions[..3], rules[1..]);
}

#[rstest]
#[case::empty_access(json!([{"allow": true, "type": "c", "major": 1, "minor": 3, "access": ""}]), "invalid config: linux.resources.devices[0].access: \"\" is not a non-empty combination of r, w and m")]
#[case::bad_access(json!([{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rx"}]), "invalid config: linux.resources.devices[0].access: \"rx\" is not a non-empty combination of r, w and m")]
#[case::fifo(json!([{"allow": true, "type": "p"}]), "invalid config: linux.resources.devices[0].type: p (fifo) is not governed by the device cgroup")]
#[case::all_with_a_major(json!([{"allow": true, "major": 10, "minor": 200, "access": "rwm"}]), "invalid config: linux.resources.devices[0]: a rule for all devices (type a or none) cannot name a major, a minor or partial access; give a type (c or b)")]
#[case::all_read_only(json!([{"allow": false, "type": "a", "access": "r"}]), "invalid config: linux.resources.devices[0]: a rule for all devices (type a or none) cannot name a major, a minor or partial access; give a type (c or b)")]
#[case::negative_major(json!([{"allow": true, "type": "c", "major": -2, "minor": 1}]), "invalid config: linux.resources.devices[0].major: -2 is not a device number (0..=4095)")]
#[case::minor_too_big(json!([{"allow": true, "type": "c", "major": 1, "minor": 2000000}]), "invalid config: linux.resources.devices[0].minor: 2000000 is not a device number (0..=1048575)")]
fn device_rules_refused(#[case] devices: Value, #[case] error: &str) {
    assert_eq!(refused(json!({"devices": devices})), error);
}

#[test]
fn intel_rdt_is_refused() {
    let linux: Linux = serde_json::from_value(json!({"intelRdt": {"closID": "x"}})).expect("valid");
    assert_eq!(
        super::resources(&linux, &host())
            .expect_err("refused")
            .to_string(),
        "linux.intelRdt is not supported by palisade-runtime"
    );
}
