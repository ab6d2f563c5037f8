//! Namespaces: every namespace the config asks for is new, every other one is the host's.

use oci_spec::runtime::LinuxNamespaceType::{self, Cgroup, Ipc, Mount, Network, Pid, Time, Uts};
use palisade_common::namespaces::proc_name as proc_ns_name;
use palisade_harness::driver::RuntimeError;
use palisade_harness::host::{process_namespaces, thread_namespaces};
use palisade_harness::{Ctx, Failure, HarnessError, Outcome, Request, Requirement, Scenario};

const PRIVILEGED: &[Requirement] = &[Requirement::Privileged];

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        area: "namespaces",
        name: "pid_mnt_uts_ipc_new_net_cgroup_shared",
        checks: "Asked for pid, mnt, uts and ipc: those four have inodes of their own in `/proc/<pid>/ns`; net and cgroup are the host's.",
        control: "the ipc entry joins the host's ipc namespace (a runtime that did not unshare it)",
        means: "A namespace the config asked for is silently shared with the host: that whole isolation layer is missing.",
        requires: PRIVILEGED,
        run: first_subset,
    },
    Scenario {
        area: "namespaces",
        name: "mnt_net_cgroup_new_pid_uts_ipc_shared",
        checks: "Asked for mnt, net and cgroup: those three are new; pid, uts and ipc are the host's.",
        control: "the net entry joins the host's network namespace",
        means: "The runtime isolates differently from what the config says: either a layer is missing or the container cannot share what it was meant to.",
        requires: PRIVILEGED,
        run: second_subset,
    },
    Scenario {
        area: "namespaces",
        name: "time_is_new",
        checks: "Asked for a time namespace, the container gets one of its own.",
        control: "the time entry joins the host's time namespace",
        means: "Clock offsets set inside the container would change the host's clocks.",
        requires: &[Requirement::Privileged, Requirement::Namespace("time")],
        run: time_is_new,
    },
];

fn first_subset(cx: &Ctx) -> Outcome {
    compare(cx, "ns-a", &[Mount, Pid, Uts, Ipc], Ipc)
}

fn second_subset(cx: &Ctx) -> Outcome {
    compare(cx, "ns-b", &[Mount, Network, Cgroup], Network)
}

fn time_is_new(cx: &Ctx) -> Outcome {
    // Runtimes that predate time namespaces refuse such a config at `create`: a missing feature.
    let mut spec = cx
        .spec("ns-time-supported", &Request::Facts)?
        .only_namespaces(&[Mount, Pid, Time]);
    spec.spec.set_hostname(None);
    if let Err(HarnessError::Runtime(refusal @ RuntimeError::Failed { verb: "create", .. })) =
        cx.run_once(spec)
    {
        return Err(Failure::Skipped(format!(
            "the runtime cannot create a time namespace: {refusal}"
        )));
    }
    compare(cx, "ns-time", &[Mount, Pid, Time], Time)
}

/// Runs a container asking for `requested` (under the control, `sabotaged` joins the host's
/// namespace instead) and compares /proc/<pid>/ns of its init with the host's, type by type.
fn compare(
    cx: &Ctx,
    label: &str,
    requested: &[LinuxNamespaceType],
    sabotaged: LinuxNamespaceType,
) -> Outcome {
    let host = thread_namespaces();
    let mut spec = cx
        .spec(label, &Request::Facts)?
        .only_namespaces(requested)
        .serve();
    if cx.under_control() {
        let host_ns = format!(
            "/proc/{}/ns/{}",
            std::process::id(),
            proc_ns_name(sabotaged)
        );
        spec = spec.join_namespace(sabotaged, std::path::Path::new(&host_ns));
    }
    let mut container = cx.launch(spec)?;
    container.ask(&Request::Facts)?;
    let inside = process_namespaces(container.host_pid());
    container.close_stdin();

    let kinds = [Mount, Cgroup, Uts, Ipc, Pid, Network, Time];
    for kind in kinds
        .into_iter()
        .filter(|k| host.contains_key(proc_ns_name(*k)))
    {
        let name = proc_ns_name(kind);
        let (Some(h), Some(c)) = (host.get(name), inside.get(name)) else {
            return Err(Failure::Broken(format!(
                "cannot read the {name} namespace of the container's init"
            )));
        };
        if requested.contains(&kind) {
            palisade_harness::check!(
                h != c,
                "expected a {name} namespace of its own (the config asks for one), but /proc/{}/ns/{name} \
                 is the host's (inode {c}): the container is not isolated in {name}",
                container.host_pid()
            );
        } else {
            palisade_harness::check!(
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
