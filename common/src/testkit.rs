//! Palisade's own integration tests, with honest skips.
//!
//! libtest has no way for a test to decide at run time that it cannot run: a test that returns
//! early "passes". Integration test files therefore use `harness = false` and this small runner
//! on top of libtest-mimic: a test returns `Err(Skip)` when the machine lacks what it needs, and
//! the summary counts it as *ignored*, with its reason printed next to its name.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use libtest_mimic::{Arguments, Completion, Trial};

/// Why a test cannot run here (not a failure: counted and shown as ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip(pub String);

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a test returns: `Ok` when it passed, `Err(Skip)` when it could not run. Failures are
/// panics (`assert!`, `expect`), as in any Rust test.
pub type TestResult = Result<(), Skip>;

/// One test of a file.
pub struct Test {
    pub name: &'static str,
    pub run: fn() -> TestResult,
    /// Runs alone: no other serial test of the file at the same time (global state such as the
    /// root network namespace, or a machine-wide `palisade cleanup`).
    pub serial: bool,
}

impl Test {
    pub const fn new(name: &'static str, run: fn() -> TestResult) -> Test {
        Test {
            name,
            run,
            serial: false,
        }
    }

    pub const fn serial(name: &'static str, run: fn() -> TestResult) -> Test {
        Test {
            name,
            run,
            serial: true,
        }
    }
}

static SERIAL: Mutex<()> = Mutex::new(());

/// The `main` of an integration test file: libtest's command line, these tests.
pub fn main(tests: &[Test]) -> ExitCode {
    let args = Arguments::from_args();
    let trials = tests
        .iter()
        .map(|test| {
            let (run, serial) = (test.run, test.serial);
            Trial::ignorable_test(test.name, move || {
                let _turn = serial.then(|| {
                    SERIAL
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                });
                match run() {
                    Ok(()) => Ok(Completion::Completed),
                    Err(Skip(reason)) => Ok(Completion::ignored_with(reason)),
                }
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

/// Skips unless running as root with CAP_SYS_ADMIN.
pub fn require_root() -> TestResult {
    let euid = nix::unistd::geteuid();
    let sys_admin = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_ADMIN,
    )
    .unwrap_or(false);
    if euid.is_root() && sys_admin {
        Ok(())
    } else {
        Err(Skip(format!(
            "needs root with CAP_SYS_ADMIN (running as uid {euid})"
        )))
    }
}

/// The path of `program` (a name on PATH), or a skip saying it is not installed.
pub fn require_program(program: &str) -> Result<PathBuf, Skip> {
    crate::find_program(program).ok_or_else(|| Skip(format!("`{program}` is not installed")))
}

/// Skips with `reason` unless `condition` holds.
pub fn require(condition: bool, reason: impl Into<String>) -> TestResult {
    if condition {
        Ok(())
    } else {
        Err(Skip(reason.into()))
    }
}

/// Runs `shellcheck` (found with [`require_program`]) over `script` as a `shell` script; the
/// error is what shellcheck printed.
pub fn shellcheck(shellcheck: &std::path::Path, shell: &str, script: &str) -> Result<(), String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(shellcheck)
        .args([&format!("--shell={shell}"), "--format=gcc", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting shellcheck: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| format!("writing the script to shellcheck: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for shellcheck: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Writes `contents` to `path` as an executable (mode 0755). A child process writes it: had this
/// (multi-threaded) test process opened the file for writing, a fork by another test at that
/// moment would inherit the descriptor, and running the program would fail with ETXTBSY until
/// that child execs.
pub fn write_executable(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut writer = Command::new("/bin/sh")
        .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = writer.stdin.take() {
        stdin.write_all(contents.as_bytes())?;
    }
    let status = writer.wait()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "writing {} failed: {status}",
            path.display()
        )))
    }
}

/// Copies the program `from` to `to`, executable, the way [`write_executable`] writes one (by a
/// child, so that no descriptor open for writing can leak into another test's fork).
pub fn copy_executable(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    let status = std::process::Command::new("/bin/sh")
        .args(["-c", "cp \"$1\" \"$2\" && chmod 755 \"$2\"", "sh"])
        .arg(from)
        .arg(to)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "copying {} to {} failed: {status}",
            from.display(),
            to.display()
        )))
    }
}
