//! The pipes between Palisade and a probe: requests to its stdin, one JSON reply per line from its
//! stdout, its stderr in a log. A container's init and every process `exec` starts talk this way.

use std::io::{PipeWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Instant;

use palisade_probe::{Reply, Request, Response};

use super::ContainerStdio;
use crate::error::HarnessError;

/// The probe's end of a pair of pipes: requests go to its stdin, replies come from its stdout.
pub struct ProbeChannel {
    who: String,
    stdin: Option<PipeWriter>,
    stdout: Receiver<String>,
    stderr: PathBuf,
    deadline: Instant,
}

/// The pipes and the stderr file to hand to a runtime, and the channel that stays with us.
pub fn probe_pipes(
    who: &str,
    stderr_path: &Path,
    deadline: Instant,
) -> Result<(ContainerStdio, ProbeChannel), HarnessError> {
    let io_err = |what: &'static str| move |source| HarnessError::Io { what, source };
    let (stdin_reader, stdin_writer) = std::io::pipe().map_err(io_err("making the stdin pipe"))?;
    let (stdout_reader, stdout_writer) =
        std::io::pipe().map_err(io_err("making the stdout pipe"))?;
    let stderr = std::fs::File::options()
        .create(true)
        .append(true)
        .read(true)
        .open(stderr_path)
        .map_err(io_err("creating the stderr log"))?;
    Ok((
        ContainerStdio {
            stdin: stdin_reader.into(),
            stdout: stdout_writer.into(),
            stderr,
        },
        ProbeChannel {
            who: who.to_owned(),
            stdin: Some(stdin_writer),
            stdout: crate::exec::lines_of(stdout_reader),
            stderr: stderr_path.to_owned(),
            deadline,
        },
    ))
}

impl ProbeChannel {
    /// The next response the probe prints, waiting at most until the deadline.
    pub fn response(&self) -> Result<Response, HarnessError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        let line = match self.stdout.recv_timeout(left) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                return Err(HarnessError::ProbeSilent {
                    id: self.who.clone(),
                    stderr: self.stderr_tail(),
                });
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(HarnessError::ProbeGone {
                    id: self.who.clone(),
                    stderr: self.stderr_tail(),
                });
            }
        };
        serde_json::from_str(&line).map_err(|e| HarnessError::ProbeGarbage {
            line,
            problem: e.to_string(),
        })
    }

    /// The probe's next reply; a probe that reports an error is a harness error.
    pub fn reply(&self) -> Result<Reply, HarnessError> {
        match self.response()? {
            Response::Ok { reply } => Ok(reply),
            Response::Error { op, message } => Err(HarnessError::ProbeFailed { op, message }),
        }
    }

    /// Sends one request to a probe in `serve` mode and returns its reply.
    pub fn ask(&mut self, request: &Request) -> Result<Reply, HarnessError> {
        let stdin = self.stdin.as_mut().ok_or(HarnessError::StdinClosed)?;
        writeln!(stdin, "{}", request.to_arg()).map_err(|source| HarnessError::Io {
            what: "writing to the probe",
            source,
        })?;
        self.reply()
    }

    /// Closes the probe's stdin (a `serve` probe then exits).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    pub fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        super::error_summary(&text, 5)
    }
}
