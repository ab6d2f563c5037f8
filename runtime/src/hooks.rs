//! OCI lifecycle hooks (config.md "POSIX-platform Hooks"): what each kind is, and how one hook runs.
//!
//! Where each kind runs is decided by its caller: `prestart` and `createRuntime` by `create` (the
//! runtime namespace) while the init waits before its pivot; `createContainer` by the init itself
//! (the container's namespaces, a path resolved on the host, before the pivot); `startContainer`
//! by the init after `start` released it (a path inside the container, right before the exec);
//! `poststart` by `start`; `poststop` by `delete`.
//!
//! A hook gets the container's state on stdin (a file, so a hook that never reads it cannot block
//! anyone), its stdout and stderr are kept for the error message (never mixed into the container's
//! own output), and a `timeout` kills it. Everything is fork/exec and poll on a pidfd: the runtime
//! stays single-threaded.

use std::fmt;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use serde::{Deserialize, Serialize};

/// How much of a failing hook's output goes into the error message.
const OUTPUT_LIMIT: u64 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl HookKind {
    pub const ALL: [HookKind; 6] = [
        HookKind::Prestart,
        HookKind::CreateRuntime,
        HookKind::CreateContainer,
        HookKind::StartContainer,
        HookKind::Poststart,
        HookKind::Poststop,
    ];

    /// The name config.json gives this kind.
    pub fn name(self) -> &'static str {
        match self {
            HookKind::Prestart => "prestart",
            HookKind::CreateRuntime => "createRuntime",
            HookKind::CreateContainer => "createContainer",
            HookKind::StartContainer => "startContainer",
            HookKind::Poststart => "poststart",
            HookKind::Poststop => "poststop",
        }
    }
}

impl fmt::Display for HookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One validated hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookPlan {
    /// Absolute path of the program.
    pub path: PathBuf,
    /// argv, including argv[0] (the path when the config gives no args).
    pub args: Vec<String>,
    /// The whole environment, as `KEY=value`; without one the hook inherits its runner's (runc
    /// and crun do the same; the init's hooks get the container process's, as in runc).
    pub env: Option<Vec<String>>,
    /// Kill the hook and fail after this long.
    pub timeout: Option<Duration>,
}

/// Every hook of the config, by kind, in config order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HooksPlan {
    pub prestart: Vec<HookPlan>,
    pub create_runtime: Vec<HookPlan>,
    pub create_container: Vec<HookPlan>,
    pub start_container: Vec<HookPlan>,
    pub poststart: Vec<HookPlan>,
    pub poststop: Vec<HookPlan>,
}

impl HooksPlan {
    pub fn of(&self, kind: HookKind) -> &[HookPlan] {
        match kind {
            HookKind::Prestart => &self.prestart,
            HookKind::CreateRuntime => &self.create_runtime,
            HookKind::CreateContainer => &self.create_container,
            HookKind::StartContainer => &self.start_container,
            HookKind::Poststart => &self.poststart,
            HookKind::Poststop => &self.poststop,
        }
    }

    pub fn of_mut(&mut self, kind: HookKind) -> &mut Vec<HookPlan> {
        match kind {
            HookKind::Prestart => &mut self.prestart,
            HookKind::CreateRuntime => &mut self.create_runtime,
            HookKind::CreateContainer => &mut self.create_container,
            HookKind::StartContainer => &mut self.start_container,
            HookKind::Poststart => &mut self.poststart,
            HookKind::Poststop => &mut self.poststop,
        }
    }

    /// Whether `create` must run hooks (prestart, createRuntime) while the init waits.
    pub fn has_runtime_hooks(&self) -> bool {
        !self.prestart.is_empty() || !self.create_runtime.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{kind} hook {path}: cannot run it: {source}")]
    Spawn {
        kind: HookKind,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{kind} hook {path} failed: {status}{output}")]
    Failed {
        kind: HookKind,
        path: PathBuf,
        status: ExitStatus,
        output: Output,
    },
    #[error("{kind} hook {path} did not finish within its timeout of {secs} s and was killed{output}", secs = timeout.as_secs())]
    Timeout {
        kind: HookKind,
        path: PathBuf,
        timeout: Duration,
        output: Output,
    },
    #[error("{kind} hook {path}: {what}: {source}")]
    Io {
        kind: HookKind,
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
}

/// What a hook wrote, shown after an error (`; output: …`), or nothing.
#[derive(Debug, Default)]
pub struct Output(String);

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.trim();
        if text.is_empty() {
            Ok(())
        } else {
            write!(f, "; output: {text}")
        }
    }
}

/// Runs `hooks` of `kind` in order; the first failure stops the rest.
pub fn run_all(kind: HookKind, hooks: &[HookPlan], state: &[u8]) -> Result<(), HookError> {
    hooks.iter().try_for_each(|hook| run(kind, hook, state))
}

/// Runs every hook of `kind`, whatever fails, handing each failure to `warn`: for poststart and
/// poststop, whose failures the spec has logged, never fatal.
pub fn run_all_warning(kind: HookKind, hooks: &[HookPlan], state: &[u8], warn: &dyn Fn(&str)) {
    for hook in hooks {
        if let Err(e) = run(kind, hook, state) {
            warn(&e.to_string());
        }
    }
}

/// Runs one hook with `state` on its stdin and waits for it (at most its timeout).
pub fn run(kind: HookKind, hook: &HookPlan, state: &[u8]) -> Result<(), HookError> {
    let path = hook.path.clone();
    let io = |what: &'static str| {
        let path = path.clone();
        move |source| HookError::Io {
            kind,
            path,
            what,
            source,
        }
    };
    let mut stdin = memfd("palisade-hook-state").map_err(io("create its stdin"))?;
    stdin.write_all(state).map_err(io("write the state"))?;
    stdin.rewind().map_err(io("write the state"))?;
    let mut output = memfd("palisade-hook-output").map_err(io("create its output"))?;
    let stdout = output.try_clone().map_err(io("create its output"))?;
    let stderr = output.try_clone().map_err(io("create its output"))?;

    let mut cmd = Command::new(&hook.path);
    if let Some((arg0, rest)) = hook.args.split_first() {
        cmd.arg0(arg0).args(rest);
    }
    if let Some(env) = &hook.env {
        cmd.env_clear();
        for entry in env {
            // Validated by the plan: every entry has a `=`.
            if let Some((key, value)) = entry.split_once('=') {
                cmd.env(key, value);
            }
        }
    }
    cmd.stdin(Stdio::from(stdin))
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr));
    let mut child = cmd.spawn().map_err(|source| HookError::Spawn {
        kind,
        path: path.clone(),
        source,
    })?;
    let status = match hook.timeout {
        None => child.wait().map_err(io("wait for it"))?,
        Some(timeout) => match wait_until(child.id(), Instant::now() + timeout) {
            Ok(true) => child.wait().map_err(io("wait for it"))?,
            Ok(false) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HookError::Timeout {
                    kind,
                    path,
                    timeout,
                    output: read_output(&mut output),
                });
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io("wait for it")(e));
            }
        },
    };
    if status.success() {
        Ok(())
    } else {
        Err(HookError::Failed {
            kind,
            path,
            status,
            output: read_output(&mut output),
        })
    }
}

fn memfd(name: &str) -> std::io::Result<std::fs::File> {
    let fd = rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC)?;
    Ok(std::fs::File::from(fd))
}

fn read_output(output: &mut std::fs::File) -> Output {
    let mut text = Vec::new();
    if output.seek(SeekFrom::Start(0)).is_ok() {
        let _ = output.take(OUTPUT_LIMIT).read_to_end(&mut text);
    }
    Output(String::from_utf8_lossy(&text).into_owned())
}

/// Waits until the child `pid` exits (true) or `deadline` passes (false), on a pidfd.
fn wait_until(pid: u32, deadline: Instant) -> std::io::Result<bool> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| std::io::Error::other(format!("bad pid {pid}")))?;
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())?;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = Timespec::try_from(left).map_err(std::io::Error::other)?;
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) if left.is_zero() => return Ok(false),
            Ok(0) => continue,
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The state document a hook reads on stdin (runtime.md "State").
pub fn state_json(
    oci_version: &str,
    id: &str,
    status: oci_spec::runtime::ContainerState,
    pid: Option<i32>,
    bundle: &Path,
    annotations: &std::collections::BTreeMap<String, String>,
) -> Vec<u8> {
    let mut state = oci_spec::runtime::State::default();
    state.set_version(oci_version.to_owned());
    state.set_id(id.to_owned());
    state.set_status(status);
    state.set_pid(pid);
    state.set_bundle(bundle.to_owned());
    if !annotations.is_empty() {
        state.set_annotations(Some(
            annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ));
    }
    // A struct of strings and numbers always serializes.
    serde_json::to_vec(&state).unwrap_or_default()
}

#[cfg(test)]
mod tests {

    use super::*;

    fn script(dir: &Path, body: &str) -> PathBuf {
        let path = dir.join("hook.sh");
        palisade_common::testkit::write_executable(&path, &format!("#!/bin/sh\n{body}\n"))
            .expect("write hook");
        path
    }

    fn hook(path: PathBuf, args: &[&str], env: &[&str], timeout: Option<u64>) -> HookPlan {
        HookPlan {
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            env: Some(env.iter().map(|s| (*s).to_owned()).collect()),
            timeout: timeout.map(Duration::from_secs),
            path,
        }
    }

    #[test]
    fn a_hook_reads_the_state_on_stdin_with_its_args_and_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let path = script(
            dir.path(),
            &format!(
                "{{ cat; echo; echo \"$0 $1 $2\"; echo \"$GREETING\"; env | wc -l; }} > {}",
                out.display()
            ),
        );
        let h = hook(path, &["name", "a", "b"], &["GREETING=hi"], Some(10));
        run(HookKind::Poststart, &h, b"{\"id\":\"c1\"}").expect("the hook succeeds");
        let text = std::fs::read_to_string(out).expect("hook output");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "{\"id\":\"c1\"}");
        assert!(lines[1].ends_with(" a b"), "{lines:?}");
        assert_eq!(lines[2], "hi");
        // Only what the config gives (the shell may add PWD and the like, never our own env).
        assert!(!text.contains("CARGO"), "{text}");
    }

    #[test]
    fn without_an_env_a_hook_inherits_its_runners() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let path = script(dir.path(), &format!("echo \"$PATH\" > {}", out.display()));
        let mut h = hook(path, &[], &[], None);
        h.env = None;
        run(HookKind::Poststop, &h, b"{}").expect("the hook succeeds");
        let seen = std::fs::read_to_string(out).expect("hook output");
        assert_eq!(seen.trim(), std::env::var("PATH").unwrap_or_default());
    }

    #[test]
    fn a_failing_hook_is_an_error_with_its_status_and_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = script(dir.path(), "echo broken >&2; exit 3");
        let err = run(
            HookKind::Prestart,
            &hook(path.clone(), &[], &[], None),
            b"{}",
        )
        .expect_err("exit 3 fails");
        assert_eq!(
            err.to_string(),
            format!(
                "prestart hook {} failed: exit status: 3; output: broken",
                path.display()
            )
        );
    }

    #[test]
    fn a_hook_past_its_timeout_is_killed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = script(dir.path(), "exec sleep 30");
        let started = Instant::now();
        let err = run(
            HookKind::CreateRuntime,
            &hook(path.clone(), &[], &[], Some(1)),
            b"{}",
        )
        .expect_err("the hook is killed");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(matches!(err, HookError::Timeout { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("did not finish within its timeout of 1 s"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_hook_cannot_run() {
        let err = run(
            HookKind::Poststop,
            &hook("/no/such/hook".into(), &[], &[], None),
            b"{}",
        )
        .expect_err("missing");
        assert!(
            err.to_string()
                .starts_with("poststop hook /no/such/hook: cannot run it:"),
            "{err}"
        );
    }

    #[test]
    fn hooks_run_in_order_and_stop_at_the_first_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log");
        let mk = |name: &str, code: i32| {
            let path = dir.path().join(name);
            palisade_common::testkit::write_executable(
                &path,
                &format!("#!/bin/sh\necho {name} >> {}\nexit {code}\n", log.display()),
            )
            .expect("write");
            hook(path, &[], &[], None)
        };
        let hooks = [mk("one", 0), mk("two", 1), mk("three", 0)];
        assert!(run_all(HookKind::CreateRuntime, &hooks, b"{}").is_err());
        assert_eq!(
            std::fs::read_to_string(log).expect("log"),
            "one\ntwo\n",
            "the third hook must not run"
        );
    }

    #[test]
    fn the_state_document_has_the_spec_fields() {
        let annotations = [("a".to_owned(), "b".to_owned())].into();
        let json = state_json(
            "1.0.2",
            "c1",
            oci_spec::runtime::ContainerState::Creating,
            Some(42),
            Path::new("/b"),
            &annotations,
        );
        let v: serde_json::Value = serde_json::from_slice(&json).expect("JSON");
        assert_eq!(
            v,
            serde_json::json!({"ociVersion": "1.0.2", "id": "c1", "status": "creating",
                               "pid": 42, "bundle": "/b", "annotations": {"a": "b"}})
        );
        let stopped = state_json(
            "1.0.2",
            "c1",
            oci_spec::runtime::ContainerState::Stopped,
            None,
            Path::new("/b"),
            &Default::default(),
        );
        let v: serde_json::Value = serde_json::from_slice(&stopped).expect("JSON");
        assert_eq!(
            v,
            serde_json::json!({"ociVersion": "1.0.2", "id": "c1", "status": "stopped", "bundle": "/b"})
        );
    }
}
