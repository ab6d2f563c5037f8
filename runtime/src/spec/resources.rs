//! `linux.resources` → [`Resources`]: every field, validated here as far as it can be without the
//! kernel. Whether the cgroup layout can apply a field (swappiness on v2, net_cls on v2, …) is
//! decided by the cgroup managers, which refuse what they cannot apply, naming the field.

use std::collections::BTreeMap;

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory, LinuxResources,
    LinuxThrottleDevice,
};

use super::{Linux, SpecError, invalid};
use crate::cgroups::devices::{DevKind, DeviceRule, DeviceRules};

/// The largest major and minor device numbers (Linux's dev_t: 12 and 20 bits).
const MAX_MAJOR: i64 = (1 << 12) - 1;
const MAX_MINOR: i64 = (1 << 20) - 1;

/// What the kernel offers that the plan depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostLimits {
    /// Huge page sizes, as cgroup files name them (`2MB`, `1GB`).
    pub hugepage_sizes: Vec<String>,
}

impl HostLimits {
    pub fn detect() -> Self {
        let mut kb: Vec<u64> = std::fs::read_dir("/sys/kernel/mm/hugepages")
            .map(|dir| {
                dir.flatten()
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        name.strip_prefix("hugepages-")?
                            .strip_suffix("kB")?
                            .parse()
                            .ok()
                    })
                    .collect()
            })
            .unwrap_or_default();
        kb.sort_unstable();
        Self {
            hugepage_sizes: kb.into_iter().map(hugepage_size_name).collect(),
        }
    }
}

/// A huge page size in kB as the hugetlb controller names it (2048 → `2MB`, 64 → `64KB`).
pub fn hugepage_size_name(kb: u64) -> String {
    let mut n = kb;
    let mut unit = 0;
    const UNITS: [&str; 5] = ["KB", "MB", "GB", "TB", "PB"];
    while n >= 1024 && n.is_multiple_of(1024) && unit + 1 < UNITS.len() {
        n /= 1024;
        unit += 1;
    }
    format!("{n}{}", UNITS[unit])
}

/// `linux.resources.cpu`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cpu {
    pub shares: Option<u64>,
    pub quota: Option<i64>,
    pub period: Option<u64>,
    pub burst: Option<u64>,
    pub realtime_runtime: Option<i64>,
    pub realtime_period: Option<u64>,
    pub idle: Option<i64>,
    pub cpus: Option<String>,
    pub mems: Option<String>,
}

/// `linux.resources.memory`, in bytes; -1 is "no limit".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    pub limit: Option<i64>,
    pub reservation: Option<i64>,
    /// Memory plus swap (v1's meaning; the v2 manager converts it).
    pub swap: Option<i64>,
    pub swappiness: Option<u64>,
    pub kernel: Option<i64>,
    pub kernel_tcp: Option<i64>,
    pub disable_oom_killer: Option<bool>,
    pub use_hierarchy: Option<bool>,
}

/// One entry of `linux.resources.hugepageLimits`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hugepage {
    /// As the kernel names it (`2MB`).
    pub page_size: String,
    /// Bytes; -1 is "no limit".
    pub limit: i64,
}

/// One entry of `blockIO.weightDevice`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightDevice {
    pub major: u32,
    pub minor: u32,
    pub weight: Option<u16>,
    pub leaf_weight: Option<u16>,
}

/// One entry of a `blockIO.throttle*Device` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleDevice {
    pub major: u32,
    pub minor: u32,
    pub rate: u64,
}

/// `linux.resources.blockIO`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockIo {
    pub weight: Option<u16>,
    pub leaf_weight: Option<u16>,
    pub weight_device: Vec<WeightDevice>,
    pub throttle_read_bps: Vec<ThrottleDevice>,
    pub throttle_write_bps: Vec<ThrottleDevice>,
    pub throttle_read_iops: Vec<ThrottleDevice>,
    pub throttle_write_iops: Vec<ThrottleDevice>,
}

/// `linux.resources.network` (v1 net_cls/net_prio).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Network {
    pub class_id: Option<u32>,
    /// (interface, priority), in config order.
    pub priorities: Vec<(String, u32)>,
}

/// One entry of `linux.resources.rdma`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rdma {
    pub device: String,
    pub hca_handles: Option<u32>,
    pub hca_objects: Option<u32>,
}

/// Cgroup resources, validated; the cgroup managers apply every one of them or refuse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu: Cpu,
    pub memory: Memory,
    pub pids_limit: Option<i64>,
    pub hugepages: Vec<Hugepage>,
    pub block_io: BlockIo,
    pub network: Network,
    pub rdma: Vec<Rdma>,
    /// `unified` (cgroup v2 file → value), sorted by file.
    pub unified: Vec<(String, String)>,
    /// The device cgroup: the config's rules, then the runtime's defaults.
    pub devices: DeviceRules,
}

const FIELD: &str = "linux.resources";

/// `linux.resources`.
pub fn resources(linux: &Linux, host: &HostLimits) -> Result<Resources, SpecError> {
    // Cache and memory-bandwidth allocation (resctrl) is a resource too, one this runtime lacks.
    if linux.intel_rdt().is_some() {
        return Err(SpecError::Unsupported("linux.intelRdt".into()));
    }
    let Some(r) = linux.resources() else {
        return Ok(Resources::default());
    };
    Ok(Resources {
        cpu: r.cpu().as_ref().map(cpu).transpose()?.unwrap_or_default(),
        memory: r
            .memory()
            .as_ref()
            .map(memory)
            .transpose()?
            .unwrap_or_default(),
        pids_limit: r.pids().as_ref().map(|p| p.limit()),
        hugepages: hugepages(r, host)?,
        block_io: r
            .block_io()
            .as_ref()
            .map(block_io)
            .transpose()?
            .unwrap_or_default(),
        network: network(r)?,
        rdma: rdma(r)?,
        unified: unified(r)?,
        devices: devices(r.devices().as_deref().unwrap_or_default())?,
    })
}

fn cpu(c: &LinuxCpu) -> Result<Cpu, SpecError> {
    if let Some(idle) = c.idle()
        && !(0..=1).contains(&idle)
    {
        return Err(invalid(
            format!("{FIELD}.cpu.idle"),
            format!("{idle} is neither 0 nor 1"),
        ));
    }
    Ok(Cpu {
        shares: c.shares(),
        quota: c.quota(),
        period: c.period(),
        burst: c.burst(),
        realtime_runtime: c.realtime_runtime(),
        realtime_period: c.realtime_period(),
        idle: c.idle(),
        cpus: c.cpus().clone().filter(|s| !s.is_empty()),
        mems: c.mems().clone().filter(|s| !s.is_empty()),
    })
}

/// A byte limit: a count, or -1 for none.
fn limit(value: Option<i64>, field: &str) -> Result<Option<i64>, SpecError> {
    match value {
        Some(v) if v < -1 => Err(invalid(
            format!("{FIELD}.memory.{field}"),
            format!("{v} is neither a byte count nor -1 (no limit)"),
        )),
        v => Ok(v),
    }
}

fn memory(m: &LinuxMemory) -> Result<Memory, SpecError> {
    let plan = Memory {
        limit: limit(m.limit(), "limit")?,
        reservation: limit(m.reservation(), "reservation")?,
        swap: limit(m.swap(), "swap")?,
        swappiness: m.swappiness(),
        kernel: limit(m.kernel(), "kernel")?,
        kernel_tcp: limit(m.kernel_tcp(), "kernelTCP")?,
        disable_oom_killer: m.disable_oom_killer(),
        use_hierarchy: m.use_hierarchy(),
    };
    if let Some(s) = plan.swappiness
        && s > 100
    {
        return Err(invalid(
            format!("{FIELD}.memory.swappiness"),
            format!("{s} is not in 0..=100"),
        ));
    }
    // `swap` is memory+swap: a finite one needs a finite limit no larger than it.
    if let Some(swap) = plan.swap
        && swap != -1
    {
        match plan.limit {
            Some(limit) if limit != -1 && swap >= limit => {}
            Some(limit) if limit != -1 => {
                return Err(invalid(
                    format!("{FIELD}.memory.swap"),
                    format!(
                        "{swap} is less than memory.limit {limit} (swap is the limit of memory+swap)"
                    ),
                ));
            }
            _ => {
                return Err(invalid(
                    format!("{FIELD}.memory.swap"),
                    "a memory+swap limit needs a memory.limit",
                ));
            }
        }
    }
    Ok(plan)
}

fn hugepages(r: &LinuxResources, host: &HostLimits) -> Result<Vec<Hugepage>, SpecError> {
    let mut plans: Vec<Hugepage> = Vec::new();
    for (i, h) in r.hugepage_limits().iter().flatten().enumerate() {
        let field = format!("{FIELD}.hugepageLimits[{i}]");
        let size = h.page_size();
        if !host.hugepage_sizes.iter().any(|s| s == size) {
            return Err(invalid(
                format!("{field}.pageSize"),
                format!(
                    "{size:?} is not a huge page size of this kernel (it has: {})",
                    if host.hugepage_sizes.is_empty() {
                        "none".to_owned()
                    } else {
                        host.hugepage_sizes.join(", ")
                    }
                ),
            ));
        }
        if plans.iter().any(|p| p.page_size == *size) {
            return Err(invalid(
                format!("{field}.pageSize"),
                format!("{size} is listed twice"),
            ));
        }
        if h.limit() < -1 {
            return Err(invalid(
                format!("{field}.limit"),
                format!("{} is neither a byte count nor -1 (no limit)", h.limit()),
            ));
        }
        plans.push(Hugepage {
            page_size: size.clone(),
            limit: h.limit(),
        });
    }
    Ok(plans)
}

/// A device number of a block device (no wildcard).
fn device_number(value: i64, max: i64, field: &str) -> Result<u32, SpecError> {
    if (0..=max).contains(&value) {
        Ok(value as u32)
    } else {
        Err(invalid(
            field,
            format!("{value} is not a device number (0..={max})"),
        ))
    }
}

/// A blkio weight, 10..=1000 (the spec's range).
fn weight(value: Option<u16>, field: &str) -> Result<Option<u16>, SpecError> {
    match value {
        Some(w) if !(10..=1000).contains(&w) => {
            Err(invalid(field, format!("{w} is not in 10..=1000")))
        }
        w => Ok(w),
    }
}

fn throttles(
    list: &Option<Vec<LinuxThrottleDevice>>,
    name: &str,
) -> Result<Vec<ThrottleDevice>, SpecError> {
    list.iter()
        .flatten()
        .enumerate()
        .map(|(i, t)| {
            let field = format!("{FIELD}.blockIO.{name}[{i}]");
            Ok(ThrottleDevice {
                major: device_number(t.major(), MAX_MAJOR, &format!("{field}.major"))?,
                minor: device_number(t.minor(), MAX_MINOR, &format!("{field}.minor"))?,
                rate: t.rate(),
            })
        })
        .collect()
}

fn block_io(b: &LinuxBlockIo) -> Result<BlockIo, SpecError> {
    let weight_device = b
        .weight_device()
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, d)| {
            let field = format!("{FIELD}.blockIO.weightDevice[{i}]");
            if d.weight().is_none() && d.leaf_weight().is_none() {
                return Err(invalid(field, "has neither weight nor leafWeight"));
            }
            Ok(WeightDevice {
                major: device_number(d.major(), MAX_MAJOR, &format!("{field}.major"))?,
                minor: device_number(d.minor(), MAX_MINOR, &format!("{field}.minor"))?,
                weight: weight(d.weight(), &format!("{field}.weight"))?,
                leaf_weight: weight(d.leaf_weight(), &format!("{field}.leafWeight"))?,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(BlockIo {
        weight: weight(b.weight(), &format!("{FIELD}.blockIO.weight"))?,
        leaf_weight: weight(b.leaf_weight(), &format!("{FIELD}.blockIO.leafWeight"))?,
        weight_device,
        throttle_read_bps: throttles(b.throttle_read_bps_device(), "throttleReadBpsDevice")?,
        throttle_write_bps: throttles(b.throttle_write_bps_device(), "throttleWriteBpsDevice")?,
        throttle_read_iops: throttles(b.throttle_read_iops_device(), "throttleReadIOPSDevice")?,
        throttle_write_iops: throttles(b.throttle_write_iops_device(), "throttleWriteIOPSDevice")?,
    })
}

/// A name written into a cgroup file as one word of a line.
fn is_word(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '\0')
}

fn network(r: &LinuxResources) -> Result<Network, SpecError> {
    let Some(n) = r.network() else {
        return Ok(Network::default());
    };
    let priorities = n
        .priorities()
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, p)| {
            if is_word(p.name()) {
                Ok((p.name().clone(), p.priority()))
            } else {
                Err(invalid(
                    format!("{FIELD}.network.priorities[{i}].name"),
                    format!("{:?} is not an interface name", p.name()),
                ))
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(Network {
        class_id: n.class_id(),
        priorities,
    })
}

fn rdma(r: &LinuxResources) -> Result<Vec<Rdma>, SpecError> {
    let sorted: BTreeMap<_, _> = r.rdma().iter().flatten().collect();
    sorted
        .into_iter()
        .map(|(device, limits)| {
            let field = format!("{FIELD}.rdma.{device:?}");
            if !is_word(device) {
                return Err(invalid(field, "not an RDMA device name"));
            }
            if limits.hca_handles().is_none() && limits.hca_objects().is_none() {
                return Err(invalid(field, "has neither hcaHandles nor hcaObjects"));
            }
            Ok(Rdma {
                device: device.clone(),
                hca_handles: limits.hca_handles(),
                hca_objects: limits.hca_objects(),
            })
        })
        .collect()
}

/// Core files that place, freeze or kill processes, or shape the tree: the runtime manages them,
/// and through `unified` they could move any host process into the container's cgroup.
const UNIFIED_MANAGED: &[&str] = &[
    "cgroup.procs",
    "cgroup.threads",
    "cgroup.kill",
    "cgroup.freeze",
    "cgroup.subtree_control",
    "cgroup.type",
];

/// `unified`: each key names one file in the container's cgroup directory, never a path.
fn unified(r: &LinuxResources) -> Result<Vec<(String, String)>, SpecError> {
    let mut entries: Vec<(String, String)> = r
        .unified()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    entries.sort();
    for (key, value) in &entries {
        let field = format!("{FIELD}.unified.{key:?}");
        let controller = key.split_once('.').map(|(c, _)| c).unwrap_or_default();
        if key.contains('/')
            || key.contains('\0')
            || key.starts_with('.')
            || controller.is_empty()
            || !controller
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(invalid(
                field,
                "not the name of a cgroup v2 interface file (<controller>.<name>, no path)",
            ));
        }
        if UNIFIED_MANAGED.contains(&key.as_str()) {
            return Err(invalid(
                field,
                "not a resource: the runtime manages this file (placement, freezing, the tree)",
            ));
        }
        if value.contains('\0') {
            return Err(invalid(field, "the value contains a NUL byte"));
        }
    }
    Ok(entries)
}

/// A wildcard-able device number of a device cgroup rule: absent or -1 is every number.
fn rule_number(value: Option<i64>, max: i64, field: &str) -> Result<Option<u32>, SpecError> {
    match value {
        None | Some(-1) => Ok(None),
        Some(v) => device_number(v, max, field).map(Some),
    }
}

/// `linux.resources.devices`, applied in order over deny-all, then the runtime's defaults.
fn devices(rules: &[LinuxDeviceCgroup]) -> Result<DeviceRules, SpecError> {
    let parsed = rules
        .iter()
        .enumerate()
        .map(|(i, d)| device_rule(d, &format!("{FIELD}.devices[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(DeviceRules::with_defaults(parsed))
}

fn device_rule(d: &LinuxDeviceCgroup, field: &str) -> Result<DeviceRule, SpecError> {
    let access = match d.access().as_deref() {
        None => DeviceRule::RWM,
        Some(text) => DeviceRule::parse_access(text).ok_or_else(|| {
            invalid(
                format!("{field}.access"),
                format!("{text:?} is not a non-empty combination of r, w and m"),
            )
        })?,
    };
    let kind = match d.typ() {
        None | Some(LinuxDeviceType::A) => DevKind::All,
        Some(LinuxDeviceType::C | LinuxDeviceType::U) => DevKind::Char,
        Some(LinuxDeviceType::B) => DevKind::Block,
        Some(LinuxDeviceType::P) => {
            return Err(invalid(
                format!("{field}.type"),
                "p (fifo) is not governed by the device cgroup",
            ));
        }
    };
    let major = rule_number(d.major(), MAX_MAJOR, &format!("{field}.major"))?;
    let minor = rule_number(d.minor(), MAX_MINOR, &format!("{field}.minor"))?;
    // The kernel reads a type-a rule as "every device, every access" whatever else it says:
    // anything narrower would silently become that, so it is refused.
    if kind == DevKind::All && (major.is_some() || minor.is_some() || access != DeviceRule::RWM) {
        return Err(invalid(
            field,
            "a rule for all devices (type a or none) cannot name a major, a minor or partial \
             access; give a type (c or b)",
        ));
    }
    Ok(DeviceRule {
        allow: d.allow(),
        kind,
        major,
        minor,
        access,
    })
}

#[cfg(test)]
mod tests;
