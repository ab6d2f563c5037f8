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
    /// The suite printed its first verdict. A timing mark only: the verdicts come in `Report`.
    FirstVerdict,
    /// The suite's JSON report (its `--report json=`), sent once the suite has exited: the
    /// file's text as is, so the host can write the very report a run on the host would.
    Report { text: String },
    /// The suite was asked for a JSON report and wrote none (or an unreadable one).
    NoReport { reason: String },
    /// The suite ended with this exit code (`error`: the init could not run it).
    Exit { code: i32, error: Option<String> },
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

/// Where the guest's suite writes its JSON report.
pub const REPORT_PATH: &str = "/run/palisade-vm-report.json";

/// The `palisade` subcommands that write reports (`--report`).
const REPORTING: [&str; 3] = ["run", "selftest", "matrix"];

/// The suite's command line with `--report json=REPORT_PATH` added, when the subcommand writes
/// reports; `None` otherwise (`list`).
pub fn with_json_report(args: &[String]) -> Option<Vec<String>> {
    let command = args.first()?;
    if !REPORTING.contains(&command.as_str()) {
        return None;
    }
    let mut with = args.to_vec();
    // Right after the subcommand, so it cannot land after a `--` of the user's.
    with.insert(1, format!("--report=json={REPORT_PATH}"));
    Some(with)
}

/// A verdict line of libtest's pretty output (`test [runc] pid::x ... ok`). Used for the
/// first-verdict timing mark only.
pub fn is_verdict_line(line: &str) -> bool {
    line.strip_prefix("test ")
        .and_then(|rest| rest.split_once(" ... "))
        .is_some_and(|(_, outcome)| {
            let outcome = outcome.trim();
            outcome == "ok" || outcome == "FAILED" || outcome.starts_with("ignored")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rstest::rstest]
    #[case("test [runc] pid::own_pid_is_one          ... ok", true)]
    #[case("test [crun] selftest::uts::x ... FAILED", true)]
    #[case("test [runc] kernel::y ... ignored (needs root ... really)", true)]
    #[case("running 3 tests", false)]
    #[case("test result: ok. 3 passed; 0 failed", false)]
    fn verdict_lines_are_recognised_for_timing(#[case] line: &str, #[case] verdict: bool) {
        assert_eq!(is_verdict_line(line), verdict);
    }

    #[test]
    fn reporting_commands_get_a_json_report_first() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            with_json_report(&args(&["run", "pid::", "--", "x"])),
            Some(args(&[
                "run",
                "--report=json=/run/palisade-vm-report.json",
                "pid::",
                "--",
                "x"
            ]))
        );
        assert!(with_json_report(&args(&["matrix"])).is_some());
        assert_eq!(with_json_report(&args(&["list"])), None);
        assert_eq!(with_json_report(&[]), None);
    }

    #[test]
    fn a_report_travels_whole_on_one_line() {
        let event = GuestEvent::Report {
            text: "{\n  \"schema_version\": 1\n}\n".to_owned(),
        };
        let line = event.to_line();
        assert_eq!(line.lines().count(), 1, "{line}");
        assert_eq!(GuestEvent::from_line(&line), Some(event));
        assert_eq!(
            GuestEvent::from_line(&GuestEvent::FirstVerdict.to_line()),
            Some(GuestEvent::FirstVerdict)
        );
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
