//! seccomp: the filter the config describes is the one the container runs under.

use oci_spec::runtime::{LinuxSeccompAction, LinuxSeccompBuilder, LinuxSyscallBuilder};
use palisade_harness::run::control::{Control, Edit};
use palisade_harness::run::scenario::Schedule;
use palisade_harness::{
    Ctx, Failure, Outcome, Reply, Request, Requirement, Scenario, check, require,
};
use palisade_probe::protocol::{SyscallOutcome, SyscallProbe};

const PRIVILEGED: &[Requirement] = &[Requirement::Privileged];

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        area: "seccomp",
        name: "denied_syscall_fails_with_the_configured_errno",
        checks: "A profile that returns ENOMSG (42) for getcwd(2) and allows everything else makes getcwd fail with exactly ENOMSG inside, while uname(2) still works.",
        control: Control::config(Edit::NoSeccomp),
        means: "The container is not confined by the seccomp profile it was given: every syscall the profile forbids is open to it.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: denied_syscall_fails_with_the_configured_errno,
    },
    Scenario {
        area: "seccomp",
        name: "default_profile_blocks_namespace_creation",
        checks: "Under Docker's default profile (and the default capabilities), unshare(CLONE_NEWUSER) and keyctl(2) fail with EPERM while ordinary calls work.",
        control: Control::config(Edit::NoSeccomp),
        means: "A container under the usual default profile can still create user namespaces and reach the kernel keyring, the ways in of many kernel exploits.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: default_profile_blocks_namespace_creation,
    },
];

use palisade_common::profiles::host_architectures;

fn outcomes(reply: Reply) -> Result<Vec<SyscallOutcome>, Failure> {
    match reply {
        Reply::Calls { outcomes } => Ok(outcomes),
        other => Err(Failure::Broken(format!(
            "expected the syscalls' outcomes, saw {other:?}"
        ))),
    }
}

fn denied_syscall_fails_with_the_configured_errno(cx: &Ctx) -> Outcome {
    const ENOMSG: u32 = 42;
    let deny_getcwd = LinuxSyscallBuilder::default()
        .names(vec!["getcwd".to_owned()])
        .action(LinuxSeccompAction::ScmpActErrno)
        .errno_ret(ENOMSG)
        .build()
        .map_err(|e| Failure::Broken(format!("building the profile: {e}")))?;
    let profile = LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(host_architectures())
        .syscalls(vec![deny_getcwd])
        .build()
        .map_err(|e| Failure::Broken(format!("building the profile: {e}")))?;
    let spec = cx.spec("seccomp-errno")?.seccomp(profile);
    let seen = outcomes(cx.run_once(spec.one_shot(&Request::Syscalls {
        calls: vec![SyscallProbe::Getcwd, SyscallProbe::Uname],
    }))?)?;
    let [getcwd, uname] = &seen[..] else {
        return Err(Failure::Broken(format!(
            "expected two outcomes, saw {seen:?}"
        )));
    };
    require!(
        uname.succeeded(),
        "expected uname(2), which the profile allows, to work: {uname:?}"
    );
    check!(
        getcwd.errno.as_deref() == Some("ENOMSG"),
        "expected getcwd(2) to fail with ENOMSG, as the profile says, saw {getcwd:?}: the \
         container does not run under the profile it was given"
    );
    Ok(())
}

fn default_profile_blocks_namespace_creation(cx: &Ctx) -> Outcome {
    let profile = palisade_common::profiles::docker_default()
        .map_err(|e| Failure::Broken(format!("Docker's default profile: {e}")))?;
    let spec = cx.spec("seccomp-default")?.seccomp(profile);
    let seen = outcomes(cx.run_once(spec.one_shot(&Request::Syscalls {
        calls: vec![
            SyscallProbe::Uname,
            SyscallProbe::UnshareUser,
            SyscallProbe::Keyctl,
        ],
    }))?)?;
    let [uname, unshare, keyctl] = &seen[..] else {
        return Err(Failure::Broken(format!(
            "expected three outcomes, saw {seen:?}"
        )));
    };
    require!(
        uname.succeeded(),
        "expected uname(2) to work under the default profile: {uname:?}"
    );
    for (name, outcome) in [("unshare(CLONE_NEWUSER)", unshare), ("keyctl", keyctl)] {
        check!(
            outcome.errno.as_deref() == Some("EPERM"),
            "expected {name} to fail with EPERM under Docker's default profile, saw {outcome:?}: \
             the profile is not applied"
        );
    }
    Ok(())
}
