//! JSON: the whole run, for machines: host facts, each runtime (name, version, path, or why it
//! could not be tested), and each trial's verdict, duration, failure message or skip reason.

use serde::Serialize;

use super::{Counts, ReportError, RunReport, RuntimeReport};
use crate::lab::host::HostFacts;
use crate::run::runner::Verdict;

/// Bumped when a field changes meaning or disappears; new fields do not bump it (readers such as
/// `palisade merge` take them as optional).
pub const SCHEMA_VERSION: u32 = 1;

/// The version of Palisade that writes the reports.
pub const PALISADE_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Serialize)]
struct JsonReport<'a> {
    schema_version: u32,
    /// Which Palisade wrote it: runs of different versions may hold different scenarios.
    palisade_version: &'a str,
    run_id: &'a str,
    duration_secs: f64,
    host: &'a HostFacts,
    passed: bool,
    runtimes: Vec<JsonRuntime<'a>>,
}

#[derive(Serialize)]
struct JsonRuntime<'a> {
    #[serde(flatten)]
    runtime: &'a RuntimeReport,
    counts: Counts,
    trials: Vec<JsonTrial<'a>>,
}

#[derive(Serialize)]
struct JsonTrial<'a> {
    name: &'a str,
    /// `pass`, `fail` or `skip`.
    verdict: &'static str,
    duration_secs: f64,
    /// A failure's message; for a negative control that passed, the message of the check that
    /// caught it.
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    skip_reason: Option<&'a str>,
}

pub fn render(report: &RunReport) -> Result<String, ReportError> {
    render_as(report, PALISADE_VERSION)
}

/// [`render`], as written by Palisade `palisade_version` (fixed in snapshot tests).
pub(crate) fn render_as(report: &RunReport, palisade_version: &str) -> Result<String, ReportError> {
    let runtimes = report
        .runtimes
        .iter()
        .map(|runtime| JsonRuntime {
            runtime,
            counts: report.counts_of(&runtime.label),
            trials: report
                .results_of(&runtime.label)
                .map(|result| {
                    let (verdict, message, skip_reason) = match &result.verdict {
                        Verdict::Pass => ("pass", result.caught.as_deref(), None),
                        Verdict::Fail(message) => ("fail", Some(message.as_str()), None),
                        Verdict::Skip(reason) => ("skip", None, Some(reason.as_str())),
                    };
                    JsonTrial {
                        name: &result.name,
                        verdict,
                        duration_secs: result.duration.as_secs_f64(),
                        message,
                        skip_reason,
                    }
                })
                .collect(),
        })
        .collect();
    let json = JsonReport {
        schema_version: SCHEMA_VERSION,
        palisade_version,
        run_id: &report.run_id,
        duration_secs: report.duration.as_secs_f64(),
        host: &report.host,
        passed: !report.has_failures(),
        runtimes,
    };
    let mut text = serde_json::to_string_pretty(&json)?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::super::fixture;

    #[test]
    fn json_snapshot() {
        insta::assert_snapshot!(
            super::render_as(&fixture::report(), "0.1.0-test").expect("renders")
        );
    }

    #[test]
    fn json_parses_back() {
        let text = super::render(&fixture::report()).expect("renders");
        let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(value["runtimes"][0]["version"], "runc version 1.1.5");
        assert_eq!(value["runtimes"][1]["trials"][4]["verdict"], "fail");
        assert_eq!(value["runtimes"][2]["status"], "unavailable");
        assert_eq!(value["host"]["cgroup_mode"], "hybrid");
        assert_eq!(value["host"]["architecture"], "x86_64");
        assert_eq!(value["palisade_version"], super::PALISADE_VERSION);
    }

    #[test]
    fn a_caught_control_says_what_caught_it() {
        let mut report = fixture::report();
        let control = report
            .results
            .iter_mut()
            .find(|r| r.name == "selftest::pid::init_is_pid_1")
            .expect("a control in the fixture");
        control.caught = Some("expected pid 1, saw 4242".into());
        let text = super::render(&report).expect("renders");
        let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        let trial = &value["runtimes"][0]["trials"][3];
        assert_eq!(trial["name"], "selftest::pid::init_is_pid_1");
        assert_eq!(trial["verdict"], "pass");
        assert_eq!(trial["message"], "expected pid 1, saw 4242");
        // A plain pass has none.
        assert!(value["runtimes"][0]["trials"][0].get("message").is_none());
    }
}
