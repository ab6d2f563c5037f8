//! PID namespace: the container's first process is pid 1 of its own world, and an ordinary
//! process on the host.

use oci_spec::runtime::LinuxNamespaceType::Pid;
use palisade_harness::driver::Status;
use palisade_harness::exec::ProcessHandle;
use palisade_harness::run::control::{Control, Edit};
use palisade_harness::run::scenario::{Schedule, expect_facts};
use palisade_harness::{Ctx, Failure, Outcome, Reply, Request, Requirement, Scenario, check};

const PRIVILEGED: &[Requirement] = &[Requirement::Privileged];
/// Every pid scenario's control: a runtime that did not give the container a pid namespace.
const NO_PID_NAMESPACE: Control = Control::config(Edit::WithoutNamespace(Pid));

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        area: "pid",
        name: "init_is_pid_1",
        checks: "The container's first process sees itself as pid 1.",
        control: NO_PID_NAMESPACE,
        means: "The container shares a pid namespace: it can see, and with the right capabilities signal or ptrace, processes outside it.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: init_is_pid_1,
    },
    Scenario {
        area: "pid",
        name: "host_sees_an_ordinary_process",
        checks: "The host sees the container's init under another pid, and its NSpid reads `<host pid> 1`.",
        control: NO_PID_NAMESPACE,
        means: "The runtime's idea of the container's pid is wrong or the init is not nested: `kill` and monitoring from the host hit the wrong process.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: host_sees_an_ordinary_process,
    },
    Scenario {
        area: "pid",
        name: "proc_lists_only_the_container",
        checks: "`/proc` inside lists the container's processes and nothing of the host's.",
        control: NO_PID_NAMESPACE,
        means: "Host process names, arguments and environments are readable from inside the container.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: proc_lists_only_the_container,
    },
    Scenario {
        area: "pid",
        name: "only_sigkill_stops_init",
        checks: "Pid 1 ignores a SIGTERM it has no handler for; SIGKILL from the host stops it and `state` says stopped.",
        control: NO_PID_NAMESPACE,
        means: "The init is not protected as pid 1, or the runtime does not notice its death: containers die from stray signals or linger as 'running'.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: only_sigkill_stops_init,
    },
    Scenario {
        area: "pid",
        name: "children_die_with_init",
        checks: "A background child the init starts is in the container's pid namespace (its NSpid nests), and is killed when the init exits: nothing leaks to the host.",
        control: NO_PID_NAMESPACE,
        means: "Processes started in a container survive it on the host, out of the runtime's sight.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: children_die_with_init,
    },
];

fn init_is_pid_1(cx: &Ctx) -> Outcome {
    let facts = cx.facts_of(cx.spec("pid-one")?)?;
    check!(
        facts.pid == 1,
        "expected the container's first process to be pid 1, saw pid {} (ppid {}): it shares a pid \
         namespace with other processes, so it can see and signal them",
        facts.pid,
        facts.ppid
    );
    Ok(())
}

fn host_sees_an_ordinary_process(cx: &Ctx) -> Outcome {
    let mut container = cx.launch(cx.spec("pid-host-view")?)?;
    container.ask(&Request::Facts)?;
    let host_pid = container.host_pid()?;
    let state_pid = container.state()?.pid().unwrap_or(0);
    check!(
        state_pid == host_pid,
        "expected `state` to report the pid the runtime wrote to --pid-file ({host_pid}), saw {state_pid}"
    );
    check!(
        host_pid != 1,
        "expected the host to see the init as an ordinary process, saw host pid 1"
    );
    let nspid = procfs::process::Process::new(host_pid)
        .and_then(|p| p.status())
        .map_err(|e| Failure::Broken(format!("reading /proc/{host_pid}/status on the host: {e}")))?
        .nspid
        .ok_or_else(|| {
            Failure::Broken(format!(
                "/proc/{host_pid}/status has no NSpid line (a kernel before 4.1?)"
            ))
        })?;
    check!(
        nspid == [host_pid, 1],
        "expected /proc/{host_pid}/status on the host to read `NSpid: {host_pid} 1` (pid 1 in a nested \
         namespace), saw {nspid:?}: the init is not the first process of a pid namespace of its own"
    );
    Ok(())
}

fn proc_lists_only_the_container(cx: &Ctx) -> Outcome {
    let facts = cx.facts_of(cx.spec("pid-proc")?)?;
    check!(
        facts.visible_pids == [facts.pid] && facts.pid == 1,
        "expected /proc inside to list only the probe (pid 1), saw {} pids ({:?}…): the host's \
         processes are visible from the container",
        facts.visible_pids.len(),
        &facts.visible_pids[..facts.visible_pids.len().min(8)]
    );
    Ok(())
}

fn only_sigkill_stops_init(cx: &Ctx) -> Outcome {
    let mut container = cx.launch(cx.spec("pid-kill")?)?;
    container.ask(&Request::Facts)?;
    let host_pid = nix::unistd::Pid::from_raw(container.host_pid()?);

    // SIGTERM from the host: an init without a handler for it is protected by the kernel.
    nix::sys::signal::kill(host_pid, nix::sys::signal::SIGTERM)
        .map_err(|e| Failure::Broken(format!("sending SIGTERM to {host_pid}: {e}")))?;
    let still_answers = container.ask(&Request::Facts).map(expect_facts);
    check!(
        matches!(still_answers, Ok(Ok(_))),
        "expected the container's init to ignore SIGTERM (pid 1 has no handler for it), but it stopped \
         answering ({still_answers:?}): it is not protected as the init of its own pid namespace"
    );

    // SIGKILL from the host (the seed's `kill -9`) ends it, and the runtime notices.
    nix::sys::signal::kill(host_pid, nix::sys::signal::SIGKILL)
        .map_err(|e| Failure::Broken(format!("sending SIGKILL to {host_pid}: {e}")))?;
    container.wait_exit()?;
    let status = container.status()?;
    check!(
        status == Status::Stopped,
        "expected `state` to say stopped after SIGKILL to the init (host pid {host_pid}), saw {status}"
    );
    container.delete()?;
    Ok(())
}

fn children_die_with_init(cx: &Ctx) -> Outcome {
    let mut container = cx.launch(cx.spec("pid-orphans")?)?;
    let reply = container.ask(&Request::SpawnSleeper)?;
    let Reply::Spawned { pid: inner_pid } = reply else {
        return Err(Failure::Broken(format!(
            "expected the probe to report its child, saw {reply:?}"
        )));
    };
    // The child's host pid: the process whose parent is the init.
    let init = container.host_pid()?;
    let child = child_of(init).ok_or_else(|| {
        Failure::Broken(format!(
            "the probe reported a child (pid {inner_pid} inside) but the host sees no child of {init}"
        ))
    })?;
    // The kernel kills the rest of a pid namespace with its init; outside one, only a runtime's
    // or an engine's own cleanup might (docker kills the container's cgroup), which is no
    // namespace's promise.
    let nspid = procfs::process::Process::new(child.pid())
        .and_then(|p| p.status())
        .ok()
        .and_then(|s| s.nspid);
    let nested = nspid
        .as_ref()
        .is_some_and(|n| n.len() >= 2 && n.last() == Some(&inner_pid));
    if !nested {
        child.kill();
    }
    check!(
        nested,
        "expected the init's child (host pid {}) to be pid {inner_pid} of the container's own pid \
         namespace, whose end kills it, saw NSpid {nspid:?}: it lives in the host's pid namespace",
        child.pid()
    );
    container.ask(&Request::Exit { code: 0 })?;
    container.wait_exit()?;
    let gone = child
        .wait(std::time::Duration::from_secs(5))
        .unwrap_or(false);
    if !gone {
        child.kill();
    }
    check!(
        gone,
        "expected the init's child (host pid {}) to be killed when the init exited, but it is still \
         running: processes started in the container outlive it on the host",
        child.pid()
    );
    Ok(())
}

fn child_of(parent: i32) -> Option<ProcessHandle> {
    let pid = procfs::process::all_processes()
        .ok()?
        .filter_map(|p| p.ok())
        .find(|p| p.stat().is_ok_and(|s| s.ppid == parent))?
        .pid;
    ProcessHandle::open(pid).ok().flatten()
}
