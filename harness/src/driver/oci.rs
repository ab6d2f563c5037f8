//! Drives an OCI runtime through runc's command-line conventions: a bundle on disk, then
//! `<runtime> --root <dir> create --bundle <dir> --pid-file <file> <id>`, `start`, `state`,
//! `kill`, `delete`, `pause`, `resume`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use oci_spec::runtime::{ContainerState, State};

use super::bundle::{Bundle, ContainerSpec};
use super::exec::Execed;
use super::{
    ContainerStdio, Created, Defect, Driver, ExecDefect, RuntimeError, RuntimeInfo, Status,
    error_summary,
};
use crate::error::HarnessError;
use crate::exec::{self, ExecError};

#[derive(Debug, thiserror::Error)]
pub enum FindRuntimeError {
    #[error("runtime `{0}` not found on PATH")]
    NotOnPath(String),
    #[error("runtime `{}` does not exist", .0.display())]
    NoSuchFile(PathBuf),
    #[error("runtime `{}` did not answer `--version`: {source}", path.display())]
    Version { path: PathBuf, source: ExecError },
    #[error("runtime `{}` failed `--version` ({status}): {stderr}", path.display())]
    VersionFailed {
        path: PathBuf,
        status: String,
        stderr: String,
    },
}

/// Resolves a runtime given by name (looked up on PATH) or by path.
pub fn find_runtime(name_or_path: &str) -> Result<PathBuf, FindRuntimeError> {
    exec::find_program(name_or_path).ok_or_else(|| {
        if name_or_path.contains('/') {
            FindRuntimeError::NoSuchFile(PathBuf::from(name_or_path))
        } else {
            FindRuntimeError::NotOnPath(name_or_path.to_owned())
        }
    })
}

/// The OCI command-line driver: `<runtime> --root <dir> <verb> ...`.
#[derive(Clone)]
pub struct OciCli {
    info: RuntimeInfo,
    /// This run's own state directory, so nothing collides with the user's containers.
    root: PathBuf,
    timeout: Duration,
    global_args: Vec<String>,
    defect: Defect,
    materials: Materials,
}

/// What every bundle's rootfs holds besides the config: the probe, and an os-release of its own.
#[derive(Debug, Clone, Default)]
pub struct Materials {
    /// The run's copy of the probe, hard-linked into every rootfs.
    pub probe: PathBuf,
    pub os_release: String,
}

impl OciCli {
    /// Finds the runtime and asks its version (with a deadline: a hanging runtime is an error too).
    pub fn new(
        name_or_path: &str,
        root: &Path,
        timeout: Duration,
    ) -> Result<OciCli, FindRuntimeError> {
        let path = find_runtime(name_or_path)?;
        let done = exec::run(Command::new(&path).arg("--version"), timeout).map_err(|source| {
            FindRuntimeError::Version {
                path: path.clone(),
                source,
            }
        })?;
        if !done.status.success() {
            return Err(FindRuntimeError::VersionFailed {
                path,
                status: done.status.to_string(),
                stderr: done.stderr.trim().to_owned(),
            });
        }
        let version = done.stdout.lines().next().unwrap_or("").trim().to_owned();
        let name = if name_or_path.contains('/') {
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            name_or_path.to_owned()
        };
        Ok(OciCli {
            info: RuntimeInfo {
                name,
                path,
                version,
            },
            root: root.to_owned(),
            timeout,
            global_args: Vec::new(),
            defect: Defect::default(),
            materials: Materials::default(),
        })
    }

    /// What goes into every rootfs besides the config.
    pub fn with_materials(mut self, materials: Materials) -> OciCli {
        self.materials = materials;
        self
    }

    /// Extra global flags passed before every verb (runc's `--no-pivot` is one, for a negative control).
    pub fn with_global_args(mut self, args: Vec<String>) -> OciCli {
        self.global_args = args;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.info.path);
        command
            .arg("--root")
            .arg(&self.root)
            .args(&self.global_args);
        command
    }

    fn call(&self, verb: &'static str, args: &[&str]) -> Result<String, RuntimeError> {
        let mut command = self.command();
        command.arg(verb).args(args);
        let done = exec::run(&mut command, self.timeout).map_err(|e| self.exec_error(verb, e))?;
        if done.status.success() {
            Ok(done.stdout)
        } else {
            Err(self.failed(verb, done.status.to_string(), &done.stderr))
        }
    }

    fn exec_error(&self, verb: &'static str, error: ExecError) -> RuntimeError {
        match error {
            ExecError::TimedOut { after, .. } => RuntimeError::Hung { verb, after },
            ExecError::Spawn { source, .. } => RuntimeError::Spawn {
                path: self.info.path.clone(),
                source,
            },
            ExecError::Wait { source, .. } => RuntimeError::Wait(source),
            interrupted @ ExecError::Interrupted { .. } => {
                RuntimeError::Wait(std::io::Error::other(interrupted.to_string()))
            }
        }
    }

    fn failed(&self, verb: &'static str, status: String, stderr: &str) -> RuntimeError {
        RuntimeError::Failed {
            runtime: self.info.name.clone(),
            verb,
            status,
            stderr: error_summary(stderr, 5),
        }
    }
}

impl Driver for OciCli {
    fn info(&self) -> &RuntimeInfo {
        &self.info
    }

    fn create(
        &self,
        id: &str,
        spec: &ContainerSpec,
        dir: &Path,
        stdio: ContainerStdio,
    ) -> Result<Created, HarnessError> {
        let bundle = Bundle::write(dir, spec, &self.materials.probe, &self.materials.os_release)?;
        let pid_file = dir.join("init.pid");
        self.create_bundle(id, &bundle.dir, &pid_file, stdio)?;
        Ok(Created {
            host_pid: Some(read_pid_file(&pid_file)?),
            rootfs: Some(bundle.rootfs()),
            write_layer: Some(bundle.rootfs()),
        })
    }

    fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.call("start", &[id]).map(drop)
    }

    fn state(&self, id: &str) -> Result<State, RuntimeError> {
        let output = self.call("state", &[id])?;
        let mut state = parse_state(&self.info.name, id, &output)?;
        if let Some(pid) = self.defect.state_pid {
            state.set_pid(Some(pid));
        }
        Ok(state)
    }

    fn status(&self, id: &str) -> Result<Status, RuntimeError> {
        let output = self.call("state", &[id])?;
        parse_status(&self.info.name, id, &output)
    }

    fn exec(
        &self,
        id: &str,
        init_pid: i32,
        process: &oci_spec::runtime::Process,
        dir: &Path,
        stdio: ContainerStdio,
    ) -> Result<Execed, HarnessError> {
        if let Some(ExecDefect::Nsenter { skip }) = &self.defect.exec {
            return super::exec::nsenter_exec(init_pid, *skip, process, stdio);
        }
        let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        let process_file = dir.join(format!("exec-{n}.json"));
        let pid_file = dir.join(format!("exec-{n}.pid"));
        let json = serde_json::to_vec(process).map_err(|e| HarnessError::Io {
            what: "encoding the exec process",
            source: std::io::Error::other(e),
        })?;
        std::fs::write(&process_file, json).map_err(|source| HarnessError::Io {
            what: "writing the exec process",
            source,
        })?;
        let leaked = match &self.defect.exec {
            Some(ExecDefect::LeakedDir(dir)) => Some(dir.as_path()),
            _ => None,
        };
        let ContainerStdio {
            stdin,
            stdout,
            stderr,
        } = stdio;
        let mut log = stderr.try_clone().map_err(RuntimeError::Stdio)?;
        let mut command = self.command_leaking(leaked);
        command.arg("exec").arg("--detach");
        if leaked.is_some() {
            command.arg("--preserve-fds").arg("1");
        }
        command
            .arg("--pid-file")
            .arg(&pid_file)
            .arg("--process")
            .arg(&process_file)
            .arg(id)
            .stdin(stdin)
            .stdout(stdout)
            .stderr(stderr);
        let status = exec::run_spawned(&mut command, &self.info.name, self.timeout)
            .map_err(|e| self.exec_error("exec", e))?;
        if !status.success() {
            return Err(self
                .failed("exec", status.to_string(), &read_back(&mut log))
                .into());
        }
        Ok(Execed {
            host_pid: Some(read_pid_file(&pid_file)?),
            helper: None,
        })
    }

    fn kill(&self, id: &str, signal: &str) -> Result<(), RuntimeError> {
        self.call("kill", &[id, signal]).map(drop)
    }

    fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        if self.defect.pause_noop {
            // The simulated defect: `pause` says it worked and nothing was frozen.
            return Ok(());
        }
        self.call("pause", &[id]).map(drop)
    }

    fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.call("resume", &[id]).map(drop)
    }

    fn variant(&self, defect: &Defect) -> Option<Arc<dyn Driver>> {
        let help = exec::run(
            Command::new(&self.info.path).args(["create", "--help"]),
            self.timeout,
        )
        .map(|done| done.stdout + &done.stderr)
        .unwrap_or_default();
        let listed = |flag: &str| {
            help.split_whitespace()
                .any(|word| word.split(['=', ',']).next() == Some(flag))
        };
        if defect.leaked_dir.is_some() && !listed("--preserve-fds") {
            return None;
        }
        let mut variant = self.clone();
        variant.defect = Defect {
            create_flags: defect
                .create_flags
                .iter()
                .filter(|flag| listed(flag))
                .cloned()
                .collect(),
            ..defect.clone()
        };
        Some(Arc::new(variant))
    }

    fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        if force {
            self.call("delete", &["--force", id])
        } else {
            self.call("delete", &[id])
        }
        .map(drop)
    }
}

impl OciCli {
    /// `create` on a bundle that is already written.
    fn create_bundle(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        stdio: ContainerStdio,
    ) -> Result<(), RuntimeError> {
        let ContainerStdio {
            stdin,
            stdout,
            stderr,
        } = stdio;
        let mut log = stderr.try_clone().map_err(RuntimeError::Stdio)?;
        let mut command = self.command_leaking(self.defect.leaked_dir.as_deref());
        command.arg("create");
        if self.defect.leaked_dir.is_some() {
            command.arg("--preserve-fds").arg("1");
        }
        command
            .args(&self.defect.create_flags)
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(pid_file)
            .arg(id)
            .stdin(stdin)
            .stdout(stdout)
            .stderr(stderr);
        let status = exec::run_spawned(&mut command, &self.info.name, self.timeout)
            .map_err(|e| self.exec_error("create", e))?;
        if status.success() {
            return Ok(());
        }
        // The container's stderr file holds the runtime's error message.
        Err(self.failed("create", status.to_string(), &read_back(&mut log)))
    }

    /// The runtime's command line; with `leaked`, run through a shell that opens that host
    /// directory as fd 3 first, so the runtime inherits it (a negative control's leak).
    fn command_leaking(&self, leaked: Option<&Path>) -> Command {
        match leaked {
            Some(dir) => {
                let runtime = self.command();
                let mut shell = Command::new("/bin/sh");
                shell
                    .arg("-c")
                    .arg(r#"exec "$@" 3<"$PALISADE_LEAKED_DIR""#)
                    .arg("sh")
                    .arg(runtime.get_program())
                    .args(runtime.get_args())
                    .env("PALISADE_LEAKED_DIR", dir);
                shell
            }
            None => self.command(),
        }
    }
}

/// What a log file holds (the runtime's error message).
fn read_back(log: &mut std::fs::File) -> String {
    use std::io::{Read, Seek};
    let mut text = String::new();
    if log.rewind().is_ok() {
        let _ = log.read_to_string(&mut text);
    }
    text
}

/// The pid the runtime wrote to `--pid-file`.
fn read_pid_file(path: &Path) -> Result<i32, HarnessError> {
    let text = std::fs::read_to_string(path).map_err(|_| HarnessError::NoPidFile {
        path: path.to_owned(),
    })?;
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|pid| *pid > 0)
        .ok_or_else(|| HarnessError::BadPidFile {
            path: path.to_owned(),
            text: text.clone(),
        })
}

/// The status in `state` output, `paused` included. A paused container still has its init, so
/// the rest of its state must hold as for a running one; everything is checked as strictly as
/// [`parse_state`] does.
pub fn parse_status(runtime: &str, id: &str, output: &str) -> Result<Status, RuntimeError> {
    let value: serde_json::Value =
        serde_json::from_str(output).map_err(|e| RuntimeError::BadState {
            runtime: runtime.to_owned(),
            problem: format!("not JSON: {e}"),
            output: output.chars().take(200).collect(),
        })?;
    if value.get("status").and_then(serde_json::Value::as_str) == Some("paused") {
        let mut running = value;
        running["status"] = "running".into();
        parse_state(runtime, id, &running.to_string())?;
        return Ok(Status::Paused);
    }
    Ok((*parse_state(runtime, id, output)?.status()).into())
}

/// Parses `state` output strictly: the OCI fields must be there and name the container asked about.
pub fn parse_state(runtime: &str, id: &str, output: &str) -> Result<State, RuntimeError> {
    let bad = |problem: String| RuntimeError::BadState {
        runtime: runtime.to_owned(),
        problem,
        output: output.chars().take(200).collect(),
    };
    let value: serde_json::Value =
        serde_json::from_str(output).map_err(|e| bad(format!("not JSON: {e}")))?;
    for field in ["ociVersion", "id", "status", "bundle"] {
        if value.get(field).is_none() {
            return Err(bad(format!("no `{field}` field")));
        }
    }
    let state: State = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
    if state.id() != id {
        return Err(bad(format!("it describes `{}`, not `{id}`", state.id())));
    }
    let needs_pid = matches!(
        state.status(),
        ContainerState::Created | ContainerState::Running
    );
    if needs_pid && state.pid().is_none_or(|pid| pid <= 0) {
        return Err(bad(format!(
            "status is {} but there is no pid",
            state.status()
        )));
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::runc(r#"{"ociVersion":"1.0.2-dev","id":"c1","pid":42,"status":"running","bundle":"/b","rootfs":"/b/rootfs","created":"2026-01-01T00:00:00Z","owner":""}"#, ContainerState::Running, Some(42))]
    #[case::stopped_without_pid(
        r#"{"ociVersion":"1.0.2","id":"c1","status":"stopped","bundle":"/b"}"#,
        ContainerState::Stopped,
        None
    )]
    fn parses_runtime_state(
        #[case] output: &str,
        #[case] status: ContainerState,
        #[case] pid: Option<i32>,
    ) {
        let state = parse_state("rt", "c1", output).expect("valid state");
        assert_eq!(*state.status(), status);
        assert_eq!(*state.pid(), pid);
    }

    #[rstest]
    #[case::paused(
        r#"{"ociVersion":"1.0.2-dev","id":"c1","pid":42,"status":"paused","bundle":"/b"}"#,
        Status::Paused
    )]
    #[case::running(
        r#"{"ociVersion":"1.0.2","id":"c1","pid":42,"status":"running","bundle":"/b"}"#,
        Status::Running
    )]
    #[case::stopped(
        r#"{"ociVersion":"1.0.2","id":"c1","status":"stopped","bundle":"/b"}"#,
        Status::Stopped
    )]
    fn statuses_include_paused(#[case] output: &str, #[case] status: Status) {
        assert_eq!(parse_status("rt", "c1", output).expect("valid"), status);
    }

    #[rstest]
    #[case::paused_without_pid(
        r#"{"ociVersion":"1","id":"c1","status":"paused","bundle":"/b"}"#,
        "no pid"
    )]
    #[case::paused_other_container(
        r#"{"ociVersion":"1","id":"c2","pid":42,"status":"paused","bundle":"/b"}"#,
        "not `c1`"
    )]
    #[case::garbage("hello", "not JSON")]
    fn a_paused_state_is_checked_as_strictly(#[case] output: &str, #[case] problem: &str) {
        let err = parse_status("rt", "c1", output)
            .expect_err("must be rejected")
            .to_string();
        assert!(err.contains(problem), "{err}");
    }

    #[rstest]
    #[case::garbage("hello", "not JSON")]
    #[case::empty_object("{}", "no `ociVersion` field")]
    #[case::other_container(
        r#"{"ociVersion":"1","id":"c2","status":"stopped","bundle":"/b"}"#,
        "not `c1`"
    )]
    #[case::unknown_status(
        r#"{"ociVersion":"1","id":"c1","status":"dancing","bundle":"/b"}"#,
        "unknown variant"
    )]
    #[case::running_without_pid(
        r#"{"ociVersion":"1","id":"c1","status":"running","bundle":"/b"}"#,
        "no pid"
    )]
    fn rejects_bad_state(#[case] output: &str, #[case] problem: &str) {
        let err = parse_state("rt", "c1", output)
            .expect_err("must be rejected")
            .to_string();
        assert!(err.contains(problem), "{err}");
        assert!(
            err.starts_with("`rt state` printed something that is not an OCI state"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_runtime_path_is_named() {
        let err = OciCli::new(
            "/nonexistent/runc",
            Path::new("/tmp"),
            Duration::from_secs(1),
        )
        .err()
        .expect("must fail")
        .to_string();
        assert_eq!(err, "runtime `/nonexistent/runc` does not exist");
    }

    #[test]
    fn a_missing_runtime_name_is_named() {
        let err = find_runtime("palisade-no-such-runtime")
            .expect_err("must fail")
            .to_string();
        assert_eq!(err, "runtime `palisade-no-such-runtime` not found on PATH");
    }
}
