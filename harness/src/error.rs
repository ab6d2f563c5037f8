//! Errors of the harness's mechanism (as opposed to a scenario's verdict).

use std::path::PathBuf;
use std::time::Duration;

use crate::driver::RuntimeError;
use crate::driver::bundle::BundleError;

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Cgroup(#[from] crate::lab::cgroups::CgroupError),
    #[error("the runtime reported success for `create` but wrote no pid file at {}", path.display())]
    NoPidFile { path: PathBuf },
    #[error("the runtime's pid file {} holds {text:?}, not a pid", path.display())]
    BadPidFile { path: PathBuf, text: String },
    #[error(
        "the probe in `{id}` did not answer before the scenario's deadline; container stderr: {stderr:?}"
    )]
    ProbeSilent { id: String, stderr: String },
    #[error("the probe in `{id}` exited without answering; container stderr: {stderr:?}")]
    ProbeGone { id: String, stderr: String },
    #[error("the probe printed something that is not a response ({problem}): {line:?}")]
    ProbeGarbage { line: String, problem: String },
    #[error("the probe could not `{op}`: {message}")]
    ProbeFailed { op: String, message: String },
    #[error("the probe's stdin is already closed")]
    StdinClosed,
    #[error("timed out after {} s waiting for {what}", after.as_secs_f32())]
    Timeout { what: String, after: Duration },
    #[error("network lab: {what}: {message}")]
    Net { what: String, message: String },
    /// Under `selftest`: the negative control cannot be set up here (a skip, not a verdict).
    #[error("the negative control cannot be set up: {0}")]
    ControlNotApplied(String),
    #[error("the run was interrupted")]
    Interrupted,
    #[error("not possible here: {what}")]
    Unsupported { what: String },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
}
