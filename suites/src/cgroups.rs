//! Cgroups: limits the kernel actually enforces, measured from its own accounting of the
//! container's cgroup (found through `/proc/<pid>/cgroup`), not read back from the config.

use std::time::Duration;

use palisade_harness::lab::burn::start_burners;
use palisade_harness::lab::cgroups::{
    self, CgroupVersion, CpuWindow, online_cpus, quota_allowance,
};
use palisade_harness::run::control::{Control, Edit};
use palisade_harness::run::scenario::Schedule;
use palisade_harness::{
    ContainerSpec, Ctx, Failure, Outcome, Reply, Request, Requirement, Scenario, check, skip,
};

const PRIVILEGED: &[Requirement] = &[Requirement::Privileged];

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        area: "cgroups",
        name: "quota_holds",
        checks: "A container with CPU quota 30 ms per 100 ms burning 2 CPUs is charged at most the quota \
                 over a 1 s window and is throttled, while an unthrottled twin measured the same way right after uses clearly more \
                 (1.5x the allowance; otherwise the scenario skips: no teeth on this host).",
        control: Control::config_of("cpu-limited", Edit::NoCpuQuota),
        means: "A container can use more CPU than it was given and starve its neighbours.",
        requires: PRIVILEGED,
        schedule: Schedule::CpuAlone,
        run: quota_holds,
    },
    Scenario {
        area: "cgroups",
        name: "quota_scales",
        checks: "Quotas of 20 % and 50 % of a CPU give usage in that order, each within its allowance and at \
                 least 3/4 of its target.",
        control: Control::config_of("cpu-50", Edit::CpuQuota(20_000)),
        means: "CPU quotas are not applied as configured: limits are ordered or sized wrongly.",
        requires: PRIVILEGED,
        schedule: Schedule::CpuAlone,
        run: quota_scales,
    },
    Scenario {
        area: "cgroups",
        name: "placement",
        checks: "The container's init is in the cgroup at cgroupsPath in every hierarchy that matters (v1: cpu, \
                 cpuacct, memory, pids; v2: the unified one), and the runtime removes that cgroup on delete.",
        control: Control::config(Edit::CgroupsPathSuffix("-sibling")),
        means: "The container's processes escape the cgroup its limits are set on, or the runtime leaves cgroups behind.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: placement,
    },
    Scenario {
        area: "cgroups",
        name: "pids_limit",
        checks: "With pids.limit 8, starting 16 sleepers inside stops with EAGAIN before the limit.",
        control: Control::config(Edit::NoPidsLimit),
        means: "A fork bomb in the container can exhaust the host's process table.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: pids_limit,
    },
];

const PERIOD_US: u64 = 100_000;
/// More burning threads than any quota here allows, so every quota is reached.
const BURNERS: u32 = 2;
/// The unthrottled twin must beat the quota's allowance by this factor for the check to mean anything.
const TEETH: f64 = 1.5;

fn cgroups_here(cx: &Ctx) -> Result<Box<dyn CgroupVersion>, Failure> {
    let cgroups = cgroups::for_host(cx.host())?;
    // Host load must not starve the burners: the run's parent cgroup gets the top CPU weight.
    cgroups.favour(&cx.containers_cgroup_parent())?;
    Ok(cgroups)
}

/// Launches `spec`, has it burn, measures it over the window and stops it: its cgroup and usage.
fn measure_alone(
    cx: &Ctx,
    cgroups: &dyn CgroupVersion,
    spec: ContainerSpec,
) -> Result<(String, CpuWindow), Failure> {
    let burners = start_burners(cx, cgroups, vec![spec], BURNERS)?;
    let used = burners
        .measure()?
        .first()
        .copied()
        .ok_or_else(|| Failure::Broken("measured no cgroup".into()))?;
    Ok((burners.burners[0].counters.path.clone(), used))
}

/// Allowed CPUs for `quota_us` over this window (see `quota_allowance` for the terms).
fn allowed_cpus(quota_us: i64, window: &CpuWindow) -> f64 {
    let quota = Duration::from_micros(quota_us.unsigned_abs());
    let allowed = quota_allowance(
        quota,
        Duration::from_micros(PERIOD_US),
        window.wall,
        online_cpus(),
    );
    allowed.as_secs_f64() / window.wall.as_secs_f64()
}

fn quota_holds(cx: &Ctx) -> Outcome {
    const QUOTA: i64 = 30_000;
    let cgroups = cgroups_here(cx)?;

    // Setup: the limited burner and its unthrottled twin.
    let limited = cx.spec("cpu-limited")?.cpu_quota(QUOTA, PERIOD_US);
    let free = cx.spec("cpu-free")?;

    // Act: measure each while it burns alone (the limited one is gone before the twin burns, so
    // the twin's usage shows what this host gives an unthrottled container right now).
    let (limited_path, limited_use) = measure_alone(cx, cgroups.as_ref(), limited)?;
    let (_, free_use) = measure_alone(cx, cgroups.as_ref(), free)?;

    // Assert.
    let allowed = allowed_cpus(QUOTA, &limited_use);
    if free_use.cpus() < allowed * TEETH {
        // Not a verdict on the runtime: the measurement has no teeth here (so no selftest either).
        skip!(
            "the unthrottled control used only {:.3} CPUs over {:.2} s (the quota allows {allowed:.3}): \
             cannot distinguish a throttled container from a free one on this host",
            free_use.cpus(),
            free_use.wall.as_secs_f64()
        );
    }
    check!(
        limited_use.cpus() <= allowed,
        "expected the container with quota {QUOTA} µs / {PERIOD_US} µs to use at most {allowed:.3} CPUs \
         over {:.2} s, the kernel charged {:.3} CPUs to {}: the quota is not enforced",
        limited_use.wall.as_secs_f64(),
        limited_use.cpus(),
        limited_path
    );
    check!(
        limited_use.throttled_periods.is_some_and(|n| n > 0),
        "expected nr_throttled of {} to grow while 2 threads burnt against a 30 % quota, saw {:?} \
         (of {:?} periods): the kernel never throttled it",
        limited_path,
        limited_use.throttled_periods,
        limited_use.periods
    );
    Ok(())
}

fn quota_scales(cx: &Ctx) -> Outcome {
    const LOW: i64 = 20_000;
    const HIGH: i64 = 50_000;
    let cgroups = cgroups_here(cx)?;

    // Setup: two burners.
    let low = cx.spec("cpu-20")?.cpu_quota(LOW, PERIOD_US);
    let high = cx.spec("cpu-50")?.cpu_quota(HIGH, PERIOD_US);
    let burners = start_burners(cx, cgroups.as_ref(), vec![low, high], BURNERS)?;

    // Act.
    let [low_use, high_use] = burners.measure()?[..] else {
        return Err(Failure::Broken(
            "measured the wrong number of cgroups".into(),
        ));
    };

    // Assert: each within its allowance, close to its target, and in order.
    for (quota, used) in [(LOW, &low_use), (HIGH, &high_use)] {
        let target = quota as f64 / PERIOD_US as f64;
        let allowed = allowed_cpus(quota, used);
        check!(
            used.cpus() <= allowed && used.cpus() >= target * 0.75,
            "expected the container with a {:.0} % quota to use between {:.3} and {allowed:.3} CPUs \
             over {:.2} s, it used {:.3}: its usage does not follow its quota",
            target * 100.0,
            target * 0.75,
            used.wall.as_secs_f64(),
            used.cpus()
        );
    }
    check!(
        low_use.cpus() < high_use.cpus(),
        "expected the 20 % container to use less than the 50 % one, saw {:.3} vs {:.3} CPUs",
        low_use.cpus(),
        high_use.cpus()
    );
    Ok(())
}

fn placement(cx: &Ctx) -> Outcome {
    let cgroups = cgroups::for_host(cx.host())?;
    let asked = format!(
        "{}/{}",
        cx.run.cgroup_parent(),
        cx.run.name(&format!("placement-{}", cx.trial()))
    );

    // Setup: a container told to live at `asked`.
    let mut container = cx.launch(cx.spec("placement")?.cgroups_path(&asked))?;
    container.ask(&Request::Facts)?;
    let pid = container.host_pid()?;

    // Assert: /proc/<pid>/cgroup and each hierarchy's cgroup.procs agree it is at `asked`.
    for controller in cgroups.placement_controllers() {
        let seen = cgroups.cgroup_of(pid, &controller)?;
        check!(
            seen == asked,
            "expected the container's init (host pid {pid}) in cgroup {asked} of the {controller} \
             hierarchy, /proc/{pid}/cgroup says {seen}: the runtime did not honour cgroupsPath"
        );
        let procs = cgroups.dir(&controller, &asked)?.join("cgroup.procs");
        let listed = std::fs::read_to_string(&procs)
            .map_err(|e| Failure::Broken(format!("reading {}: {e}", procs.display())))?
            .lines()
            .any(|l| l.trim() == pid.to_string());
        check!(
            listed,
            "expected {} to list the init (host pid {pid}); it does not",
            procs.display()
        );
    }

    // Act: stop and delete the container; its cgroup must go with it.
    container.kill("KILL")?;
    container.wait_exit()?;
    container.delete()?;
    for controller in cgroups.placement_controllers() {
        let dir = cgroups.dir(&controller, &asked)?;
        check!(
            !dir.exists(),
            "expected the runtime to remove {} on delete; it is still there",
            dir.display()
        );
    }
    Ok(())
}

fn pids_limit(cx: &Ctx) -> Outcome {
    const LIMIT: i64 = 8;
    const TRIES: u32 = 16;
    let spec = cx
        .spec("pids")?
        .one_shot(&Request::ForkSleepers { count: TRIES })
        .pids_limit(LIMIT);
    let reply = cx.run_once(spec)?;
    let Reply::Forked { started, errno } = reply else {
        return Err(Failure::Broken(format!(
            "expected the probe to report its forks, saw {reply:?}"
        )));
    };
    // The probe itself is one of the LIMIT tasks.
    check!(
        i64::from(started) < LIMIT && errno.as_deref() == Some("EAGAIN"),
        "expected at most {} of {TRIES} sleepers to start under pids.limit {LIMIT}, then EAGAIN; \
         {started} started (next errno: {errno:?}): the task limit is not enforced",
        LIMIT - 1
    );
    Ok(())
}
