//! Entering a container from the host, as `nsenter` does, through the pid the runtime's `state`
//! reports: that is the container's init, and its namespaces are the container's.

use std::process::Command;

use palisade_harness::run::control::{Control, Defect};
use palisade_harness::run::scenario::{Schedule, expect_facts};
use palisade_harness::{
    Ctx, Failure, Outcome, Reply, Request, Requirement, Response, Scenario, check,
};

pub const SCENARIOS: &[Scenario] = &[Scenario {
    area: "nsenter",
    name: "host_joins_what_the_runtime_reports",
    checks: "From the host, setns(2) into /proc/<state pid>/ns/{uts,ipc,net,pid,cgroup} (as nsenter does) lands in the container: the probe there sees the configured hostname, the container's namespace inodes, a nested pid namespace and the container's network interfaces.",
    control: Control::Defect(Defect::StateReportsWrongPid),
    means: "The pid the runtime reports is not the container's init: `kill`, `nsenter` and monitoring act on the wrong process.",
    requires: &[Requirement::Privileged, Requirement::Program("nsenter")],
    schedule: Schedule::Parallel,
    run: host_joins_what_the_runtime_reports,
}];

const HOSTNAME: &str = "palisade-nsenter";

/// Runs the run's probe with `request`, from the host, inside the namespaces of `pid`.
fn probe_in(cx: &Ctx, pid: i32, request: &Request) -> Result<Reply, Failure> {
    let done = palisade_harness::exec::run(
        Command::new("nsenter")
            .arg("--target")
            .arg(pid.to_string())
            .args(["--uts", "--ipc", "--net", "--pid", "--cgroup", "--"])
            .arg(&cx.run.probe)
            .arg(request.to_arg()),
        cx.deadline()
            .saturating_duration_since(std::time::Instant::now()),
    )
    .map_err(|e| Failure::Broken(format!("running nsenter: {e}")))?;
    let line = done.stdout.lines().next().unwrap_or_default();
    match serde_json::from_str::<Response>(line) {
        Ok(Response::Ok { reply }) => Ok(reply),
        other => Err(Failure::Broken(format!(
            "nsenter into pid {pid}: {other:?} ({})",
            done.stderr.trim()
        ))),
    }
}

fn interfaces(reply: Reply) -> Result<Vec<String>, Failure> {
    match reply {
        Reply::Interfaces { names } => Ok(names),
        other => Err(Failure::Broken(format!(
            "expected interfaces, saw {other:?}"
        ))),
    }
}

fn host_joins_what_the_runtime_reports(cx: &Ctx) -> Outcome {
    // The host's hostname is a known throwaway one: what nsenter lands in must not be it.
    cx.isolate_host_uts()?;
    let mut container = cx.launch(cx.spec("nsenter")?.hostname(HOSTNAME))?;
    let inside = expect_facts(container.ask(&Request::Facts)?)?;
    let inside_links = interfaces(container.ask(&Request::Interfaces)?)?;
    let pid = container
        .state()?
        .pid()
        .ok_or_else(|| Failure::Broken("`state` reports no pid for a running container".into()))?;

    let entered = expect_facts(probe_in(cx, pid, &Request::Facts)?)?;
    check!(
        entered.hostname == HOSTNAME,
        "expected nsenter into the pid `state` reports ({pid}) to see the hostname {HOSTNAME:?}, \
         saw {:?}: that pid is not the container's init",
        entered.hostname
    );
    // nsenter forks after joining the pid namespace, so the probe is a member of it.
    for name in ["uts", "ipc", "net", "pid", "cgroup"] {
        let (seen, wanted) = (entered.namespaces.get(name), inside.namespaces.get(name));
        check!(
            seen.is_some() && seen == wanted,
            "expected nsenter into pid {pid} to join the container's {name} namespace ({wanted:?}), \
             saw {seen:?}"
        );
    }
    check!(
        entered.nspid.len() >= 2,
        "expected the probe entered through pid {pid} to be in a nested pid namespace, its NSpid \
         reads {:?}",
        entered.nspid
    );
    let entered_links = interfaces(probe_in(cx, pid, &Request::Interfaces)?)?;
    check!(
        entered_links == inside_links,
        "expected nsenter into pid {pid} to see the container's interfaces {inside_links:?}, saw \
         {entered_links:?}"
    );
    Ok(())
}
