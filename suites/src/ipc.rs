//! IPC namespace: SysV shared memory and POSIX message queues are the container's own.
//!
//! Each scenario gives its thread a throwaway IPC namespace that plays the host
//! ([`Ctx::isolate_host_ipc`]); the host side runs the probe there ([`Ctx::host_probe`]). Objects
//! made in it, by the host side or by a container under a negative control, vanish with the thread.

use oci_spec::runtime::LinuxNamespaceType::Ipc;
use palisade_harness::run::control::{Control, Edit};
use palisade_harness::run::scenario::Schedule;
use palisade_harness::{Ctx, Failure, Outcome, Reply, Request, Requirement, Scenario, check};

const PRIVILEGED: &[Requirement] = &[Requirement::Privileged];

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        area: "ipc",
        name: "container_objects_invisible_to_host",
        checks: "A SysV shm segment and a POSIX message queue created inside are not visible on the host.",
        control: Control::config(Edit::WithoutNamespace(Ipc)),
        means: "The container can share memory and messages with host processes.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: container_objects_invisible_to_host,
    },
    Scenario {
        area: "ipc",
        name: "host_objects_invisible_to_container",
        checks: "A SysV shm segment and a POSIX message queue created on the host are not visible inside.",
        control: Control::config(Edit::WithoutNamespace(Ipc)),
        means: "The container can read or tamper with the host's shared memory and message queues.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: host_objects_invisible_to_container,
    },
    Scenario {
        area: "ipc",
        name: "containers_do_not_share",
        checks: "Two containers do not see each other's SysV shm segments and POSIX message queues, either way.",
        control: Control::config_of(
            "ipc-second",
            Edit::JoinNamespaceOf {
                kind: Ipc,
                of: "ipc-first",
            },
        ),
        means: "Containers can reach into each other's shared memory.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: containers_do_not_share,
    },
];

/// A SysV key and a queue name unique to this run, role and half (scenario or control): under
/// an engine the host side is its lab host, shared by every trial of the run.
fn objects(cx: &Ctx, role: u32) -> (i32, String) {
    let role = if cx.under_control() { role + 8 } else { role };
    let run = i32::from_str_radix(&cx.run.id, 16).unwrap_or(0x5a5a5a) & 0x00ff_ffff;
    (
        (0x5a << 24) | run ^ (role as i32),
        format!("/{}-mq{role}", cx.run.name(&format!("ipc-{}", cx.trial()))),
    )
}

fn create(reply: Result<Reply, palisade_harness::HarnessError>, side: &str) -> Outcome {
    match reply? {
        Reply::Ipc {
            shm: true,
            mq: true,
        } => Ok(()),
        other => Err(Failure::Broken(format!(
            "expected {side} to create a shm segment and a queue, saw {other:?}"
        ))),
    }
}

fn visible(reply: Reply) -> Result<(bool, bool), Failure> {
    match reply {
        Reply::Ipc { shm, mq } => Ok((shm, mq)),
        other => Err(Failure::Broken(format!(
            "expected an ipc report, saw {other:?}"
        ))),
    }
}

fn container_objects_invisible_to_host(cx: &Ctx) -> Outcome {
    cx.isolate_host_ipc()?;
    let (key, mq) = objects(cx, 1);
    let mut container = cx.launch(cx.spec("ipc-inner")?)?;
    create(
        container.ask(&Request::CreateIpc {
            key,
            mq: mq.clone(),
        }),
        "the container",
    )?;
    let (shm, queue) = visible(cx.host_probe(&Request::FindIpc {
        key,
        mq: mq.clone(),
    })?)?;
    check!(
        !shm && !queue,
        "expected the container's shm key {key:#x} and queue {mq} to be invisible on the host, saw \
         shm visible: {shm}, queue visible: {queue}: the container shares the host's IPC objects"
    );
    Ok(())
}

fn host_objects_invisible_to_container(cx: &Ctx) -> Outcome {
    cx.isolate_host_ipc()?;
    let (key, mq) = objects(cx, 2);
    create(
        cx.host_probe(&Request::CreateIpc {
            key,
            mq: mq.clone(),
        }),
        "the host",
    )?;
    let mut container = cx.launch(cx.spec("ipc-outer")?)?;
    let (shm, queue) = visible(container.ask(&Request::FindIpc {
        key,
        mq: mq.clone(),
    })?)?;
    check!(
        !shm && !queue,
        "expected the host's shm key {key:#x} and queue {mq} to be invisible inside, saw shm \
         visible: {shm}, queue visible: {queue}: the container can read the host's shared memory"
    );
    Ok(())
}

fn containers_do_not_share(cx: &Ctx) -> Outcome {
    cx.isolate_host_ipc()?;
    let (key_a, mq_a) = objects(cx, 3);
    let (key_b, mq_b) = objects(cx, 4);
    let mut first = cx.launch(cx.spec("ipc-first")?)?;
    first.ask(&Request::Facts)?;
    let mut second = cx.launch(cx.spec("ipc-second")?)?;
    create(
        first.ask(&Request::CreateIpc {
            key: key_a,
            mq: mq_a.clone(),
        }),
        "the first container",
    )?;
    create(
        second.ask(&Request::CreateIpc {
            key: key_b,
            mq: mq_b.clone(),
        }),
        "the second container",
    )?;
    let seen_by_second = visible(second.ask(&Request::FindIpc {
        key: key_a,
        mq: mq_a,
    })?)?;
    let seen_by_first = visible(first.ask(&Request::FindIpc {
        key: key_b,
        mq: mq_b,
    })?)?;
    check!(
        seen_by_second == (false, false) && seen_by_first == (false, false),
        "expected neither container to see the other's shm segment and queue, saw (shm, queue) \
         {seen_by_second:?} from the second and {seen_by_first:?} from the first: containers share \
         IPC objects"
    );
    Ok(())
}
