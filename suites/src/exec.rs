//! Entering a running container (`<runtime> exec`): the new process is inside every namespace
//! and the cgroup of the container, holds nothing of the host, and runs as its process spec says.

use oci_spec::runtime::{
    Capability, LinuxCapabilitiesBuilder, LinuxNamespaceType::Network, UserBuilder,
};
use palisade_harness::driver::exec::ExecProcess;
use palisade_harness::lab::cgroups;
use palisade_harness::run::control::{Control, Defect};
use palisade_harness::run::scenario::{Schedule, expect_facts};
use palisade_harness::{
    Container, Ctx, Facts, Failure, Outcome, Reply, Request, Requirement, Scenario, check,
};

const PRIVILEGED: &[Requirement] = &[Requirement::Privileged];

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        area: "exec",
        name: "joins_every_namespace",
        checks: "A probe started with the runtime's `exec` has the init's inode for every namespace type in /proc/<pid>/ns, sees the init as pid 1, and sees the configured hostname.",
        control: Control::Defect(Defect::ExecMissesNamespace(Network)),
        means: "A process entered into the container shares a namespace with the host: `docker exec` and friends would run half outside.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: joins_every_namespace,
    },
    Scenario {
        area: "exec",
        name: "joins_the_cgroup",
        checks: "The exec'd process is in the container's cgroup in every hierarchy that matters (so its limits, pids.max included, count it), per /proc/<pid>/cgroup and cgroup.procs.",
        control: Control::Defect(Defect::ExecOutsideCgroup),
        means: "Processes entered into the container escape its limits and accounting.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: joins_the_cgroup,
    },
    Scenario {
        area: "exec",
        name: "no_host_fd_or_cwd",
        checks: "Every file descriptor of the exec'd process beyond its stdio (which the caller hands over), and its working directory, is reachable from the container's `/`: none leads to a host directory.",
        control: Control::Defect(Defect::ExecLeaksHostDir),
        means: "A process entered into the container holds a door to the host's filesystem (CVE-2024-21626).",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: no_host_fd_or_cwd,
    },
    Scenario {
        area: "exec",
        name: "process_spec_applies",
        checks: "exec with a process spec of uid/gid 1000, only CAP_KILL (in every set, ambient included, so it survives execve) and noNewPrivileges yields exactly those inside, not the init's.",
        control: Control::Defect(Defect::ExecIgnoresProcess),
        means: "A process entered with fewer privileges gets the container init's (or the caller's) instead.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: process_spec_applies,
    },
];

const HOSTNAME: &str = "palisade-exec";

/// A running container and the facts of its init.
fn container(cx: &Ctx, label: &str) -> Result<(Container, Facts), Failure> {
    let mut container = cx.launch(cx.spec(label)?.hostname(HOSTNAME))?;
    let init = expect_facts(container.ask(&Request::Facts)?)?;
    Ok((container, init))
}

fn exec_default(container: &Container) -> Result<ExecProcess, Failure> {
    Ok(container.exec(container.spec().exec_process())?)
}

fn joins_every_namespace(cx: &Ctx) -> Outcome {
    let (container, init) = container(cx, "exec-ns")?;
    let mut execed = exec_default(&container)?;
    let facts = expect_facts(execed.ask(&Request::Facts)?)?;
    for (kind, inode) in &init.namespaces {
        let seen = facts.namespaces.get(kind);
        check!(
            seen == Some(inode),
            "expected the exec'd process in the init's {kind} namespace (inode {inode}), saw \
             {seen:?}: exec did not join it"
        );
    }
    check!(
        facts.visible_pids.contains(&1) && facts.pid != 1,
        "expected the exec'd process to see the container's init as pid 1 (and be another pid), \
         saw itself as pid {} among {:?}",
        facts.pid,
        &facts.visible_pids[..facts.visible_pids.len().min(8)]
    );
    check!(
        facts.hostname == HOSTNAME,
        "expected the exec'd process to see the hostname {HOSTNAME:?}, saw {:?}",
        facts.hostname
    );
    Ok(())
}

fn joins_the_cgroup(cx: &Ctx) -> Outcome {
    let cgroups = cgroups::for_host(cx.host())?;
    let (container, _) = container(cx, "exec-cgroup")?;
    let mut execed = exec_default(&container)?;
    let pid = execed.host_pid()?;
    let init = container.host_pid()?;
    for controller in cgroups.placement_controllers() {
        let expected = cgroups.cgroup_of(init, &controller)?;
        let seen = cgroups.cgroup_of(pid, &controller)?;
        check!(
            seen == expected,
            "expected the exec'd process (host pid {pid}) in the container's {controller} cgroup \
             {expected}, /proc/{pid}/cgroup says {seen}: it escapes the container's limits"
        );
        let procs = cgroups.dir(&controller, &expected)?.join("cgroup.procs");
        let listed = std::fs::read_to_string(&procs)
            .map_err(|e| Failure::Broken(format!("reading {}: {e}", procs.display())))?
            .lines()
            .any(|l| l.trim() == pid.to_string());
        check!(
            listed,
            "expected {} to list the exec'd process {pid}",
            procs.display()
        );
    }
    Ok(())
}

fn no_host_fd_or_cwd(cx: &Ctx) -> Outcome {
    let (container, _) = container(cx, "exec-fds")?;
    let mut execed = exec_default(&container)?;
    let reply = execed.ask(&Request::OpenFiles)?;
    let Reply::OpenFiles { fds, cwd } = reply else {
        return Err(Failure::Broken(format!(
            "expected the open files, saw {reply:?}"
        )));
    };
    // 0-2 are the caller's own stdio (pipes, and a log file on the host), passed on on purpose.
    let leaked: Vec<String> = fds
        .iter()
        .filter(|f| f.fd.is_some_and(|fd| fd > 2) && !f.reachable)
        .map(|f| format!("fd {:?} → {}", f.fd, f.target))
        .collect();
    check!(
        leaked.is_empty(),
        "expected every descriptor of the exec'd process to lie inside the container, these \
         lead outside: {leaked:?}: the process holds a door to the host's filesystem"
    );
    check!(
        cwd.reachable,
        "expected the exec'd process's working directory inside the container, saw {}",
        cwd.target
    );
    Ok(())
}

fn process_spec_applies(cx: &Ctx) -> Outcome {
    let (container, _) = container(cx, "exec-spec")?;
    let kill = vec![Capability::Kill];
    let mut process = container.spec().exec_process();
    process.set_user(
        UserBuilder::default()
            .uid(1000u32)
            .gid(1000u32)
            .build()
            .map_err(|e| Failure::Broken(format!("building the user: {e}")))?,
    );
    let only_kill: oci_spec::runtime::Capabilities = kill.iter().copied().collect();
    process.set_capabilities(Some(
        LinuxCapabilitiesBuilder::default()
            .bounding(only_kill.clone())
            .effective(only_kill.clone())
            .permitted(only_kill.clone())
            // A non-root process keeps capabilities across execve(2) only through the ambient set.
            .inheritable(only_kill.clone())
            .ambient(only_kill)
            .build()
            .map_err(|e| Failure::Broken(format!("building the capabilities: {e}")))?,
    ));
    process.set_no_new_privileges(Some(true));
    let mut execed = container.exec(process)?;
    let facts = expect_facts(execed.ask(&Request::Facts)?)?;
    let mask = palisade_common::capabilities::mask(&kill);
    check!(
        (facts.uid, facts.gid) == (1000, 1000),
        "expected the exec'd process to run as 1000:1000, as its process spec says, saw {}:{}",
        facts.uid,
        facts.gid
    );
    let sets = facts.capabilities;
    check!(
        [
            sets.effective,
            sets.permitted,
            sets.bounding,
            sets.inheritable,
            sets.ambient
        ] == [mask; 5],
        "expected exactly CAP_KILL in each of the exec'd process's capability sets ({mask:#x}), \
         saw {sets:x?}: it holds other privileges than its process spec grants"
    );
    check!(
        facts.no_new_privs,
        "expected NoNewPrivs: 1 in the exec'd process, as its process spec says"
    );
    Ok(())
}
