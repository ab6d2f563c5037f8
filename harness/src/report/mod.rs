//! Reports: pure functions from a finished run ([`RunReport`]) to text. The runner records the
//! verdicts; reporters only read them and never call the runner (nextest's split).

pub mod json;
pub mod junit;
pub mod markdown;
pub mod merge;
pub mod tap;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

use crate::driver::RuntimeInfo;
use crate::lab::host::HostFacts;
use crate::run::runner::{TrialResult, Verdict};

/// Everything a report needs about one run, fixed once the run is over.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub host: HostFacts,
    /// The runtimes in the order they were named.
    pub runtimes: Vec<RuntimeReport>,
    /// Every trial's verdict, grouped by runtime in [`RunReport::runtimes`] order.
    pub results: Vec<TrialResult>,
    /// Wall time of the whole run.
    pub duration: Duration,
}

/// One runtime under test: what it is, or why it could not be tested.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeReport {
    /// The column / suite name (`runc`, or the file name of a path).
    pub label: String,
    /// Name, path and version, when the runtime was found.
    #[serde(flatten)]
    pub info: Option<RuntimeInfo>,
    #[serde(flatten)]
    pub status: RuntimeStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "kebab-case")]
pub enum RuntimeStatus {
    /// Found, and it ran the trivial preflight container (or no preflight was needed).
    Ready,
    /// Not installed, or it does not answer `--version`.
    Unavailable(String),
    /// Found, but it could not run a trivial container here: the one error to show.
    PreflightFailed(String),
}

/// Pass/fail/skip counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl Counts {
    pub fn of<'a>(results: impl IntoIterator<Item = &'a TrialResult>) -> Counts {
        let mut counts = Counts::default();
        for result in results {
            match result.verdict {
                Verdict::Pass => counts.passed += 1,
                Verdict::Fail(_) => counts.failed += 1,
                Verdict::Skip(_) => counts.skipped += 1,
            }
        }
        counts
    }
}

impl RunReport {
    /// The results of one runtime, in report order.
    pub fn results_of<'a>(&'a self, label: &'a str) -> impl Iterator<Item = &'a TrialResult> + 'a {
        self.results.iter().filter(move |r| r.runtime == label)
    }

    pub fn counts_of(&self, label: &str) -> Counts {
        Counts::of(self.results_of(label))
    }

    pub fn has_failures(&self) -> bool {
        self.results
            .iter()
            .any(|r| matches!(r.verdict, Verdict::Fail(_)))
    }

    /// Puts the results in a stable order whatever order they completed in: runtimes as named,
    /// then `preflight`, then trials in `order` (the scenario list), then anything else by name.
    pub fn sort_results(&mut self, order: &[String]) {
        let runtime_rank = |label: &str| {
            self.runtimes
                .iter()
                .position(|r| r.label == label)
                .unwrap_or(usize::MAX)
        };
        let trial_rank = |name: &str| {
            if name == "preflight" {
                return 0;
            }
            order
                .iter()
                .position(|o| o == name)
                .map_or(usize::MAX, |i| i + 1)
        };
        let mut keyed: Vec<_> = std::mem::take(&mut self.results)
            .into_iter()
            .map(|r| ((runtime_rank(&r.runtime), trial_rank(&r.name)), r))
            .collect();
        keyed.sort_by(|(a, ra), (b, rb)| a.cmp(b).then_with(|| ra.name.cmp(&rb.name)));
        self.results = keyed.into_iter().map(|(_, r)| r).collect();
    }
}

impl RuntimeReport {
    /// `runc 1.1.5`: the label and the version, without the `runc version` the runtime repeats.
    pub fn title(&self) -> String {
        match &self.info {
            Some(info) => version_title(&self.label, &info.name, &info.version),
            None => self.label.clone(),
        }
    }
}

/// `runc 1.1.5` from the label `runc`, the name `runc` and the `--version` line
/// `runc version 1.1.5`: the version number once, whichever of label and name the runtime repeats.
pub fn version_title(label: &str, name: &str, version: &str) -> String {
    let version = version.trim();
    let version = [label, name]
        .iter()
        .find_map(|name| version.strip_prefix(name))
        .map(|rest| {
            rest.trim_start()
                .trim_start_matches("version")
                .trim_start_matches(':')
                .trim_start()
        })
        .unwrap_or(version);
    if version.is_empty() {
        label.to_owned()
    } else {
        format!("{label} {version}")
    }
}

/// The short per-runtime tally printed on the terminal at the end of a run.
pub fn summary(report: &RunReport) -> String {
    let mut out = String::new();
    for runtime in &report.runtimes {
        let counts = report.counts_of(&runtime.label);
        let status = match &runtime.status {
            RuntimeStatus::Ready => String::new(),
            RuntimeStatus::Unavailable(reason) => format!(" — unavailable: {reason}"),
            RuntimeStatus::PreflightFailed(error) => format!(" — preflight failed: {error}"),
        };
        out.push_str(&format!(
            "palisade: {}: {} passed, {} failed, {} skipped{status}\n",
            runtime.title(),
            counts.passed,
            counts.failed,
            counts.skipped
        ));
    }
    out
}

/// A report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Junit,
    Tap,
    Json,
    Markdown,
}

impl Format {
    pub fn render(self, report: &RunReport) -> Result<String, ReportError> {
        match self {
            Format::Junit => junit::render(report),
            Format::Tap => Ok(tap::render(report)),
            Format::Json => json::render(report),
            Format::Markdown => Ok(markdown::render(report)),
        }
    }
}

impl FromStr for Format {
    type Err = ReportError;

    fn from_str(s: &str) -> Result<Format, ReportError> {
        match s {
            "junit" | "xml" => Ok(Format::Junit),
            "tap" => Ok(Format::Tap),
            "json" => Ok(Format::Json),
            "md" | "markdown" => Ok(Format::Markdown),
            other => Err(ReportError::UnknownFormat(other.to_owned())),
        }
    }
}

/// `--report <format>=<path>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportSpec {
    pub format: Format,
    pub path: PathBuf,
}

impl FromStr for ReportSpec {
    type Err = ReportError;

    fn from_str(s: &str) -> Result<ReportSpec, ReportError> {
        let (format, path) = s
            .split_once('=')
            .filter(|(_, path)| !path.is_empty())
            .ok_or_else(|| ReportError::BadSpec(s.to_owned()))?;
        Ok(ReportSpec {
            format: format.parse()?,
            path: PathBuf::from(path),
        })
    }
}

/// Parses `junit=a.xml,tap=b.tap` (the `PALISADE_REPORT` variable).
pub fn parse_specs(list: &str) -> Result<Vec<ReportSpec>, ReportError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect()
}

impl ReportSpec {
    pub fn write(&self, report: &RunReport) -> Result<(), ReportError> {
        let text = self.format.render(report)?;
        std::fs::write(&self.path, text).map_err(|source| ReportError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("unknown report format `{0}` (expected junit, tap, json or md)")]
    UnknownFormat(String),
    #[error("`{0}` is not a report: expected <format>=<path>, e.g. junit=report.xml")]
    BadSpec(String),
    #[error("writing the report {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("serializing the JUnit report: {0}")]
    Junit(#[from] quick_junit::SerializeError),
    #[error("serializing the JSON report: {0}")]
    Json(#[from] serde_json::Error),
}

/// One line, for formats where a message must not span lines.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
pub(crate) mod fixture;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_report_specs() {
        let specs = parse_specs("junit=out/r.xml, tap=r.tap,md=M.md").expect("valid");
        assert_eq!(
            specs,
            vec![
                ReportSpec {
                    format: Format::Junit,
                    path: "out/r.xml".into()
                },
                ReportSpec {
                    format: Format::Tap,
                    path: "r.tap".into()
                },
                ReportSpec {
                    format: Format::Markdown,
                    path: "M.md".into()
                },
            ]
        );
    }

    #[test]
    fn rejects_bad_specs() {
        assert!(matches!(
            "html=x".parse::<ReportSpec>(),
            Err(ReportError::UnknownFormat(_))
        ));
        assert!(matches!(
            "junit".parse::<ReportSpec>(),
            Err(ReportError::BadSpec(_))
        ));
        assert!(matches!(
            "junit=".parse::<ReportSpec>(),
            Err(ReportError::BadSpec(_))
        ));
    }

    #[test]
    fn sorts_results_by_runtime_then_scenario_order() {
        let mut report = fixture::report();
        report.results.reverse();
        report.sort_results(&fixture::order());
        let sorted: Vec<_> = report
            .results
            .iter()
            .map(|r| format!("{} {}", r.runtime, r.name))
            .collect();
        let expected: Vec<_> = fixture::report()
            .results
            .iter()
            .map(|r| format!("{} {}", r.runtime, r.name))
            .collect();
        assert_eq!(sorted, expected);
    }

    #[test]
    fn titles_keep_the_version_number_only() {
        let title = |label: &str, version: &str| {
            RuntimeReport {
                label: label.into(),
                info: Some(RuntimeInfo {
                    name: label.into(),
                    path: "/bin/x".into(),
                    version: version.into(),
                }),
                status: RuntimeStatus::Ready,
            }
            .title()
        };
        assert_eq!(title("runc", "runc version 1.1.5+ds1"), "runc 1.1.5+ds1");
        assert_eq!(title("youki", "youki version: 0.7.0"), "youki 0.7.0");
        assert_eq!(title("crun", "crun version 1.8.1"), "crun 1.8.1");
        assert_eq!(title("rt", "v2.0 (build 7)"), "rt v2.0 (build 7)");
        assert_eq!(title("rt", ""), "rt");
    }

    #[test]
    fn summary_counts_each_runtime() {
        insta::assert_snapshot!(summary(&fixture::report()));
    }
}
