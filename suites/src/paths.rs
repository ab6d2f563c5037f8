//! Read-only root, masked paths and read-only paths, as the config asks.

use palisade_harness::run::control::{Control, Edit};
use palisade_harness::run::scenario::Schedule;
use palisade_harness::{Ctx, Failure, Outcome, Reply, Request, Requirement, Scenario, check};

const PRIVILEGED: &[Requirement] = &[Requirement::Privileged];

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        area: "paths",
        name: "readonly_root_refuses_writes",
        checks: "With `root.readonly: true`, writing a file under `/` fails with EROFS.",
        control: Control::config(Edit::RootReadonly(false)),
        means: "The container can modify an image you marked read-only.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: readonly_root_refuses_writes,
    },
    Scenario {
        area: "paths",
        name: "masked_paths_read_empty",
        checks: "maskedPaths (/proc/kcore, /proc/timer_list) read as empty or cannot be read at all.",
        control: Control::config(Edit::NoMaskedPaths),
        means: "The container can read kernel state the config hides (kernel memory, timers).",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: masked_paths_read_empty,
    },
    Scenario {
        area: "paths",
        name: "readonly_paths_refuse_writes",
        checks: "readonlyPaths (/proc/sys) refuse writes with EROFS.",
        control: Control::config(Edit::NoReadonlyPaths),
        means: "The container can change kernel settings the config marks read-only.",
        requires: PRIVILEGED,
        schedule: Schedule::Parallel,
        run: readonly_paths_refuse_writes,
    },
];

fn syscall(reply: Reply) -> Result<Option<String>, Failure> {
    match reply {
        Reply::Syscall(outcome) => Ok(outcome.errno),
        other => Err(Failure::Broken(format!(
            "expected a syscall outcome, saw {other:?}"
        ))),
    }
}

fn readonly_root_refuses_writes(cx: &Ctx) -> Outcome {
    let request = Request::WriteFile {
        path: "/palisade-written".into(),
        contents: "x".into(),
    };
    let spec = cx.spec("paths-ro-root")?.one_shot(&request).edit(|s| {
        if let Some(root) = s.root_mut() {
            root.set_readonly(Some(true));
        }
    });
    let errno = syscall(cx.run_once(spec)?)?;
    check!(
        errno.as_deref() == Some("EROFS"),
        "expected writing /palisade-written on a read-only root to fail with EROFS, saw {errno:?}: \
         the container can modify its image"
    );
    Ok(())
}

fn masked_paths_read_empty(cx: &Ctx) -> Outcome {
    let paths = vec!["/proc/kcore".to_owned(), "/proc/timer_list".to_owned()];
    let spec = cx
        .spec("paths-masked")?
        .one_shot(&Request::ReadFiles { paths });
    let Reply::Files { files } = cx.run_once(spec)? else {
        return Err(Failure::Broken("the probe did not report the files".into()));
    };
    let exposed: Vec<String> = files
        .iter()
        .filter(|f| f.contents.as_deref().is_some_and(|c| !c.is_empty()))
        .map(|f| f.path.clone())
        .collect();
    check!(
        exposed.is_empty(),
        "expected masked paths to read empty or be unreadable, saw contents in {exposed:?}: the \
         container can read kernel state the config hides"
    );
    Ok(())
}

fn readonly_paths_refuse_writes(cx: &Ctx) -> Outcome {
    // The container's own UTS namespace's hostname: harmless even when the write goes through.
    let request = Request::WriteFile {
        path: "/proc/sys/kernel/hostname".into(),
        contents: "palisade-rw".into(),
    };
    let spec = cx.spec("paths-ro")?.one_shot(&request);
    let errno = syscall(cx.run_once(spec)?)?;
    check!(
        errno.as_deref() == Some("EROFS"),
        "expected writing /proc/sys/kernel/hostname to fail with EROFS, saw {errno:?}: the \
         container can change kernel settings the config marks read-only"
    );
    Ok(())
}
