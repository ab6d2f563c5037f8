//! Code that runs in the processes `create` forks, and the protocol they report back with.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;

use serde::{Deserialize, Serialize};

pub(crate) mod copyup;
pub mod init;
mod inroot;
pub mod nsjoin;
mod rootfs;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_lifecycle;

/// Messages from the intermediate process and the container init to `create`, one JSON object
/// per line on a close-on-exec pipe.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// Sent by the intermediate process: the init's pid in the runtime's pid namespace.
    InitPid { pid: i32 },
    /// Sent by the init: set up, blocked until `start`.
    Ready,
    /// Sent by either: setup failed; the sender exits.
    Error { message: String },
    /// Sent by `create` to the init: it has been moved into its cgroups; `pid` is its pid as the
    /// runtime sees it (for the state hooks read).
    CgroupJoined { pid: i32 },
    /// Sent by the init, with its rootfs mounted and before its pivot: run the prestart and
    /// createRuntime hooks now. It waits for [`Message::RuntimeHooksDone`].
    RuntimeHooks,
    /// Sent by `create` to the init: the runtime's hooks succeeded.
    RuntimeHooksDone,
    /// Sent by the intermediate process: it is in a new user namespace, whose uid and gid maps
    /// `create` (outside it) must write.
    UserNs,
    /// Sent by `create` to the intermediate process: the id maps are written.
    IdMapsWritten,
    /// Sent by `exec`'s intermediate process: the host pid of the process it forked.
    ExecPid { pid: i32 },
}

pub struct Sender(File);

impl Sender {
    pub fn new(fd: OwnedFd) -> Self {
        Self(File::from(fd))
    }

    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.0)
    }

    pub fn send(&mut self, msg: &Message) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.0.write_all(&line)
    }
}

pub struct Receiver(BufReader<File>);

impl Receiver {
    pub fn new(fd: OwnedFd) -> Self {
        Self(BufReader::new(File::from(fd)))
    }

    /// `Ok(None)` at end of stream (every sender gone).
    pub fn recv(&mut self) -> std::io::Result<Option<Message>> {
        let mut line = String::new();
        if self.0.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        serde_json::from_str(&line)
            .map(Some)
            .map_err(std::io::Error::other)
    }
}
