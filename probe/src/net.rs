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
}

impl ConnectOutcome {
    pub fn succeeded(&self) -> bool {
        self.error.is_none() && self.peer_seen.is_some()
    }

    /// The IP part of the reported peer address.
    pub fn peer_ip(&self) -> Option<String> {
        let peer: SocketAddr = self.peer_seen.as_deref()?.parse().ok()?;
        Some(peer.ip().to_string())
    }
}

/// Connects to `addr` with a bounded connect and read, and reads the one line the server answers.
pub fn connect_and_read(addr: &str, timeout: Duration) -> ConnectOutcome {
    let failed = |error: String| ConnectOutcome {
        peer_seen: None,
        error: Some(error),
    };
    let addr: SocketAddr = match addr.parse() {
        Ok(addr) => addr,
        Err(e) => return failed(format!("bad address {addr:?}: {e}")),
    };
    let stream = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(stream) => stream,
        Err(e) => return failed(format!("connect: {e}")),
    };
    if let Err(e) = stream.set_read_timeout(Some(timeout)) {
        return failed(format!("setting the read timeout: {e}"));
    }
    let mut line = String::new();
    match BufReader::new(stream).read_line(&mut line) {
        Ok(n) if n > 0 => ConnectOutcome {
            peer_seen: Some(line.trim().to_owned()),
            error: None,
        },
        Ok(_) => failed("the server closed the connection without answering".into()),
        Err(e) => failed(format!("reading the answer: {e}")),
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

/// The listening TCP sockets in a `/proc/<...>/net/tcp` or `tcp6` table (state `0A`).
///
/// Read `/proc/thread-self/net/tcp`: `/proc/net` is `/proc/self/net`, which shows the network
/// namespace of the thread group leader, not of a thread that has entered another namespace.
pub fn tcp_listeners(table: &str) -> Vec<SocketAddr> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(3) != Some(&"0A") {
                return None;
            }
            parse_proc_addr(fields.get(1)?)
        })
        .collect()
}

/// `0100007F:1F90` → `127.0.0.1:8080` (the address is in the kernel's byte order, 32-bit words).
fn parse_proc_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..ip.len() / 8)
        .map(|i| u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    let bytes: Vec<u8> = words
        .iter()
        .flat_map(|w| w.swap_bytes().to_be_bytes())
        .collect();
    let ip: std::net::IpAddr = match bytes.len() {
        4 => std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).into(),
        16 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&bytes);
            std::net::Ipv6Addr::from(octets).into()
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Every listening TCP socket (v4 and v6) of the calling thread's network namespace.
pub fn own_tcp_listeners() -> Result<Vec<SocketAddr>, String> {
    let mut all = Vec::new();
    for table in ["tcp", "tcp6"] {
        let path = format!("/proc/thread-self/net/{table}");
        match std::fs::read_to_string(&path) {
            Ok(text) => all.extend(tcp_listeners(&text)),
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
            0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n   \
            1: 0100007F:1F91 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 2 1\n";
        assert_eq!(
            tcp_listeners(table),
            vec!["127.0.0.1:8080".parse::<SocketAddr>().expect("addr")]
        );
    }

    #[test]
    fn parses_ipv6() {
        assert_eq!(
            parse_proc_addr("00000000000000000000000001000000:0050"),
            Some("[::1]:80".parse().expect("addr"))
        );
    }

    #[test]
    fn a_refused_connection_is_an_outcome() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let outcome = connect_and_read(&addr.to_string(), Duration::from_secs(1));
        assert!(!outcome.succeeded(), "{outcome:?}");
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
