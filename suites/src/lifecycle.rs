//! The container's lifecycle beyond create, start and kill: `pause` freezes every process of the
//! container in the kernel's cgroup freezer, and `resume` thaws them all again. What the runtime
//! (or engine) says is checked against what the kernel says, read from the host.

use palisade_harness::driver::Status;
use palisade_harness::lab::cgroups::CgroupError;
use palisade_harness::lab::cgroups::freezer::{FreezeState, Freezer, FreezerCgroup};
use palisade_harness::lab::host;
use palisade_harness::run::control::{Control, Defect};
use palisade_harness::run::scenario::{Schedule, expect_facts};
use palisade_harness::{
    Ctx, Failure, Outcome, Reply, Request, Requirement, Scenario, check, require, skip,
};
use procfs::process::Process;

pub const SCENARIOS: &[Scenario] = &[Scenario {
    area: "lifecycle",
    name: "pause_freezes_every_process",
    checks: "After `pause`, `state` says paused, the container's freezer cgroup reports frozen (v1 `freezer.state` FROZEN, v2 `cgroup.events` `frozen 1`), and every process of its pid namespace (the init and a child it forked, found in the host's /proc) is in that frozen cgroup; after `resume`, `state` says running, the cgroup is thawed, and the probe answers again with its child alive.",
    control: Control::Defect(Defect::PauseDoesNothing),
    means: "A paused container keeps running: whoever pauses it to stop it (an incident responder freezing a compromised container, a consistent snapshot) does not stop it; or it does not come back from a pause.",
    requires: &[Requirement::Privileged, Requirement::Freezer],
    schedule: Schedule::Parallel,
    run: pause_freezes_every_process,
}];

fn pause_freezes_every_process(cx: &Ctx) -> Outcome {
    let freezer = Freezer::for_host(cx.host())?;

    // Setup: a running container whose init has forked a child, so that "every process" is
    // more than the one the runtime knows about.
    let mut container = cx.launch(cx.spec("pause")?)?;
    let reply = container.ask(&Request::SpawnSleeper)?;
    let Reply::Spawned { pid: child } = reply else {
        return Err(Failure::Broken(format!(
            "expected the probe to report the child it forked, saw {reply:?}"
        )));
    };
    let init = container.host_pid()?;
    let child_host = child_on_host(init, child)?;
    require!(
        is_running(child_host)?,
        "expected the init's child (host pid {child_host}, pid {child} inside) to be running \
         before `pause`, it has already exited (the probe could not start it again)"
    );
    let cgroup = container_freezer(&freezer, init)?;
    let before = cgroup.state()?;
    require!(
        before == FreezeState::Thawed,
        "expected the container's freezer cgroup {} to be thawed before `pause`, {} says {before}",
        cgroup.path,
        cgroup.state_file().display()
    );

    // Act: pause.
    container.pause()?;

    // Assert (a): the runtime says the container is paused.
    let status = container.status()?;
    check!(
        status == Status::Paused,
        "expected `state` to say paused once `pause` returned, saw {status}: the runtime did not \
         pause the container, or does not know it did"
    );
    // (b): the kernel says its cgroup is frozen (the runtime's `pause` returns once it is).
    let frozen = cgroup.state()?;
    check!(
        frozen == FreezeState::Frozen,
        "expected the container's freezer cgroup {} to be frozen once `pause` returned, {} says \
         {frozen}: the container's processes keep running",
        cgroup.path,
        cgroup.state_file().display()
    );
    // (c): every process of the container's pid namespace is in that frozen cgroup, the child
    // the runtime never heard of included.
    let members = pid_namespace_members(init)?;
    require!(
        members.contains(&init) && members.contains(&child_host),
        "expected the host to see the init (host pid {init}) and its child (host pid \
         {child_host}) in the container's pid namespace, found {members:?}"
    );
    for pid in &members {
        let its = freezer.cgroup_of(*pid)?;
        check!(
            cgroup.holds(&its.path),
            "expected every process of the container's pid namespace in its freezer cgroup {} \
             (or below it), host pid {pid} is in {}: `pause` leaves it running",
            cgroup.path,
            its.path
        );
        let state = its.state()?;
        check!(
            state == FreezeState::Frozen,
            "expected host pid {pid} of the container's pid namespace to be frozen, its freezer \
             cgroup {} is {state}: `pause` leaves it running",
            its.path
        );
    }

    // Act: resume.
    container.resume()?;

    // Assert: the runtime and the kernel agree it runs again, and it does: the probe's reply is
    // the event waited for.
    let status = container.status()?;
    check!(
        status == Status::Running,
        "expected `state` to say running after `resume`, saw {status}: the container does not \
         come back from a pause"
    );
    let thawed = cgroup.state()?;
    check!(
        thawed == FreezeState::Thawed,
        "expected the container's freezer cgroup {} to be thawed after `resume`, {} says \
         {thawed}: its processes stay stopped",
        cgroup.path,
        cgroup.state_file().display()
    );
    let answered = container.ask(&Request::Facts).map(expect_facts);
    let Ok(Ok(facts)) = answered else {
        return Err(Failure::Failed(format!(
            "expected the container's init to answer again after `resume`, it did not \
             ({answered:?}): the container does not come back from a pause"
        )));
    };
    check!(
        facts.visible_pids.contains(&child) && is_running(child_host)?,
        "expected the init's child (host pid {child_host}, pid {child} inside) to be running \
         after `resume`, it is gone or a zombie: the pause killed it"
    );
    Ok(())
}

/// The host pid of the init's child that is pid `inside` in the container.
fn child_on_host(init: i32, inside: i32) -> Result<i32, Failure> {
    host::host_pid_in_pid_namespace_of(init, inside)
        .map_err(|e| Failure::Broken(format!("finding the init's child on the host: {e}")))?
        .ok_or_else(|| {
            Failure::Broken(format!(
                "the probe reported a child (pid {inside} inside) but the host sees no such \
                 process in the pid namespace of {init}"
            ))
        })
}

/// Whether process `pid` exists and has not exited (a zombie has).
fn is_running(pid: i32) -> Result<bool, Failure> {
    match Process::new(pid).and_then(|p| p.stat()) {
        Ok(stat) => Ok(!matches!(stat.state, 'Z' | 'X')),
        Err(procfs::ProcError::NotFound(_)) => Ok(false),
        Err(e) => Err(Failure::Broken(format!("reading /proc/{pid}/stat: {e}"))),
    }
}

/// The freezer cgroup of the container's init; a host whose freezer does not hold it cannot
/// pause it at all, which is a reason to skip, not a verdict.
fn container_freezer(freezer: &Freezer, init: i32) -> Result<FreezerCgroup, Failure> {
    match freezer.cgroup_of(init) {
        Ok(cgroup) => Ok(cgroup),
        Err(e @ (CgroupError::NotMember { .. } | CgroupError::NoHierarchy(_))) => {
            skip!("no cgroup freezer holds the container: {e}")
        }
        Err(e) => Err(e.into()),
    }
}

/// The host pids of every process in the container's pid namespace (that of its init), which
/// must be a pid namespace of its own.
fn pid_namespace_members(init: i32) -> Result<Vec<i32>, Failure> {
    let nspid = Process::new(init)
        .and_then(|p| p.status())
        .map_err(|e| Failure::Broken(format!("reading /proc/{init}/status: {e}")))?
        .nspid;
    require!(
        nspid
            .as_ref()
            .is_some_and(|n| n.len() >= 2 && n.last() == Some(&1)),
        "expected the container's init (host pid {init}) to be pid 1 of a pid namespace of its \
         own, its NSpid is {nspid:?}: without one there is no container to scan (the pid:: \
         scenarios judge that)"
    );
    host::pid_namespace_members(init)
        .map_err(|e| Failure::Broken(format!("listing the container's processes: {e}")))
}
