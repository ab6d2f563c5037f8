//! A fixed run for the reporters' snapshot tests: every verdict, an unavailable runtime, a
//! runtime that failed its preflight, and messages full of characters each format must escape.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{RunReport, RuntimeReport, RuntimeStatus};
use crate::driver::RuntimeInfo;
use crate::lab::host::{CgroupMode, HostFacts};
use crate::run::runner::{TrialResult, Verdict};

pub fn host() -> HostFacts {
    HostFacts {
        euid: 0,
        has_sys_admin: true,
        bounding_caps: 0x1ff_ffff_ffff,
        cgroup_mode: CgroupMode::Hybrid,
        namespaces: ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"]
            .into_iter()
            .map(str::to_owned)
            .collect::<BTreeSet<_>>(),
        kernel_release: "6.1.0-test-amd64".into(),
        distribution: Some("Debian GNU/Linux 12 (bookworm)".into()),
        architecture: "x86_64".into(),
        hostname: "testhost".into(),
        in_vm: true,
        in_ci: false,
    }
}

fn info(name: &str, version: &str) -> Option<RuntimeInfo> {
    Some(RuntimeInfo {
        name: name.into(),
        path: format!("/usr/bin/{name}").into(),
        version: version.into(),
    })
}

fn result(runtime: &str, name: &str, verdict: Verdict, millis: u64) -> TrialResult {
    TrialResult {
        runtime: runtime.into(),
        name: name.into(),
        verdict,
        duration: Duration::from_millis(millis),
        caught: None,
    }
}

/// The scenario order of the fixture.
pub fn order() -> Vec<String> {
    [
        "pid::init_is_pid_1",
        "uts::hostname_is_private",
        "kernel::time_ns",
        "selftest::pid::init_is_pid_1",
        "selftest::uts::hostname_is_private",
        "selftest::kernel::time_ns",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

pub fn report() -> RunReport {
    use Verdict::{Fail, Pass, Skip};
    let no_time = || Skip("the kernel has no time namespace".to_owned());
    let missing = || Skip("runtime `youki` not found on PATH".to_owned());
    let blocked = || Skip("`broken` failed its preflight".to_owned());
    RunReport {
        run_id: "abc123".into(),
        host: host(),
        runtimes: vec![
            RuntimeReport {
                label: "runc".into(),
                info: info("runc", "runc version 1.1.5"),
                status: RuntimeStatus::Ready,
            },
            RuntimeReport {
                label: "crun".into(),
                info: info("crun", "crun version 1.8.1"),
                status: RuntimeStatus::Ready,
            },
            RuntimeReport {
                label: "youki".into(),
                info: None,
                status: RuntimeStatus::Unavailable("runtime `youki` not found on PATH".into()),
            },
            RuntimeReport {
                label: "broken".into(),
                info: info("broken", "broken 0.0.1"),
                status: RuntimeStatus::PreflightFailed(
                    "`broken` could not run a trivial container: runtime hung in `create` after 2 s (killed)".into(),
                ),
            },
        ],
        results: vec![
            result("runc", "pid::init_is_pid_1", Pass, 412),
            result(
                "runc",
                "uts::hostname_is_private",
                Fail("expected hostname \"palisade-c1\", saw \"testhost\" <host's>: the UTS namespace & the host's\nare shared # really | badly".into()),
                1250,
            ),
            result("runc", "kernel::time_ns", no_time(), 0),
            result("runc", "selftest::pid::init_is_pid_1", Pass, 398),
            result("runc", "selftest::uts::hostname_is_private", Pass, 377),
            result("runc", "selftest::kernel::time_ns", no_time(), 0),
            result("crun", "pid::init_is_pid_1", Pass, 201),
            result("crun", "uts::hostname_is_private", Pass, 187),
            result("crun", "kernel::time_ns", no_time(), 0),
            result("crun", "selftest::pid::init_is_pid_1", Pass, 190),
            result(
                "crun",
                "selftest::uts::hostname_is_private",
                Fail("the negative control did not make the scenario fail (control: share the host's UTS namespace); the check has no teeth".into()),
                205,
            ),
            result("crun", "selftest::kernel::time_ns", no_time(), 0),
            result("youki", "pid::init_is_pid_1", missing(), 0),
            result("youki", "uts::hostname_is_private", missing(), 0),
            result("youki", "kernel::time_ns", missing(), 0),
            result("youki", "selftest::pid::init_is_pid_1", missing(), 0),
            result("youki", "selftest::uts::hostname_is_private", missing(), 0),
            result("youki", "selftest::kernel::time_ns", missing(), 0),
            result(
                "broken",
                "preflight",
                Fail("`broken` could not run a trivial container: runtime hung in `create` after 2 s (killed)".into()),
                0,
            ),
            result("broken", "pid::init_is_pid_1", blocked(), 0),
            result("broken", "uts::hostname_is_private", blocked(), 0),
            result("broken", "kernel::time_ns", blocked(), 0),
            result("broken", "selftest::pid::init_is_pid_1", blocked(), 0),
            result("broken", "selftest::uts::hostname_is_private", blocked(), 0),
            result("broken", "selftest::kernel::time_ns", blocked(), 0),
        ],
        duration: Duration::from_millis(3620),
    }
}
