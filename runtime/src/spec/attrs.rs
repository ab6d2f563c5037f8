//! Process and kernel attributes beyond credentials: `process.user.umask`, `process.scheduler`,
//! `process.ioPriority`, `process.execCPUAffinity`, the LSM labels, `linux.personality`,
//! `linux.timeOffsets` and `domainname`.

use std::path::Path;

use nix::sched::CloneFlags;
use oci_spec::runtime::{
    IOPriorityClass, Linux, LinuxPersonalityDomain, LinuxSchedulerFlag, LinuxSchedulerPolicy,
    Process, Spec,
};

use super::{MountPlan, NamespacePlan, SpecError, invalid};

/// Clone flag of the time namespace (nix has no constant for it).
pub const CLONE_NEWTIME: CloneFlags = CloneFlags::from_bits_retain(0x80);

/// sched_setattr(2)'s arguments (struct sched_attr without the utilization clamps).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedAttr {
    pub policy: u32,
    pub flags: u64,
    pub nice: i32,
    pub priority: u32,
    pub runtime: u64,
    pub deadline: u64,
    pub period: u64,
}

/// One clock's offset in a new time namespace, as /proc/self/timens_offsets takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeOffset {
    /// `monotonic` or `boottime`.
    pub clock: String,
    pub secs: i64,
    pub nanosecs: u32,
}

/// `process.execCPUAffinity`, as sorted CPU numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuAffinity {
    pub initial: Option<Vec<u32>>,
    pub after_cgroup: Option<Vec<u32>>,
}

/// The LSMs this host has enabled: labels for the others are refused, not dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lsm {
    pub apparmor: bool,
    pub selinux: bool,
}

impl Lsm {
    pub fn detect() -> Self {
        let apparmor = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|s| s.trim_start().starts_with('Y'));
        let selinux = Path::new("/sys/fs/selinux/enforce").exists();
        Self { apparmor, selinux }
    }
}

// Kernel constants (linux/sched.h, linux/ioprio.h, linux/personality.h).
const SCHED_OTHER: u32 = 0;
const SCHED_FIFO: u32 = 1;
const SCHED_RR: u32 = 2;
const SCHED_BATCH: u32 = 3;
const SCHED_IDLE: u32 = 5;
const SCHED_DEADLINE: u32 = 6;
const IOPRIO_CLASS_SHIFT: u16 = 13;
pub const PER_LINUX: u32 = 0x0000;
pub const PER_LINUX32: u32 = 0x0008;

/// `process.user.umask`: at most 0777.
pub(super) fn umask(process: &Process) -> Result<Option<u32>, SpecError> {
    match process.user().umask() {
        Some(mask) if mask > 0o777 => Err(invalid(
            "process.user.umask",
            format!("{mask:#o} is not a file mode mask (at most 0777)"),
        )),
        mask => Ok(mask),
    }
}

/// `process.scheduler`: checked as runc checks it, so that the kernel's EINVAL is rare.
pub(super) fn scheduler(process: &Process) -> Result<Option<SchedAttr>, SpecError> {
    let Some(s) = process.scheduler() else {
        return Ok(None);
    };
    let policy = match s.policy() {
        LinuxSchedulerPolicy::SchedOther => SCHED_OTHER,
        LinuxSchedulerPolicy::SchedFifo => SCHED_FIFO,
        LinuxSchedulerPolicy::SchedRr => SCHED_RR,
        LinuxSchedulerPolicy::SchedBatch => SCHED_BATCH,
        LinuxSchedulerPolicy::SchedIdle => SCHED_IDLE,
        LinuxSchedulerPolicy::SchedDeadline => SCHED_DEADLINE,
        LinuxSchedulerPolicy::SchedIso => {
            return Err(invalid(
                "process.scheduler.policy",
                "SCHED_ISO is not implemented by Linux",
            ));
        }
    };
    let nice = s.nice().unwrap_or(0);
    if !(-20..=19).contains(&nice) {
        return Err(invalid(
            "process.scheduler.nice",
            format!("{nice} is outside -20..19"),
        ));
    }
    let priority = s.priority().unwrap_or(0);
    let realtime = matches!(policy, SCHED_FIFO | SCHED_RR);
    if realtime && !(1..=99).contains(&priority) {
        return Err(invalid(
            "process.scheduler.priority",
            format!("{priority} is outside 1..99 (SCHED_FIFO and SCHED_RR)"),
        ));
    }
    if !realtime && priority != 0 {
        return Err(invalid(
            "process.scheduler.priority",
            "only SCHED_FIFO and SCHED_RR take a priority",
        ));
    }
    let (runtime, deadline, period) = (
        s.runtime().unwrap_or(0),
        s.deadline().unwrap_or(0),
        s.period().unwrap_or(0),
    );
    if policy != SCHED_DEADLINE && (runtime, deadline, period) != (0, 0, 0) {
        return Err(invalid(
            "process.scheduler",
            "runtime, deadline and period are only for SCHED_DEADLINE",
        ));
    }
    let mut flags = 0u64;
    for flag in s.flags().iter().flatten() {
        flags |= match flag {
            LinuxSchedulerFlag::SchedResetOnFork => 0x01,
            LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
            LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
            LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
            LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
            // The clamps need utilization values, which the spec has no field for.
            LinuxSchedulerFlag::SchedFlagUtilClampMin
            | LinuxSchedulerFlag::SchedFlagUtilClampMax => {
                return Err(invalid(
                    "process.scheduler.flags",
                    format!("{flag} needs utilization values the spec cannot give"),
                ));
            }
        };
    }
    Ok(Some(SchedAttr {
        policy,
        flags,
        nice,
        priority: priority.unsigned_abs(),
        runtime,
        deadline,
        period,
    }))
}

/// `process.ioPriority`: the ioprio_set(2) value (class << 13 | level).
pub(super) fn io_priority(process: &Process) -> Result<Option<u16>, SpecError> {
    let Some(io) = process.io_priority() else {
        return Ok(None);
    };
    let class: u16 = match io.class() {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    let level = io.priority();
    let level = u16::try_from(level)
        .ok()
        .filter(|l| *l <= 7)
        .ok_or_else(|| {
            invalid(
                "process.ioPriority.priority",
                format!("{level} is outside 0..7"),
            )
        })?;
    Ok(Some(class << IOPRIO_CLASS_SHIFT | level))
}

/// `process.execCPUAffinity`: validated CPU lists. The spec applies it to processes started by
/// `exec`, not to the container's init, so `create` only carries it.
pub(super) fn exec_cpu_affinity(process: &Process) -> Result<Option<CpuAffinity>, SpecError> {
    let Some(a) = process.exec_cpu_affinity() else {
        return Ok(None);
    };
    let list = |value: &Option<String>, field: &str| {
        value
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| {
                cpu_list(s).ok_or_else(|| {
                    invalid(
                        format!("process.execCPUAffinity.{field}"),
                        format!("{s:?} is not a CPU list like 0-3,7"),
                    )
                })
            })
            .transpose()
    };
    Ok(Some(CpuAffinity {
        initial: list(a.initial(), "initial")?,
        after_cgroup: list(a.cpu_affinity_final(), "final")?,
    }))
}

/// `0-3,7` → [0, 1, 2, 3, 7].
pub fn cpu_list(s: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if a > b {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Some(cpus)
}

/// `process.apparmorProfile` / `process.selinuxLabel`: refused on a host without that LSM.
pub(super) fn process_labels(
    process: &Process,
    lsm: Lsm,
) -> Result<(Option<String>, Option<String>), SpecError> {
    let apparmor = process.apparmor_profile().clone().filter(|p| !p.is_empty());
    if apparmor.is_some() && !lsm.apparmor {
        return Err(invalid(
            "process.apparmorProfile",
            "AppArmor is not enabled on this host",
        ));
    }
    let selinux = process.selinux_label().clone().filter(|l| !l.is_empty());
    if selinux.is_some() && !lsm.selinux {
        return Err(invalid(
            "process.selinuxLabel",
            "SELinux is not enabled on this host",
        ));
    }
    Ok((apparmor, selinux))
}

/// `linux.mountLabel`: the SELinux context of the filesystems the runtime creates (every mount but
/// binds and the kernel's own views: proc, sysfs, cgroup).
pub(super) fn mount_label(
    linux: &Linux,
    lsm: Lsm,
    mounts: &mut [MountPlan],
) -> Result<(), SpecError> {
    let Some(label) = linux.mount_label().clone().filter(|l| !l.is_empty()) else {
        return Ok(());
    };
    if !lsm.selinux {
        return Err(invalid(
            "linux.mountLabel",
            "SELinux is not enabled on this host",
        ));
    }
    for m in mounts.iter_mut() {
        if m.bind || matches!(m.fstype.as_str(), "proc" | "sysfs" | "cgroup" | "cgroup2") {
            continue;
        }
        let context = format!("context=\"{label}\"");
        m.data = if m.data.is_empty() {
            context
        } else {
            format!("{},{context}", m.data)
        };
    }
    Ok(())
}

/// `linux.personality`: the execution domain; the spec defines no flags.
pub(super) fn personality(linux: &Linux) -> Result<Option<u32>, SpecError> {
    let Some(p) = linux.personality() else {
        return Ok(None);
    };
    if p.flags().as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(invalid(
            "linux.personality.flags",
            "the runtime spec defines no personality flags",
        ));
    }
    Ok(Some(match p.domain() {
        LinuxPersonalityDomain::PerLinux => PER_LINUX,
        LinuxPersonalityDomain::PerLinux32 => PER_LINUX32,
    }))
}

/// `linux.timeOffsets`: only in a new time namespace, whose offsets must be written before its
/// first process exists.
pub(super) fn time_offsets(
    linux: &Linux,
    namespaces: &[NamespacePlan],
) -> Result<Vec<TimeOffset>, SpecError> {
    let Some(offsets) = linux.time_offsets().as_ref().filter(|o| !o.is_empty()) else {
        return Ok(Vec::new());
    };
    if !super::has_new_namespace(namespaces, CLONE_NEWTIME) {
        return Err(invalid(
            "linux.timeOffsets",
            "requires a new time namespace",
        ));
    }
    let mut plan = Vec::new();
    for (clock, offset) in offsets {
        if clock != "monotonic" && clock != "boottime" {
            return Err(invalid(
                format!("linux.timeOffsets.{clock}"),
                "only monotonic and boottime have offsets",
            ));
        }
        let nanosecs = offset.nanosecs().unwrap_or(0);
        if nanosecs >= 1_000_000_000 {
            return Err(invalid(
                format!("linux.timeOffsets.{clock}.nanosecs"),
                format!("{nanosecs} is not below one second"),
            ));
        }
        plan.push(TimeOffset {
            clock: clock.clone(),
            secs: offset.secs().unwrap_or(0),
            nanosecs,
        });
    }
    plan.sort_by(|a, b| a.clock.cmp(&b.clock));
    Ok(plan)
}

/// `domainname`: like `hostname`, only in a uts namespace of the container's (new or joined).
pub(super) fn domainname(
    spec: &Spec,
    namespaces: &[NamespacePlan],
) -> Result<Option<String>, SpecError> {
    let name = spec.domainname().clone().filter(|d| !d.is_empty());
    if name.is_some()
        && !namespaces
            .iter()
            .any(|n| n.flag == CloneFlags::CLONE_NEWUTS)
    {
        return Err(invalid("domainname", "requires a uts namespace"));
    }
    Ok(name)
}
