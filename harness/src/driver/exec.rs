//! A process started in a running container (`<runtime> exec`), talked to through the probe.

use std::io::{BufRead, BufReader, PipeWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Instant;

use oci_spec::runtime::Process;
use palisade_probe::{Reply, Request, Response};

use super::ContainerStdio;
use crate::error::HarnessError;
use crate::exec::ProcessHandle;

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
            stdout: spawn_line_reader(stdout_reader),
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

/// Forwards each line the probe prints to a channel; the thread ends when the pipe closes.
pub fn spawn_line_reader(reader: std::io::PipeReader) -> Receiver<String> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// What an `exec` started: the process's host pid, where the driver knows it, and a helper
/// process that lives as long as it (to be reaped after it).
#[derive(Debug)]
pub struct Execed {
    pub host_pid: Option<i32>,
    pub helper: Option<std::process::Child>,
}

/// A probe started in a running container. Dropping it kills the process.
pub struct ExecProcess {
    pub channel: ProbeChannel,
    host_pid: Option<i32>,
    helper: Option<std::process::Child>,
    /// The process spec it was started with.
    pub process: Process,
}

impl ExecProcess {
    pub fn new(channel: ProbeChannel, execed: Execed, process: Process) -> ExecProcess {
        ExecProcess {
            channel,
            host_pid: execed.host_pid,
            helper: execed.helper,
            process,
        }
    }

    /// The process's pid on the host: the driver's word for it, or what the probe says of itself
    /// (the outermost NSpid) when the driver cannot tell.
    pub fn host_pid(&mut self) -> Result<i32, HarnessError> {
        if let Some(pid) = self.host_pid {
            return Ok(pid);
        }
        let facts = crate::run::scenario::expect_facts(self.ask(&Request::Facts)?)?;
        let pid = facts.nspid.first().copied().unwrap_or(facts.pid);
        self.host_pid = Some(pid);
        Ok(pid)
    }

    pub fn ask(&mut self, request: &Request) -> Result<Reply, HarnessError> {
        self.channel.ask(request)
    }
}

impl Drop for ExecProcess {
    fn drop(&mut self) {
        self.channel.close_stdin();
        if let Some(pid) = self.host_pid
            && let Ok(Some(handle)) = ProcessHandle::open(pid)
        {
            handle.kill();
        }
        if let Some(mut helper) = self.helper.take() {
            let _ = helper.kill();
            let _ = helper.wait();
        }
    }
}
