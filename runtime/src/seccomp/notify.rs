//! Handing the `SCMP_ACT_NOTIFY` listener to the seccomp agent at `listenerPath`: the container
//! process state as JSON, with the listener fd in `SCM_RIGHTS` (runtime-spec, config-linux.md,
//! "The Container Process State").

use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use oci_spec::runtime::{ContainerProcessState, SECCOMP_FD_NAME, State};

use super::{SeccompError, SeccompPlan};

/// How long sending may block on an agent that does not read: a clear error instead of a hang.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// An open connection to the agent, made before the filter is loaded.
#[derive(Debug)]
pub struct ListenerConnection {
    stream: UnixStream,
    path: PathBuf,
}

fn listener_err(
    path: &std::path::Path,
    what: &'static str,
) -> impl FnOnce(std::io::Error) -> SeccompError {
    let path = path.to_path_buf();
    move |source| SeccompError::Listener { path, what, source }
}

/// Connects to `listenerPath` when the plan uses `SCMP_ACT_NOTIFY`. Call it before [`super::load`]
/// so that `socket(2)` and `connect(2)` are not subject to the filter.
pub fn connect_listener(plan: &SeccompPlan) -> Result<Option<ListenerConnection>, SeccompError> {
    let Some(listener) = plan.listener() else {
        return Ok(None);
    };
    let path = &listener.path;
    let stream = UnixStream::connect(path).map_err(listener_err(path, "connect"))?;
    stream
        .set_write_timeout(Some(SEND_TIMEOUT))
        .map_err(listener_err(path, "set send timeout"))?;
    Ok(Some(ListenerConnection {
        stream,
        path: path.clone(),
    }))
}

impl ListenerConnection {
    /// Another handle on the same connection (the init takes one from `create`'s context).
    pub fn try_clone(&self) -> Result<ListenerConnection, SeccompError> {
        Ok(ListenerConnection {
            stream: self
                .stream
                .try_clone()
                .map_err(listener_err(&self.path, "duplicate the connection"))?,
            path: self.path.clone(),
        })
    }
}

/// The container process state sent to the agent.
pub fn process_state(plan: &SeccompPlan, pid: i32, state: &State) -> ContainerProcessState {
    let mut cps = ContainerProcessState::default();
    cps.set_version(crate::OCI_SPEC_VERSION.to_string())
        .set_fds(vec![SECCOMP_FD_NAME.to_string()])
        .set_pid(pid)
        .set_metadata(plan.listener().and_then(|l| l.metadata.clone()))
        .set_state(state.clone());
    cps
}

/// Sends the container process state (`pid`: the container process as the runtime sees it;
/// `state`: the OCI state, status `creating`) with `listener` over `conn`, then closes the
/// connection, as the spec asks (one state per connection).
///
/// Uses only `sendmsg(2)` (more than once if the socket takes the payload in parts) and `close(2)`.
pub fn send_listener_fd(
    conn: ListenerConnection,
    plan: &SeccompPlan,
    listener: BorrowedFd<'_>,
    pid: i32,
    state: &State,
) -> Result<(), SeccompError> {
    let ListenerConnection { stream, path } = conn;
    let payload = serde_json::to_vec(&process_state(plan, pid, state))
        .map_err(|e| listener_err(&path, "encode the container process state")(e.into()))?;
    let fds = [listener.as_raw_fd()];
    let mut sent = 0;
    while sent < payload.len() {
        // The fd goes with the first part only (spec); later parts are plain data.
        let rights = [ControlMessage::ScmRights(&fds)];
        let cmsgs: &[ControlMessage<'_>] = if sent == 0 { &rights } else { &[] };
        sent += sendmsg::<()>(
            stream.as_raw_fd(),
            &[IoSlice::new(&payload[sent..])],
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(|e| listener_err(&path, "sendmsg")(e.into()))?;
    }
    drop(stream);
    Ok(())
}
