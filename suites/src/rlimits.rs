//! Resource limits: every `process.rlimits` entry is what the container's process gets.

use oci_spec::runtime::{PosixRlimit, PosixRlimitBuilder, PosixRlimitType};
use palisade_harness::run::control::{Control, Edit};
use palisade_harness::run::scenario::Schedule;
use palisade_harness::{Ctx, Failure, Outcome, Reply, Request, Requirement, Scenario, check};

pub const SCENARIOS: &[Scenario] = &[Scenario {
    area: "rlimits",
    name: "every_limit_applies",
    checks: "Each `process.rlimits` entry (RLIMIT_NOFILE, RLIMIT_CORE, RLIMIT_SIGPENDING, RLIMIT_MSGQUEUE) is what getrlimit(2) returns inside, soft and hard.",
    control: Control::config(Edit::Rlimit {
        name: "RLIMIT_NOFILE",
        soft: 1024,
        hard: 1024,
    }),
    means: "The container gets other resource limits than configured: more open files, signals or queue memory than allowed, or core dumps where none were wanted.",
    requires: &[Requirement::Privileged],
    schedule: Schedule::Parallel,
    run: every_limit_applies,
}];

/// The limits the scenario asks for: below this host's hard limits (the runtime cannot raise a
/// hard limit without CAP_SYS_RESOURCE), and different from their usual defaults.
fn wanted() -> Result<Vec<PosixRlimit>, Failure> {
    use nix::sys::resource::{Resource, getrlimit};
    let table = [
        (
            PosixRlimitType::RlimitNofile,
            Resource::RLIMIT_NOFILE,
            256,
            512,
        ),
        (PosixRlimitType::RlimitCore, Resource::RLIMIT_CORE, 0, 0),
        (
            PosixRlimitType::RlimitSigpending,
            Resource::RLIMIT_SIGPENDING,
            100,
            200,
        ),
        (
            PosixRlimitType::RlimitMsgqueue,
            Resource::RLIMIT_MSGQUEUE,
            4096,
            8192,
        ),
    ];
    table
        .into_iter()
        .map(|(typ, resource, soft, hard)| {
            let (_, host_hard) = getrlimit(resource)
                .map_err(|e| Failure::Broken(format!("getrlimit({typ}) on the host: {e}")))?;
            let hard: u64 = hard.min(host_hard);
            PosixRlimitBuilder::default()
                .typ(typ)
                .soft(soft.min(hard))
                .hard(hard)
                .build()
                .map_err(|e| Failure::Broken(format!("building {typ}: {e}")))
        })
        .collect()
}

fn every_limit_applies(cx: &Ctx) -> Outcome {
    let limits = wanted()?;
    let spec = cx.spec("rlimits")?.edit(|s| {
        if let Some(process) = s.process_mut() {
            process.set_rlimits(Some(limits.clone()));
        }
    });
    let reply = cx.run_once(spec.one_shot(&Request::Rlimits))?;
    let Reply::Limits { limits: seen } = reply else {
        return Err(Failure::Broken(format!(
            "expected the probe's resource limits, saw {reply:?}"
        )));
    };
    for limit in &limits {
        let name = limit.typ().to_string();
        let got = seen.get(&name).ok_or_else(|| {
            Failure::Broken(format!("the probe did not report {name} ({seen:?})"))
        })?;
        check!(
            got.soft == Some(limit.soft()) && got.hard == Some(limit.hard()),
            "expected {name} {}/{} (soft/hard) inside, as configured, saw {:?}/{:?}: the runtime \
             does not apply the limits it was given",
            limit.soft(),
            limit.hard(),
            got.soft,
            got.hard
        );
    }
    Ok(())
}
