//! The guest's verdicts, as its suite's JSON report (`palisade run --report json=`) says them:
//! the host reads the counts and the failures from there, never from the suite's text output.

use std::path::Path;

use serde::Deserialize;

use crate::report::Counts;
use crate::report::json::SCHEMA_VERSION;

/// The JSON report the guest sent, read.
#[derive(Debug, Clone)]
pub struct GuestReport {
    /// The report as the guest's suite wrote it.
    pub text: String,
    /// All runtimes together.
    pub counts: Counts,
    /// `[runtime] trial` of every failed trial.
    pub failed: Vec<String>,
    /// Runtimes that could not be tested, with why.
    pub not_tested: Vec<String>,
}

/// The part of the JSON report (see `report::json`) the host needs.
#[derive(Deserialize)]
struct View {
    schema_version: u32,
    runtimes: Vec<RuntimeView>,
}

#[derive(Deserialize)]
struct RuntimeView {
    label: String,
    status: String,
    #[serde(default)]
    reason: Option<String>,
    trials: Vec<TrialView>,
}

#[derive(Deserialize)]
struct TrialView {
    name: String,
    verdict: String,
}

impl GuestReport {
    pub fn parse(text: String) -> Result<GuestReport, String> {
        let view: View =
            serde_json::from_str(&text).map_err(|e| format!("unreadable report: {e}"))?;
        if view.schema_version != SCHEMA_VERSION {
            return Err(format!(
                "report schema version {}, this palisade reads {SCHEMA_VERSION}",
                view.schema_version
            ));
        }
        let mut counts = Counts::default();
        let mut failed = Vec::new();
        let mut not_tested = Vec::new();
        for runtime in &view.runtimes {
            if runtime.status != "ready" {
                not_tested.push(format!(
                    "{}: {} ({})",
                    runtime.label,
                    runtime.status,
                    runtime.reason.as_deref().unwrap_or("no reason given")
                ));
            }
            for trial in &runtime.trials {
                match trial.verdict.as_str() {
                    "pass" => counts.passed += 1,
                    "skip" => counts.skipped += 1,
                    "fail" => {
                        counts.failed += 1;
                        failed.push(format!("[{}] {}", runtime.label, trial.name));
                    }
                    other => {
                        return Err(format!(
                            "trial {} has an unknown verdict `{other}`",
                            trial.name
                        ));
                    }
                }
            }
        }
        Ok(GuestReport {
            text,
            counts,
            failed,
            not_tested,
        })
    }

    /// Writes the report as the guest's suite wrote it.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, &self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{fixture, json};

    #[test]
    fn counts_and_failures_come_from_the_json_report() {
        let text = json::render(&fixture::report()).expect("renders");
        let report = GuestReport::parse(text.clone()).expect("reads");
        let fixture = fixture::report();
        let expected = fixture
            .runtimes
            .iter()
            .map(|r| fixture.counts_of(&r.label))
            .fold(Counts::default(), |a, c| Counts {
                passed: a.passed + c.passed,
                failed: a.failed + c.failed,
                skipped: a.skipped + c.skipped,
            });
        assert_eq!(report.counts, expected);
        assert_eq!(report.failed.len(), expected.failed);
        assert!(
            report.failed.iter().all(|f| f.starts_with('[')),
            "{:?}",
            report.failed
        );
        assert_eq!(report.not_tested.len(), 2, "{:?}", report.not_tested);
        assert!(
            report.not_tested[0].starts_with("youki: unavailable (runtime `youki` not found"),
            "{:?}",
            report.not_tested
        );
        assert_eq!(report.text, text);
    }

    #[test]
    fn a_report_of_another_schema_or_shape_is_refused() {
        let newer = serde_json::json!({"schema_version": SCHEMA_VERSION + 1, "runtimes": []});
        let err = GuestReport::parse(newer.to_string()).expect_err("newer schema");
        assert!(err.contains("schema version"), "{err}");
        let odd = serde_json::json!({"schema_version": SCHEMA_VERSION, "runtimes": [
            {"label": "runc", "status": "ready", "trials": [{"name": "x", "verdict": "maybe"}]}
        ]});
        let err = GuestReport::parse(odd.to_string()).expect_err("unknown verdict");
        assert!(err.contains("`maybe`"), "{err}");
        assert!(GuestReport::parse("[]".to_owned()).is_err());
        assert!(GuestReport::parse("{\"schema_version\": 1, \"runt".to_owned()).is_err());
    }
}
