//! One kernel, another userland: a container is not a VM.

use palisade_harness::run::control::{Control, Edit};
use palisade_harness::run::scenario::Schedule;
use palisade_harness::{Ctx, Outcome, Requirement, Scenario, check};

pub const SCENARIOS: &[Scenario] = &[Scenario {
    area: "kernel",
    name: "shared_kernel_own_userland",
    checks: "`uname -r` inside is the host's (one shared kernel), while /etc/os-release is the rootfs's, not the host's.",
    control: Control::config(Edit::BindHostFile("/etc/os-release")),
    means: "The container sees the host's files instead of its own image.",
    requires: &[Requirement::Privileged],
    schedule: Schedule::Parallel,
    run: shared_kernel_own_userland,
}];

fn shared_kernel_own_userland(cx: &Ctx) -> Outcome {
    let facts = cx.facts_of(cx.spec("kernel")?)?;
    check!(
        facts.kernel_release == cx.host().kernel_release,
        "expected the container to run on the host's kernel {:?}, saw {:?}",
        cx.host().kernel_release,
        facts.kernel_release
    );
    let host_os = std::fs::read_to_string("/etc/os-release").ok();
    check!(
        facts.os_release.as_deref() == Some(cx.own_os_release().as_str())
            && facts.os_release != host_os,
        "expected /etc/os-release inside to be the rootfs's (the bundle's or the image's, \
         ID=palisade…), saw {:?}: the container sees the host's files",
        facts.os_release.as_deref().and_then(|t| t.lines().next())
    );
    Ok(())
}
