//! One kernel, another userland: a container is not a VM.

use oci_spec::runtime::MountBuilder;
use palisade_harness::{Ctx, Failure, Outcome, Request, Requirement, Scenario, check};

pub const SCENARIOS: &[Scenario] = &[Scenario {
    area: "kernel",
    name: "shared_kernel_own_userland",
    checks: "`uname -r` inside is the host's (one shared kernel), while /etc/os-release is the rootfs's, not the host's.",
    control: "the host's /etc/os-release is bind-mounted into the container",
    means: "The container sees the host's files instead of its own image.",
    requires: &[Requirement::Privileged],
    run: shared_kernel_own_userland,
}];

fn shared_kernel_own_userland(cx: &Ctx) -> Outcome {
    let mut spec = cx.spec("kernel", &Request::Facts)?;
    if cx.under_control() {
        let bind = MountBuilder::default()
            .destination("/etc/os-release")
            .typ("bind")
            .source("/etc/os-release")
            .options(vec!["bind".to_owned(), "ro".to_owned()])
            .build()
            .map_err(|e| Failure::Broken(format!("building the control's bind mount: {e}")))?;
        spec = spec.edit(|s| s.mounts_mut().get_or_insert_with(Vec::new).push(bind));
    }
    let facts = cx.facts_of(spec)?;
    check!(
        facts.kernel_release == cx.host().kernel_release,
        "expected the container to run on the host's kernel {:?}, saw {:?}",
        cx.host().kernel_release,
        facts.kernel_release
    );
    let host_os = std::fs::read_to_string("/etc/os-release").ok();
    check!(
        facts.os_release.as_deref()
            == Some(palisade_harness::bundle::os_release(&cx.run.id).as_str())
            && facts.os_release != host_os,
        "expected /etc/os-release inside to be the rootfs's (ID=palisade), saw {:?}: the container \
         sees the host's files",
        facts.os_release.as_deref().and_then(|t| t.lines().next())
    );
    Ok(())
}
