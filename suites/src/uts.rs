//! UTS namespace: the hostname is the container's own.
//!
//! Each scenario runs the runtime in a throwaway UTS namespace that plays the host
//! ([`Ctx::isolate_host_uts`]), so the negative controls can let a container rename "the host"
//! without touching the real machine.

use oci_spec::runtime::{Capability, LinuxNamespaceType::Uts};
use palisade_harness::run::control::{Control, Edit};
use palisade_harness::run::scenario::{Schedule, expect_facts};
use palisade_harness::{Ctx, Outcome, Reply, Request, Requirement, Scenario, check, require};

const PRIVILEGED: &[Requirement] = &[Requirement::Privileged];

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        area: "uts",
        name: "hostname_is_the_configured_one",
        checks: "The hostname inside is the config's `hostname`; the host's is unchanged.",
        control: Control::config(Edit::NoHostname),
        means: "The container does not get the identity its config names.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: hostname_is_the_configured_one,
    },
    Scenario {
        area: "uts",
        name: "sethostname_stays_inside",
        checks: "A container holding CAP_SYS_ADMIN that calls sethostname changes its own hostname, not the host's.",
        control: Control::config(Edit::WithoutNamespace(Uts)),
        means: "A container can rename the host.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: sethostname_stays_inside,
    },
    Scenario {
        area: "uts",
        name: "two_containers_two_hostnames",
        checks: "Two containers running at once each see their own hostname.",
        control: Control::config_of(
            "second",
            Edit::JoinNamespaceOf {
                kind: Uts,
                of: "first",
            },
        ),
        means: "Containers share one UTS namespace and overwrite each other's identity.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: two_containers_two_hostnames,
    },
];

fn hostname_is_the_configured_one(cx: &Ctx) -> Outcome {
    let host_name = cx.isolate_host_uts()?;
    let wanted = "palisade-uts";
    let facts = cx.facts_of(cx.spec(wanted)?.hostname(wanted))?;
    check!(
        facts.hostname == wanted,
        "expected the hostname inside to be the configured {wanted:?}, saw {:?}",
        facts.hostname
    );
    let after = cx.host_hostname()?;
    check!(
        after == host_name,
        "expected the host's hostname to stay {host_name:?}, saw {after:?}"
    );
    Ok(())
}

fn sethostname_stays_inside(cx: &Ctx) -> Outcome {
    let host_name = cx.isolate_host_uts()?;
    let mut container = cx.launch(cx.spec("palisade-uts")?.grant(&[Capability::SysAdmin]))?;
    let renamed = "renamed-inside";
    let outcome = container.ask(&Request::SetHostname {
        name: renamed.into(),
    })?;
    require!(
        matches!(&outcome, Reply::Syscall(o) if o.succeeded()),
        "expected sethostname to succeed with CAP_SYS_ADMIN granted, saw {outcome:?}"
    );
    let inside = expect_facts(container.ask(&Request::Facts)?)?.hostname;
    check!(
        inside == renamed,
        "expected the container to see its new hostname {renamed:?}, saw {inside:?}"
    );
    let host_now = cx.host_hostname()?;
    check!(
        host_now == host_name,
        "expected the host's hostname to stay {host_name:?} after the container renamed itself, saw \
         {host_now:?}: the container shares the host's UTS namespace"
    );
    Ok(())
}

fn two_containers_two_hostnames(cx: &Ctx) -> Outcome {
    cx.isolate_host_uts()?;
    let mut first = cx.launch(cx.spec("first")?.hostname("first"))?;
    first.ask(&Request::Facts)?;
    let mut second = cx.launch(cx.spec("second")?.hostname("second"))?;
    let seen_by_second = expect_facts(second.ask(&Request::Facts)?)?.hostname;
    let seen_by_first = expect_facts(first.ask(&Request::Facts)?)?.hostname;
    check!(
        seen_by_first == "first" && seen_by_second == "second",
        "expected the containers to see \"first\" and \"second\", saw {seen_by_first:?} and \
         {seen_by_second:?}: they share one UTS namespace"
    );
    Ok(())
}
