//! The small TCP tools network scenarios need, shared by the probe (inside a container) and the
//! harness (inside the lab's namespaces): connect and read what the server saw, answer every
//! connection with the peer address seen, and list listening sockets.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How one connection attempt went: the peer address the server reported, or why it failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectOutcome {
    /// The address the server says it saw us connect from (`10.1.2.3:45678`).
    pub peer_seen: Option<String>,
    /// The error of connect(2) or of reading the answer (`Connection refused (os error 111)`).
    pub error: Option<String>,
    /// The errno name of that error (`ECONNREFUSED`; `ETIMEDOUT` for the bounded wait).
    #[serde(default)]
    pub errno: Option<String>,
}

impl ConnectOutcome {
    pub fn succeeded(&self) -> bool {
        self.error.is_none() && self.peer_seen.is_some()
    }

    /// The kernel said no at once: nothing listens there (ECONNREFUSED), or there is no route
    /// (ENETUNREACH, EHOSTUNREACH). The only failures that prove a path is closed; a timeout
    /// proves nothing but a broken lab or probe.
    pub fn refused_by_the_kernel(&self) -> bool {
        matches!(
            self.errno.as_deref(),
            Some("ECONNREFUSED" | "ENETUNREACH" | "EHOSTUNREACH")
        )
    }

    /// The IP part of the reported peer address.
    pub fn peer_ip(&self) -> Option<String> {
        let peer: SocketAddr = self.peer_seen.as_deref()?.parse().ok()?;
        Some(peer.ip().to_string())
    }
}

fn errno_of(error: &std::io::Error) -> Option<String> {
    match error.raw_os_error() {
        Some(raw) => Some(crate::agent::errno_name(nix::errno::Errno::from_raw(raw))),
        None if error.kind() == std::io::ErrorKind::TimedOut => Some("ETIMEDOUT".to_owned()),
        None => None,
    }
}

/// Connects to `addr` with a bounded connect and read, and reads the one line the server answers.
pub fn connect_and_read(addr: &str, timeout: Duration) -> ConnectOutcome {
    let failed = |error: String, errno: Option<String>| ConnectOutcome {
        peer_seen: None,
        error: Some(error),
        errno,
    };
    let addr: SocketAddr = match addr.parse() {
        Ok(addr) => addr,
        Err(e) => return failed(format!("bad address {addr:?}: {e}"), None),
    };
    let stream = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(stream) => stream,
        Err(e) => return failed(format!("connect: {e}"), errno_of(&e)),
    };
    if let Err(e) = stream.set_read_timeout(Some(timeout)) {
        return failed(format!("setting the read timeout: {e}"), errno_of(&e));
    }
    let mut line = String::new();
    match BufReader::new(stream).read_line(&mut line) {
        Ok(n) if n > 0 => ConnectOutcome {
            peer_seen: Some(line.trim().to_owned()),
            error: None,
            errno: None,
        },
        Ok(_) => failed(
            "the server closed the connection without answering".into(),
            None,
        ),
        Err(e) => failed(format!("reading the answer: {e}"), errno_of(&e)),
    }
}

/// Answers every connection on `listener` with the peer address it sees, one line, until the
/// listener is shut down (accept then fails) or closed.
pub fn answer_peer_addresses(listener: &TcpListener) {
    loop {
        match listener.accept() {
            Ok((mut stream, peer)) => {
                let _ = writeln!(stream, "{peer}");
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

/// The listening TCP sockets in a `/proc/<...>/net/tcp` or `tcp6` table.
pub fn tcp_listeners(table: impl std::io::Read) -> Result<Vec<SocketAddr>, String> {
    use procfs::FromReadSI;
    let entries = procfs::net::TcpNetEntries::from_read(table, procfs::current_system_info())
        .map_err(|e| e.to_string())?;
    Ok(entries
        .0
        .into_iter()
        .filter(|e| e.state == procfs::net::TcpState::Listen)
        .map(|e| e.local_address)
        .collect())
}

/// Every listening TCP socket (v4 and v6) of the calling thread's network namespace.
///
/// Reads `/proc/thread-self/net/tcp`: `/proc/net` is `/proc/self/net`, which shows the network
/// namespace of the thread group leader, not of a thread that has entered another namespace.
pub fn own_tcp_listeners() -> Result<Vec<SocketAddr>, String> {
    let mut all = Vec::new();
    for table in ["tcp", "tcp6"] {
        let path = format!("/proc/thread-self/net/{table}");
        match std::fs::File::open(&path) {
            Ok(file) => {
                all.extend(tcp_listeners(file).map_err(|e| format!("reading {path}: {e}"))?)
            }
            // No IPv6 in this kernel: no tcp6 table.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && table == "tcp6" => {}
            Err(e) => return Err(format!("reading {path}: {e}")),
        }
    }
    all.sort();
    all.dedup();
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listeners_only() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
            0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0\n   \
            1: 0100007F:1F91 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(
            tcp_listeners(table.as_bytes()).expect("parses"),
            vec!["127.0.0.1:8080".parse::<SocketAddr>().expect("addr")]
        );
    }

    #[test]
    fn garbage_is_an_error_not_an_empty_list() {
        assert!(tcp_listeners("header\nnot a socket table\n".as_bytes()).is_err());
    }

    #[test]
    fn a_refused_connection_is_an_outcome() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let outcome = connect_and_read(&addr.to_string(), Duration::from_secs(1));
        assert!(!outcome.succeeded(), "{outcome:?}");
        assert!(outcome.refused_by_the_kernel(), "{outcome:?}");
        assert_eq!(outcome.errno.as_deref(), Some("ECONNREFUSED"));
    }

    #[test]
    fn the_server_reports_the_peer() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || answer_peer_addresses(&listener));
        let outcome = connect_and_read(&addr.to_string(), Duration::from_secs(2));
        assert_eq!(
            outcome.peer_ip().as_deref(),
            Some("127.0.0.1"),
            "{outcome:?}"
        );
    }
}
