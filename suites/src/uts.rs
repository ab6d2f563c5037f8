//! UTS namespace: the hostname is the container's own.
//!
//! Each scenario runs the runtime in a throwaway UTS namespace that plays the host
//! ([`Ctx::isolate_host_uts`]), so the negative controls can let a container rename "the host"
//! without touching the real machine.

use oci_spec::runtime::{Capability, LinuxNamespaceType::Uts};
use palisade_harness::host::current_hostname;
use palisade_harness::scenario::expect_facts;
use palisade_harness::{Ctx, Outcome, Reply, Request, Requirement, Scenario, check};

const PRIVILEGED: &[Requirement] = &[Requirement::Privileged];

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        area: "uts",
        name: "hostname_is_the_configured_one",
        checks: "The hostname inside is the config's `hostname`; the host's is unchanged.",
        control: "the config sets no hostname (the container keeps a copy of the host's)",
        means: "The container does not get the identity its config names.",
        requires: PRIVILEGED,
        run: hostname_is_the_configured_one,
    },
    Scenario {
        area: "uts",
        name: "sethostname_stays_inside",
        checks: "A container holding CAP_SYS_ADMIN that calls sethostname changes its own hostname, not the host's.",
        control: "no uts namespace in the config (sethostname renames the host)",
        means: "A container can rename the host.",
        requires: PRIVILEGED,
        run: sethostname_stays_inside,
    },
    Scenario {
        area: "uts",
        name: "two_containers_two_hostnames",
        checks: "Two containers running at once each see their own hostname.",
        control: "the second container joins the first one's uts namespace",
        means: "Containers share one UTS namespace and overwrite each other's identity.",
        requires: PRIVILEGED,
        run: two_containers_two_hostnames,
    },
];

fn hostname_is_the_configured_one(cx: &Ctx) -> Outcome {
    let host_name = cx.isolate_host_uts()?;
    let wanted = "palisade-uts";
    let mut spec = cx.spec(wanted, &Request::Facts)?.hostname(wanted);
    if cx.under_control() {
        spec.spec.set_hostname(None);
    }
    let facts = cx.facts_of(spec)?;
    check!(
        facts.hostname == wanted,
        "expected the hostname inside to be the configured {wanted:?}, saw {:?}",
        facts.hostname
    );
    let after = current_hostname();
    check!(
        after == host_name,
        "expected the host's hostname to stay {host_name:?}, saw {after:?}"
    );
    Ok(())
}

fn sethostname_stays_inside(cx: &Ctx) -> Outcome {
    let host_name = cx.isolate_host_uts()?;
    let mut spec = cx
        .spec("palisade-uts", &Request::Facts)?
        .grant(&[Capability::SysAdmin])
        .serve();
    if cx.under_control() {
        spec = spec.without_namespace(Uts);
    }
    let mut container = cx.launch(spec)?;
    let renamed = "renamed-inside";
    let outcome = container.ask(&Request::SetHostname {
        name: renamed.into(),
    })?;
    check!(
        matches!(&outcome, Reply::Syscall(o) if o.succeeded()),
        "expected sethostname to succeed with CAP_SYS_ADMIN granted, saw {outcome:?}"
    );
    let inside = expect_facts(container.ask(&Request::Facts)?)?.hostname;
    check!(
        inside == renamed,
        "expected the container to see its new hostname {renamed:?}, saw {inside:?}"
    );
    let host_now = current_hostname();
    check!(
        host_now == host_name,
        "expected the host's hostname to stay {host_name:?} after the container renamed itself, saw \
         {host_now:?}: the container shares the host's UTS namespace"
    );
    Ok(())
}

fn two_containers_two_hostnames(cx: &Ctx) -> Outcome {
    cx.isolate_host_uts()?;
    let mut first = cx.launch(cx.spec("first", &Request::Facts)?.hostname("first").serve())?;
    first.ask(&Request::Facts)?;
    let mut second_spec = cx
        .spec("second", &Request::Facts)?
        .hostname("second")
        .serve();
    if cx.under_control() {
        let path = format!("/proc/{}/ns/uts", first.host_pid());
        second_spec = second_spec
            .join_namespace(Uts, std::path::Path::new(&path))
            .edit(|s| {
                s.set_hostname(None);
            });
    }
    let mut second = cx.launch(second_spec)?;
    let seen_by_second = expect_facts(second.ask(&Request::Facts)?)?.hostname;
    let seen_by_first = expect_facts(first.ask(&Request::Facts)?)?.hostname;
    check!(
        seen_by_first == "first" && seen_by_second == "second",
        "expected the containers to see \"first\" and \"second\", saw {seen_by_first:?} and \
         {seen_by_second:?}: they share one UTS namespace"
    );
    Ok(())
}
