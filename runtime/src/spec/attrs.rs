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

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::{Value, json};

    use super::*;

    fn process_of(extra: Value) -> Process {
        let mut value = json!({"user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/"});
        for (k, v) in extra.as_object().expect("an object") {
            value[k] = v.clone();
        }
        serde_json::from_value(value).expect("a valid process section")
    }

    fn linux(value: Value) -> Linux {
        serde_json::from_value(value).expect("a valid linux section")
    }

    fn ns(flag: CloneFlags, path: Option<&str>) -> NamespacePlan {
        NamespacePlan {
            flag,
            path: path.map(Into::into),
        }
    }

    fn err<T: std::fmt::Debug>(r: Result<T, SpecError>) -> String {
        r.expect_err("refused").to_string()
    }

    #[rstest]
    #[case::unset(json!({"uid": 0, "gid": 0}), None)]
    #[case::group_writable(json!({"uid": 0, "gid": 0, "umask": 2}), Some(0o002))]
    #[case::strict(json!({"uid": 0, "gid": 0, "umask": 0o077}), Some(0o077))]
    fn umask_plan(#[case] user: Value, #[case] expected: Option<u32>) {
        assert_eq!(
            umask(&process_of(json!({"user": user}))).expect("valid"),
            expected
        );
    }

    #[test]
    fn umask_beyond_0777_is_refused() {
        let p = process_of(json!({"user": {"uid": 0, "gid": 0, "umask": 0o1777}}));
        assert_eq!(
            err(umask(&p)),
            "invalid config: process.user.umask: 0o1777 is not a file mode mask (at most 0777)"
        );
    }

    #[rstest]
    #[case::other_nice(json!({"policy": "SCHED_OTHER", "nice": -5}), SchedAttr { nice: -5, ..SchedAttr::default() })]
    #[case::batch(json!({"policy": "SCHED_BATCH", "nice": 19}), SchedAttr { policy: 3, nice: 19, ..SchedAttr::default() })]
    #[case::idle(json!({"policy": "SCHED_IDLE"}), SchedAttr { policy: 5, ..SchedAttr::default() })]
    #[case::fifo(json!({"policy": "SCHED_FIFO", "priority": 10}), SchedAttr { policy: 1, priority: 10, ..SchedAttr::default() })]
    #[case::rr_reset_on_fork(json!({"policy": "SCHED_RR", "priority": 99, "flags": ["SCHED_RESET_ON_FORK"]}), SchedAttr { policy: 2, priority: 99, flags: 1, ..SchedAttr::default() })]
    #[case::deadline(
        json!({"policy": "SCHED_DEADLINE", "runtime": 1000000, "deadline": 2000000, "period": 3000000, "flags": ["SCHED_FLAG_RECLAIM", "SCHED_FLAG_D_L_OVERRUN"]}),
        SchedAttr { policy: 6, runtime: 1_000_000, deadline: 2_000_000, period: 3_000_000, flags: 0x06, ..SchedAttr::default() }
    )]
    fn scheduler_plan(#[case] scheduler: Value, #[case] expected: SchedAttr) {
        let p = process_of(json!({"scheduler": scheduler}));
        assert_eq!(scheduler_of(&p), Some(expected));
    }

    fn scheduler_of(p: &Process) -> Option<SchedAttr> {
        scheduler(p).expect("valid")
    }

    #[rstest]
    #[case::iso(json!({"policy": "SCHED_ISO"}), "process.scheduler.policy: SCHED_ISO is not implemented by Linux")]
    #[case::nice_low(json!({"policy": "SCHED_OTHER", "nice": -21}), "process.scheduler.nice: -21 is outside -20..19")]
    #[case::nice_high(json!({"policy": "SCHED_OTHER", "nice": 20}), "process.scheduler.nice: 20 is outside -20..19")]
    #[case::fifo_without_priority(json!({"policy": "SCHED_FIFO"}), "process.scheduler.priority: 0 is outside 1..99 (SCHED_FIFO and SCHED_RR)")]
    #[case::rr_priority_high(json!({"policy": "SCHED_RR", "priority": 100}), "process.scheduler.priority: 100 is outside 1..99")]
    #[case::priority_for_other(json!({"policy": "SCHED_OTHER", "priority": 5}), "process.scheduler.priority: only SCHED_FIFO and SCHED_RR take a priority")]
    #[case::runtime_for_fifo(json!({"policy": "SCHED_FIFO", "priority": 1, "runtime": 5}), "process.scheduler: runtime, deadline and period are only for SCHED_DEADLINE")]
    #[case::util_clamp(json!({"policy": "SCHED_OTHER", "flags": ["SCHED_FLAG_UTIL_CLAMP_MIN"]}), "process.scheduler.flags: SCHED_FLAG_UTIL_CLAMP_MIN needs utilization values")]
    fn scheduler_refused(#[case] sched: Value, #[case] error: &str) {
        let text = err(scheduler(&process_of(json!({"scheduler": sched}))));
        assert!(text.contains(error), "{text:?} does not contain {error:?}");
    }

    #[rstest]
    #[case::be(json!({"class": "IOPRIO_CLASS_BE", "priority": 4}), 2 << 13 | 4)]
    #[case::rt(json!({"class": "IOPRIO_CLASS_RT", "priority": 0}), 1 << 13)]
    #[case::idle(json!({"class": "IOPRIO_CLASS_IDLE", "priority": 7}), 3 << 13 | 7)]
    fn io_priority_plan(#[case] io: Value, #[case] expected: u16) {
        let p = process_of(json!({"ioPriority": io}));
        assert_eq!(io_priority(&p).expect("valid"), Some(expected));
    }

    #[rstest]
    #[case::too_high(8)]
    #[case::negative(-1)]
    fn io_priority_level_out_of_range_is_refused(#[case] level: i64) {
        let p = process_of(json!({"ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": level}}));
        assert_eq!(
            err(io_priority(&p)),
            format!("invalid config: process.ioPriority.priority: {level} is outside 0..7")
        );
    }

    #[rstest]
    #[case::single("3", Some(vec![3]))]
    #[case::ranges("0-2,7,5-5", Some(vec![0, 1, 2, 5, 7]))]
    #[case::dedup("1,1,0-1", Some(vec![0, 1]))]
    #[case::reversed("3-1", None)]
    #[case::word("all", None)]
    #[case::empty_part("1,,2", None)]
    fn cpu_lists(#[case] s: &str, #[case] expected: Option<Vec<u32>>) {
        assert_eq!(cpu_list(s), expected);
    }

    #[test]
    fn exec_cpu_affinity_is_carried_for_exec() {
        let p = process_of(json!({"execCPUAffinity": {"initial": "0-1", "final": "1"}}));
        assert_eq!(
            exec_cpu_affinity(&p).expect("valid"),
            Some(CpuAffinity {
                initial: Some(vec![0, 1]),
                after_cgroup: Some(vec![1])
            })
        );
    }

    #[rstest]
    #[case::apparmor_without_apparmor(json!({"apparmorProfile": "p"}), Lsm::default(), "invalid config: process.apparmorProfile: AppArmor is not enabled on this host")]
    #[case::selinux_without_selinux(json!({"selinuxLabel": "l"}), Lsm { apparmor: true, selinux: false }, "invalid config: process.selinuxLabel: SELinux is not enabled on this host")]
    fn lsm_labels_without_the_lsm_are_refused(
        #[case] extra: Value,
        #[case] lsm: Lsm,
        #[case] error: &str,
    ) {
        assert_eq!(err(process_labels(&process_of(extra), lsm)), error);
    }

    #[test]
    fn lsm_labels_with_the_lsm_are_carried() {
        let p = process_of(json!({"apparmorProfile": "prof", "selinuxLabel": "system_u:r"}));
        let both = Lsm {
            apparmor: true,
            selinux: true,
        };
        assert_eq!(
            process_labels(&p, both).expect("valid"),
            (Some("prof".into()), Some("system_u:r".into()))
        );
        // Empty means unset.
        let empty = process_of(json!({"apparmorProfile": "", "selinuxLabel": ""}));
        assert_eq!(
            process_labels(&empty, Lsm::default()).expect("valid"),
            (None, None)
        );
    }

    fn mount(fstype: &str, bind: bool, data: &str) -> MountPlan {
        MountPlan {
            destination: "/x".into(),
            fstype: fstype.into(),
            source: None,
            bind,
            flags: nix::mount::MsFlags::empty(),
            propagation: vec![],
            recursive: None,
            data: data.into(),
            copy_up: false,
        }
    }

    #[test]
    fn mount_label_goes_into_the_data_of_the_filesystems_the_runtime_creates() {
        let l = linux(json!({"mountLabel": "system_u:object_r:c1"}));
        let mut mounts = vec![
            mount("tmpfs", false, "mode=755"),
            mount("proc", false, ""),
            mount("bind", true, ""),
            mount("mqueue", false, ""),
        ];
        let selinux = Lsm {
            apparmor: false,
            selinux: true,
        };
        mount_label(&l, selinux, &mut mounts).expect("valid");
        let data: Vec<&str> = mounts.iter().map(|m| m.data.as_str()).collect();
        assert_eq!(
            data,
            [
                "mode=755,context=\"system_u:object_r:c1\"",
                "",
                "",
                "context=\"system_u:object_r:c1\""
            ]
        );
        assert_eq!(
            err(mount_label(&l, Lsm::default(), &mut mounts)),
            "invalid config: linux.mountLabel: SELinux is not enabled on this host"
        );
    }

    #[rstest]
    #[case::linux(json!({"domain": "LINUX"}), Some(PER_LINUX))]
    #[case::linux32(json!({"domain": "LINUX32"}), Some(PER_LINUX32))]
    #[case::empty_flags(json!({"domain": "LINUX32", "flags": []}), Some(PER_LINUX32))]
    fn personality_plan(#[case] p: Value, #[case] expected: Option<u32>) {
        let l = linux(json!({"personality": p}));
        assert_eq!(personality(&l).expect("valid"), expected);
    }

    #[test]
    fn personality_flags_are_refused() {
        let l = linux(json!({"personality": {"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]}}));
        assert_eq!(
            err(personality(&l)),
            "invalid config: linux.personality.flags: the runtime spec defines no personality flags"
        );
    }

    #[test]
    fn time_offsets_in_a_new_time_namespace_sorted_by_clock() {
        let l = linux(json!({"timeOffsets": {
            "monotonic": {"secs": 86400, "nanosecs": 5},
            "boottime": {"secs": -10}
        }}));
        let plan = time_offsets(&l, &[ns(CLONE_NEWTIME, None)]).expect("valid");
        assert_eq!(
            plan,
            [
                TimeOffset {
                    clock: "boottime".into(),
                    secs: -10,
                    nanosecs: 0
                },
                TimeOffset {
                    clock: "monotonic".into(),
                    secs: 86400,
                    nanosecs: 5
                },
            ]
        );
    }

    #[rstest]
    #[case::no_time_ns(json!({"monotonic": {"secs": 1}}), vec![], "invalid config: linux.timeOffsets: requires a new time namespace")]
    #[case::joined_time_ns(json!({"monotonic": {"secs": 1}}), vec![ns(CLONE_NEWTIME, Some("/proc/1/ns/time"))], "invalid config: linux.timeOffsets: requires a new time namespace")]
    #[case::realtime(json!({"realtime": {"secs": 1}}), vec![ns(CLONE_NEWTIME, None)], "invalid config: linux.timeOffsets.realtime: only monotonic and boottime have offsets")]
    #[case::nanosecs(json!({"boottime": {"nanosecs": 1000000000u32}}), vec![ns(CLONE_NEWTIME, None)], "invalid config: linux.timeOffsets.boottime.nanosecs: 1000000000 is not below one second")]
    fn time_offsets_refused(
        #[case] offsets: Value,
        #[case] namespaces: Vec<NamespacePlan>,
        #[case] error: &str,
    ) {
        let l = linux(json!({"timeOffsets": offsets}));
        assert_eq!(err(time_offsets(&l, &namespaces)), error);
    }

    #[rstest]
    #[case::new_uts(vec![ns(CloneFlags::CLONE_NEWUTS, None)])]
    #[case::joined_uts(vec![ns(CloneFlags::CLONE_NEWUTS, Some("/proc/1/ns/uts"))])]
    fn domainname_in_a_uts_namespace(#[case] namespaces: Vec<NamespacePlan>) {
        let s: Spec =
            serde_json::from_value(json!({"ociVersion": "1.0.2", "domainname": "example.org"}))
                .expect("spec");
        assert_eq!(
            domainname(&s, &namespaces).expect("valid").as_deref(),
            Some("example.org")
        );
    }

    #[test]
    fn domainname_without_a_uts_namespace_is_refused() {
        let s: Spec =
            serde_json::from_value(json!({"ociVersion": "1.0.2", "domainname": "example.org"}))
                .expect("spec");
        assert_eq!(
            err(domainname(&s, &[ns(CloneFlags::CLONE_NEWNS, None)])),
            "invalid config: domainname: requires a uts namespace"
        );
    }
}
