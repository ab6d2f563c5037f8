//! Namespaces: every namespace the config asks for is new, every other one is the host's.

use oci_spec::runtime::LinuxNamespaceType::{
    self, Cgroup, Ipc, Mount, Network, Pid, Time, User, Uts,
};
use palisade_common::namespaces::{ALL, proc_name};
use palisade_harness::driver::RuntimeError;
use palisade_harness::lab::host::{process_namespaces, thread_namespaces};
use palisade_harness::run::control::{Control, Edit};
use palisade_harness::run::scenario::Schedule;
use palisade_harness::{Ctx, Failure, HarnessError, Outcome, Requirement, Scenario, check};

const PRIVILEGED: &[Requirement] = &[Requirement::Privileged];

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        area: "namespaces",
        name: "pid_mnt_uts_ipc_new_net_cgroup_shared",
        checks: "Asked for pid, mnt, uts and ipc: those four have inodes of their own in `/proc/<pid>/ns`; net and cgroup are the host's.",
        control: Control::config(Edit::JoinHostNamespace(Ipc)),
        means: "A namespace the config asked for is silently shared with the host: that whole isolation layer is missing.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: first_subset,
    },
    Scenario {
        area: "namespaces",
        name: "mnt_net_cgroup_new_pid_uts_ipc_shared",
        checks: "Asked for mnt, net and cgroup: those three are new; pid, uts and ipc are the host's.",
        control: Control::config(Edit::JoinHostNamespace(Network)),
        means: "The runtime isolates differently from what the config says: either a layer is missing or the container cannot share what it was meant to.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: second_subset,
    },
    Scenario {
        area: "namespaces",
        name: "user_is_new",
        checks: "Asked for mnt, pid, uts, ipc, net and user (root mapped to 100000): those six are new, the user namespace included; cgroup is the host's.",
        control: Control::config(Edit::WithoutNamespace(User)),
        means: "The container runs in the host's user namespace: its root is the host's root.",
        requires: &[Requirement::Privileged, Requirement::Namespace("user")],
        schedule: Schedule::Parallel,
        run: user_is_new,
    },
    Scenario {
        area: "namespaces",
        name: "time_is_new",
        checks: "Asked for a time namespace, the container gets one of its own.",
        control: Control::config_of("ns-time", Edit::JoinHostNamespace(Time)),
        means: "Clock offsets set inside the container would change the host's clocks.",
        requires: &[Requirement::Privileged, Requirement::Namespace("time")],
        schedule: Schedule::Parallel,
        run: time_is_new,
    },
];

fn first_subset(cx: &Ctx) -> Outcome {
    compare(cx, "ns-a", &[Mount, Pid, Uts, Ipc])
}

fn second_subset(cx: &Ctx) -> Outcome {
    compare(cx, "ns-b", &[Mount, Network, Cgroup])
}

fn user_is_new(cx: &Ctx) -> Outcome {
    // A network namespace too: sysfs can only be mounted by the user namespace that owns it.
    compare(cx, "ns-user", &[Mount, Pid, Uts, Ipc, Network, User])
}

fn time_is_new(cx: &Ctx) -> Outcome {
    // Runtimes that predate time namespaces refuse such a config at `create`: a missing feature.
    let spec = cx
        .spec("ns-time-supported")?
        .only_namespaces(&[Mount, Pid, Time]);
    if let Err(HarnessError::Runtime(refusal @ RuntimeError::Failed { verb: "create", .. })) =
        cx.run_once(spec.one_shot(&palisade_harness::Request::Facts))
    {
        return Err(Failure::Skipped(format!(
            "the runtime cannot create a time namespace: {refusal}"
        )));
    }
    compare(cx, "ns-time", &[Mount, Pid, Time])
}

/// Runs a container asking for `requested` namespaces and compares /proc/<pid>/ns of its init
/// with the host's, for every namespace type the kernel offers.
fn compare(cx: &Ctx, label: &str, requested: &[LinuxNamespaceType]) -> Outcome {
    let broken = |what: &str, e: std::io::Error| Failure::Broken(format!("{what}: {e}"));
    let host = thread_namespaces().map_err(|e| broken("reading the host's namespaces", e))?;
    let mut spec = cx.spec(label)?.only_namespaces(requested);
    if requested.contains(&User) {
        spec = spec.user_namespace(100_000, 65_536);
    }
    let mut container = cx.launch(spec)?;
    container.ask(&palisade_harness::Request::Facts)?;
    let pid = container.host_pid();
    let inside = process_namespaces(pid)
        .map_err(|e| broken("reading the container init's namespaces", e))?;
    container.close_stdin();

    for kind in ALL {
        let name = proc_name(kind);
        if !cx.host().has_namespace(name) {
            continue;
        }
        let (Some(h), Some(c)) = (host.get(name), inside.get(name)) else {
            return Err(Failure::Broken(format!(
                "the kernel offers {name} namespaces, but /proc/thread-self/ns or /proc/{pid}/ns \
                 does not list one"
            )));
        };
        if requested.contains(&kind) {
            check!(
                h != c,
                "expected a {name} namespace of its own (the config asks for one), but /proc/{pid}/ns/{name} \
                 is the host's (inode {c}): the container is not isolated in {name}"
            );
        } else {
            check!(
                h == c,
                "expected the host's {name} namespace (inode {h}; the config does not ask for one), saw \
                 inode {c}: the runtime created a namespace nobody asked for",
            );
        }
    }
    container.wait_exit()?;
    container.delete()?;
    Ok(())
}
