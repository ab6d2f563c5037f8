//! What the host tells the guest (a JSON file in the initramfs) and what the guest says back: one
//! `PALISADE {json}` line per event on the guest's second serial port (ttyS1), which carries
//! nothing else, so kernel messages on the console (ttyS0) never interleave with results.

use serde::{Deserialize, Serialize};

/// Where the guest init finds its instructions.
pub const CONFIG_PATH: &str = "/palisade-vm.json";
/// Every protocol line starts with this.
pub const LINE_PREFIX: &str = "PALISADE ";

/// Which cgroup hierarchy the guest init mounts at `/sys/fs/cgroup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CgroupLayout {
    /// One v1 hierarchy per controller on a tmpfs.
    V1,
    /// cgroup2 only.
    V2,
    /// v1 hierarchies plus cgroup2 at `/sys/fs/cgroup/unified` (systemd's hybrid layout).
    Hybrid,
}

impl std::fmt::Display for CgroupLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CgroupLayout::V1 => "v1",
            CgroupLayout::V2 => "v2",
            CgroupLayout::Hybrid => "hybrid",
        })
    }
}

impl std::str::FromStr for CgroupLayout {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "v1" => Ok(CgroupLayout::V1),
            "v2" => Ok(CgroupLayout::V2),
            "hybrid" => Ok(CgroupLayout::Hybrid),
            other => Err(format!("`{other}`: expected v1, v2 or hybrid")),
        }
    }
}

/// The guest init's instructions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GuestConfig {
    pub cgroup: CgroupLayout,
    /// Kernel modules (paths inside the guest), dependencies first.
    pub modules: Vec<String>,
    /// The `palisade` command line to run, without the program name (`["run", "pid::"]`).
    pub args: Vec<String>,
    /// Environment for the suite (PATH and the like are added by the init).
    pub env: Vec<(String, String)>,
}

/// One line from the guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuestEvent {
    /// The init is running; seconds since the guest kernel started.
    Booted { uptime: f64, kernel: String },
    /// A message of the init itself (module loads, mounts).
    Log { message: String },
    /// A line the suite printed.
    Out { line: String },
    /// One trial's verdict, as the suite printed it.
    Result(TrialLine),
    /// The suite ended with this exit code (`error`: the init could not run it).
    Exit { code: i32, error: Option<String> },
}

/// A verdict parsed from libtest's line `test [runc] pid::x ... ok`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrialLine {
    pub runtime: String,
    pub name: String,
    /// `pass`, `fail` or `skip`.
    pub verdict: String,
    /// The skip reason, when libtest printed one.
    pub reason: Option<String>,
}

impl GuestEvent {
    pub fn to_line(&self) -> String {
        // Serializing these plain types cannot fail; an empty object keeps the line well-formed.
        let json = serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned());
        format!("{LINE_PREFIX}{json}")
    }

    /// Parses a protocol line (a trailing `\r` from the tty is tolerated); `None` for anything else.
    pub fn from_line(line: &str) -> Option<GuestEvent> {
        let json = line
            .trim_end_matches(['\r', '\n'])
            .strip_prefix(LINE_PREFIX)?;
        serde_json::from_str(json).ok()
    }
}

/// Recognises libtest-mimic's pretty result line. Its `[kind]` is the runtime label.
pub fn parse_trial_line(line: &str) -> Option<TrialLine> {
    let rest = line.strip_prefix("test ")?;
    let (head, outcome) = rest.split_once(" ... ")?;
    let head = head.trim();
    let (runtime, name) = match head.strip_prefix('[') {
        Some(after) => {
            let (kind, name) = after.split_once(']')?;
            (kind.to_owned(), name.trim().to_owned())
        }
        None => (String::new(), head.to_owned()),
    };
    let outcome = outcome.trim();
    let (verdict, reason) = if outcome == "ok" {
        ("pass", None)
    } else if outcome == "FAILED" {
        ("fail", None)
    } else if let Some(reason) = outcome.strip_prefix("ignored") {
        let reason = reason.trim();
        let reason = reason
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .map(str::to_owned);
        ("skip", reason)
    } else {
        return None;
    };
    Some(TrialLine {
        runtime,
        name,
        verdict: verdict.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pass_fail_and_skip_lines() {
        assert_eq!(
            parse_trial_line("test [runc] pid::own_pid_is_one          ... ok"),
            Some(TrialLine {
                runtime: "runc".into(),
                name: "pid::own_pid_is_one".into(),
                verdict: "pass".into(),
                reason: None
            })
        );
        let fail = parse_trial_line("test [crun] selftest::uts::x ... FAILED").expect("fail");
        assert_eq!(fail.verdict, "fail");
        let skip = parse_trial_line("test [runc] kernel::y ... ignored (needs root ... really)")
            .expect("skip");
        assert_eq!(skip.verdict, "skip");
        assert_eq!(skip.reason.as_deref(), Some("needs root ... really"));
        assert_eq!(parse_trial_line("running 3 tests"), None);
        assert_eq!(parse_trial_line("test result: ok. 3 passed"), None);
    }

    #[test]
    fn events_round_trip_through_a_tty_line() {
        let event = GuestEvent::Exit {
            code: 101,
            error: None,
        };
        let line = format!("{}\r\n", event.to_line());
        assert_eq!(GuestEvent::from_line(&line), Some(event));
        assert_eq!(GuestEvent::from_line("[    1.0] random kernel noise"), None);
    }
}
