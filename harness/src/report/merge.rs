//! `palisade merge`: JSON reports from any number of hosts combined into one matrix. Rows are the
//! scenarios; columns are host × runtime (or engine), each headed by its host facts. Reports
//! from different Palisade versions, with different scenario sets or without the newer facts,
//! merge with the differences listed, never rejected: the people who validate runtimes across
//! machines need the whole picture, and a missing fact shows as unknown.
//!
//! The input is read leniently (every field a newer Palisade added is optional); the output is
//! Markdown, JUnit or JSON like a single run's reports.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use quick_junit::{Property, Report, TestCase, TestCaseStatus, TestSuite};
use serde::{Deserialize, Serialize};

use super::markdown::{Footnotes, cell};
use super::{Counts, Format, ReportError, ReportSpec, one_line, version_title};
use crate::run::runner::{TrialResult, Verdict};

/// A report larger than this is not one Palisade wrote (a full run with controls is well under
/// 1 MiB); refusing it keeps a wrong argument (a device, a disk image) from filling memory.
pub const MAX_REPORT_BYTES: u64 = 64 << 20;

/// Bumped when a field of the merged JSON changes meaning or disappears.
pub const MERGE_SCHEMA_VERSION: u32 = 1;

/// A JSON report as any Palisade version wrote it: only what identifies a report is required.
#[derive(Debug, Clone, Deserialize)]
pub struct InputReport {
    pub schema_version: u32,
    /// Absent in reports from before it was recorded.
    pub palisade_version: Option<String>,
    #[serde(default)]
    pub host: InputHost,
    pub runtimes: Vec<InputTarget>,
    /// Container engines (docker, podman), from Palisade versions that test them: columns too.
    #[serde(default)]
    pub engines: Vec<InputTarget>,
}

/// The host facts a column is headed by; any may be missing from an older report.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct InputHost {
    pub hostname: Option<String>,
    pub kernel_release: Option<String>,
    pub distribution: Option<String>,
    pub architecture: Option<String>,
    pub cgroup_mode: Option<String>,
    #[serde(default)]
    pub in_vm: bool,
}

/// One runtime or engine of a report, with its trials.
#[derive(Debug, Clone, Deserialize)]
pub struct InputTarget {
    pub label: String,
    pub name: Option<String>,
    pub version: Option<String>,
    /// `ready`, `unavailable` or `preflight-failed` (a newer value is shown as it is).
    pub status: Option<String>,
    pub reason: Option<String>,
    #[serde(default)]
    pub trials: Vec<InputTrial>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InputTrial {
    pub name: String,
    pub verdict: InputVerdict,
    #[serde(default)]
    pub duration_secs: f64,
    pub message: Option<String>,
    pub skip_reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputVerdict {
    Pass,
    Fail,
    Skip,
}

impl InputTrial {
    fn result(&self, label: &str) -> TrialResult {
        let verdict = match self.verdict {
            InputVerdict::Pass => Verdict::Pass,
            InputVerdict::Fail => Verdict::Fail(
                self.message
                    .clone()
                    .unwrap_or_else(|| "failed (the report gives no message)".to_owned()),
            ),
            InputVerdict::Skip => Verdict::Skip(
                self.skip_reason
                    .clone()
                    .unwrap_or_else(|| "skipped (the report gives no reason)".to_owned()),
            ),
        };
        TrialResult {
            runtime: label.to_owned(),
            name: self.name.clone(),
            caught: match self.verdict {
                InputVerdict::Pass => self.message.clone(),
                _ => None,
            },
            verdict,
            duration: Duration::try_from_secs_f64(self.duration_secs).unwrap_or_default(),
        }
    }
}

/// Whether a column is a bare OCI runtime or a container engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    Runtime,
    Engine,
}

/// One column: one runtime (or engine) on one host.
#[derive(Debug, Clone, Serialize)]
pub struct Column {
    /// `host/label`, unique within the merge.
    pub id: String,
    /// The host's name in the header: its hostname, or the report's file name; with the file
    /// name added when two reports come from one host.
    pub host_name: String,
    /// The report file the column comes from.
    pub source: String,
    pub host: InputHost,
    pub kind: TargetKind,
    pub label: String,
    pub name: Option<String>,
    /// The runtime's `--version` line.
    pub version: Option<String>,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub palisade_version: Option<String>,
    pub schema_version: u32,
    pub counts: Counts,
    /// The trials, in report order (a failed `preflight` included).
    #[serde(skip)]
    pub results: Vec<TrialResult>,
}

impl Column {
    fn is_ready(&self) -> bool {
        self.status == "ready"
    }

    /// `runc 1.1.5`, or the label alone when the report has no version.
    pub fn title(&self) -> String {
        match &self.version {
            Some(version) => {
                version_title(&self.label, self.name.as_deref().unwrap_or(""), version)
            }
            None => self.label.clone(),
        }
    }

    pub fn verdict_of(&self, scenario: &str) -> Option<&TrialResult> {
        self.results.iter().find(|r| r.name == scenario)
    }

    pub fn has_failures(&self) -> bool {
        self.counts.failed > 0
    }
}

/// Something that differs between the merged reports; listed, never a reason to reject one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Difference {
    /// The reports come from different Palisade versions (`unknown`: a report from before the
    /// version was recorded). Maps each version to the report files it wrote.
    PalisadeVersions {
        versions: BTreeMap<String, Vec<String>>,
    },
    /// Columns that lack scenarios other columns ran: another version, another filter.
    NotRun {
        columns: Vec<String>,
        scenarios: Vec<String>,
    },
    /// A report lacks host or runtime facts (an older Palisade): shown as unknown.
    MissingFacts { source: String, facts: Vec<String> },
    /// A report of a newer schema than this Palisade knows: fields it added were not read.
    NewerSchema { source: String, schema_version: u32 },
}

impl Difference {
    fn describe(&self) -> String {
        match self {
            Difference::PalisadeVersions { versions } => {
                let list: Vec<String> = versions
                    .iter()
                    .map(|(version, sources)| format!("{version} ({})", sources.join(", ")))
                    .collect();
                format!(
                    "Different Palisade versions: {}. Their scenario sets may differ.",
                    list.join("; ")
                )
            }
            Difference::NotRun { columns, scenarios } => {
                let names: Vec<String> = scenarios.iter().map(|s| format!("`{s}`")).collect();
                let columns: Vec<String> = columns.iter().map(|c| format!("`{c}`")).collect();
                format!(
                    "{} did not run {} scenario{} that other columns ran (— in the table): {}.",
                    columns.join(", "),
                    scenarios.len(),
                    if scenarios.len() == 1 { "" } else { "s" },
                    names.join(", ")
                )
            }
            Difference::MissingFacts { source, facts } => format!(
                "`{source}` does not record {} (an older Palisade wrote it): shown as unknown.",
                facts.join(", ")
            ),
            Difference::NewerSchema {
                source,
                schema_version,
            } => format!(
                "`{source}` has report schema {schema_version}, newer than this Palisade's {}: fields it added were not read.",
                super::json::SCHEMA_VERSION
            ),
        }
    }
}

/// The merged matrix.
#[derive(Debug, Clone)]
pub struct Merged {
    pub columns: Vec<Column>,
    /// Every trial name of any column (`preflight` aside), in the order the reports list them.
    pub scenarios: Vec<String>,
    pub differences: Vec<Difference>,
    /// How many report files went in.
    pub reports: usize,
}

impl Merged {
    /// A FAIL anywhere, a failed preflight included.
    pub fn has_failures(&self) -> bool {
        self.columns.iter().any(Column::has_failures)
    }

    /// The Palisade versions that wrote the reports (`unknown` for reports that do not say).
    pub fn palisade_versions(&self) -> Vec<String> {
        let mut versions: Vec<String> = self
            .columns
            .iter()
            .map(|c| c.palisade_version.clone().unwrap_or_else(unknown))
            .collect();
        versions.sort();
        versions.dedup();
        versions
    }
}

fn unknown() -> String {
    "unknown".to_owned()
}

#[derive(Debug, Clone, Copy, Default)]
pub struct MergeOptions {
    /// Name hosts by their report's file name (`node-a.json` → `node-a`) instead of the hostname
    /// they recorded: a pod's hostname is the pod's, not its node's.
    pub host_from_file_name: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("no reports to merge")]
    NoReports,
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error("{} is larger than {} MiB: not a Palisade report", path.display(), MAX_REPORT_BYTES >> 20)]
    TooLarge { path: PathBuf },
    #[error("{source_name} is not a Palisade JSON report ({error}){hint}")]
    NotAReport {
        source_name: String,
        error: serde_json::Error,
        hint: &'static str,
    },
    #[error("palisade merge writes md, junit or json reports, not TAP")]
    Tap,
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// Reads one JSON report; `source_name` names it in errors and in the merged report.
pub fn parse(source_name: &str, bytes: &[u8]) -> Result<InputReport, MergeError> {
    serde_json::from_slice(bytes).map_err(|error| {
        // A merged report has columns, not runtimes: say what to do instead.
        let merged = serde_json::from_slice::<serde_json::Value>(bytes)
            .is_ok_and(|v| v.get("columns").is_some() && v.get("runtimes").is_none());
        MergeError::NotAReport {
            source_name: source_name.to_owned(),
            error,
            hint: if merged {
                "; it is a merged report: merge the reports it was made from"
            } else {
                ""
            },
        }
    })
}

/// Reads a report file: a regular file, of a report's size, holding a report.
pub fn read(path: &Path) -> Result<InputReport, MergeError> {
    let read_error = |source| MergeError::Read {
        path: path.to_owned(),
        source,
    };
    // Opening a FIFO blocks and a device may never end: only regular files are reports, and
    // that is checked before the open.
    if !std::fs::metadata(path).map_err(read_error)?.is_file() {
        return Err(MergeError::NotAFile {
            path: path.to_owned(),
        });
    }
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_REPORT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_REPORT_BYTES {
        return Err(MergeError::TooLarge {
            path: path.to_owned(),
        });
    }
    parse(&path.display().to_string(), &bytes)
}

/// Reads and merges report files, in the order given.
pub fn merge_files(paths: &[PathBuf], options: MergeOptions) -> Result<Merged, MergeError> {
    let inputs = paths
        .iter()
        .map(|path| Ok((path.display().to_string(), read(path)?)))
        .collect::<Result<Vec<_>, MergeError>>()?;
    merge(inputs, options)
}

/// Merges parsed reports, each with the name of its source: columns in the order given.
pub fn merge(
    inputs: Vec<(String, InputReport)>,
    options: MergeOptions,
) -> Result<Merged, MergeError> {
    if inputs.is_empty() {
        return Err(MergeError::NoReports);
    }
    let reports = inputs.len();
    let mut columns: Vec<Column> = Vec::new();
    let mut differences = Vec::new();
    let mut versions: BTreeMap<String, Vec<String>> = BTreeMap::new();

    for (source, report) in inputs {
        versions
            .entry(report.palisade_version.clone().unwrap_or_else(unknown))
            .or_default()
            .push(source.clone());
        if report.schema_version > super::json::SCHEMA_VERSION {
            differences.push(Difference::NewerSchema {
                source: source.clone(),
                schema_version: report.schema_version,
            });
        }
        let host = normalized(report.host);
        let missing = missing_facts(&host, &report.runtimes, &report.engines);
        if !missing.is_empty() {
            differences.push(Difference::MissingFacts {
                source: source.clone(),
                facts: missing,
            });
        }
        let host_name = match (&host.hostname, options.host_from_file_name) {
            (Some(name), false) => name.clone(),
            _ => file_stem(&source),
        };
        let targets = report
            .runtimes
            .into_iter()
            .map(|t| (TargetKind::Runtime, t))
            .chain(report.engines.into_iter().map(|t| (TargetKind::Engine, t)));
        for (kind, target) in targets {
            let results: Vec<TrialResult> = target
                .trials
                .iter()
                .map(|t| t.result(&target.label))
                .collect();
            columns.push(Column {
                id: String::new(),
                host_name: host_name.clone(),
                source: source.clone(),
                host: host.clone(),
                kind,
                counts: Counts::of(&results),
                label: target.label,
                name: target.name,
                version: target.version.filter(|v| !v.trim().is_empty()),
                status: target.status.unwrap_or_else(|| "ready".to_owned()),
                reason: target.reason,
                palisade_version: report.palisade_version.clone(),
                schema_version: report.schema_version,
                results,
            });
        }
    }
    assign_ids(&mut columns);

    let scenarios = scenario_order(&columns);
    // Columns that lack the same scenarios (the runtimes of one report, as a rule) are one entry.
    let mut not_run: Vec<(Vec<String>, Vec<String>)> = Vec::new();
    for column in &columns {
        let missing: Vec<String> = scenarios
            .iter()
            .filter(|s| column.verdict_of(s).is_none())
            .cloned()
            .collect();
        if missing.is_empty() {
            continue;
        }
        match not_run.iter_mut().find(|(_, m)| *m == missing) {
            Some((ids, _)) => ids.push(column.id.clone()),
            None => not_run.push((vec![column.id.clone()], missing)),
        }
    }
    differences.extend(
        not_run
            .into_iter()
            .map(|(columns, scenarios)| Difference::NotRun { columns, scenarios }),
    );
    if versions.len() > 1 {
        differences.insert(0, Difference::PalisadeVersions { versions });
    }
    Ok(Merged {
        columns,
        scenarios,
        differences,
        reports,
    })
}

/// Empty strings (a fact the writer could not read) are unknown too.
fn normalized(host: InputHost) -> InputHost {
    let known = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    InputHost {
        hostname: known(host.hostname),
        kernel_release: known(host.kernel_release),
        distribution: known(host.distribution),
        architecture: known(host.architecture),
        cgroup_mode: known(host.cgroup_mode),
        in_vm: host.in_vm,
    }
}

fn missing_facts(
    host: &InputHost,
    runtimes: &[InputTarget],
    engines: &[InputTarget],
) -> Vec<String> {
    let mut missing: Vec<String> = [
        ("hostname", &host.hostname),
        ("kernel", &host.kernel_release),
        ("distribution", &host.distribution),
        ("architecture", &host.architecture),
        ("cgroup mode", &host.cgroup_mode),
    ]
    .into_iter()
    .filter(|(_, value)| value.is_none())
    .map(|(fact, _)| fact.to_owned())
    .collect();
    // A runtime that was not found has no version to tell; one that ran should.
    for target in runtimes.iter().chain(engines) {
        let ran = target.status.as_deref().is_none_or(|s| s != "unavailable");
        if ran
            && target
                .version
                .as_deref()
                .is_none_or(|v| v.trim().is_empty())
        {
            missing.push(format!("the version of `{}`", target.label));
        }
    }
    missing
}

/// `reports/node-a.json` → `node-a`.
fn file_stem(source: &str) -> String {
    Path::new(source)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| source.to_owned())
}

/// `host/label`; two columns with the same one (two reports from one host) get the host told
/// apart by their file names (`vm (monday)/runc`), and by a number if even those agree. The
/// header shows the same host name.
fn assign_ids(columns: &mut [Column]) {
    let base: Vec<(String, String)> = columns
        .iter()
        .map(|c| (c.host_name.clone(), c.label.clone()))
        .collect();
    let hosts: Vec<String> = columns
        .iter()
        .zip(&base)
        .map(|(column, key)| {
            if base.iter().filter(|other| *other == key).count() > 1 {
                format!("{} ({})", key.0, file_stem(&column.source))
            } else {
                key.0.clone()
            }
        })
        .collect();
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (column, host) in columns.iter_mut().zip(hosts) {
        let n = seen
            .entry((host.clone(), column.label.clone()))
            .or_default();
        *n += 1;
        column.host_name = if *n == 1 {
            host
        } else {
            format!("{host} #{n}")
        };
        column.id = format!("{}/{}", column.host_name, column.label);
    }
}

/// Every trial name, keeping each report's order: a name only some reports have goes after the
/// name it follows there.
fn scenario_order(columns: &[Column]) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    for column in columns {
        let mut next = 0;
        for result in &column.results {
            if result.name == "preflight" {
                continue;
            }
            match order.iter().position(|n| *n == result.name) {
                Some(i) => next = i + 1,
                None => {
                    order.insert(next, result.name.clone());
                    next += 1;
                }
            }
        }
    }
    order
}

/// Renders `merged` in `format`.
pub fn render(format: Format, merged: &Merged) -> Result<String, MergeError> {
    match format {
        Format::Markdown => Ok(markdown(merged)),
        Format::Junit => Ok(junit(merged)?),
        Format::Json => json(merged),
        Format::Tap => Err(MergeError::Tap),
    }
}

/// Writes `merged` where `spec` says.
pub fn write(spec: &ReportSpec, merged: &Merged) -> Result<(), MergeError> {
    let text = render(spec.format, merged)?;
    std::fs::write(&spec.path, text).map_err(|source| {
        MergeError::Report(ReportError::Write {
            path: spec.path.clone(),
            source,
        })
    })
}

/// The matrix in Markdown: each column headed by its host facts, each cell pass / FAIL / skip /
/// — (not run there), failure messages and skip reasons in footnotes, then the differences.
pub fn markdown(merged: &Merged) -> String {
    let mut notes = Footnotes::default();
    let versions = merged.palisade_versions();
    let mut out = format!(
        "Merged {} report{} from Palisade {}: {} column{} (host × runtime), {} scenario{}.\n\n",
        merged.reports,
        plural(merged.reports),
        versions.join(", "),
        merged.columns.len(),
        plural(merged.columns.len()),
        merged.scenarios.len(),
        plural(merged.scenarios.len()),
    );

    out.push_str("| Scenario |");
    for column in &merged.columns {
        out.push_str(&format!(
            " {} |",
            header(column, versions.len() > 1, &mut notes)
        ));
    }
    out.push_str("\n|---|");
    for _ in &merged.columns {
        out.push_str("---|");
    }
    out.push('\n');

    for scenario in &merged.scenarios {
        out.push_str(&format!("| `{scenario}` |"));
        for column in &merged.columns {
            let text = match column.verdict_of(scenario).map(|r| &r.verdict) {
                Some(Verdict::Pass) => "pass".to_owned(),
                Some(Verdict::Fail(message)) => format!("**FAIL**{}", notes.mark(message)),
                Some(Verdict::Skip(reason)) => format!("skip{}", notes.mark(reason)),
                None => "—".to_owned(),
            };
            out.push_str(&format!(" {text} |"));
        }
        out.push('\n');
    }

    out.push_str("| **total** |");
    for column in &merged.columns {
        let c = column.counts;
        out.push_str(&format!(
            " {} pass, {} fail, {} skip |",
            c.passed, c.failed, c.skipped
        ));
    }
    out.push('\n');

    if !merged.differences.is_empty() {
        out.push_str("\nDifferences between the reports:\n\n");
        for difference in &merged.differences {
            out.push_str(&format!("- {}\n", difference.describe()));
        }
    }
    if !notes.texts.is_empty() {
        out.push('\n');
        for (i, text) in notes.texts.iter().enumerate() {
            out.push_str(&format!("[^{}]: {}\n", i + 1, one_line(text)));
        }
    }
    out
}

/// `**host**<br>runc 1.1.5<br>Ubuntu 24.04 LTS · aarch64<br>kernel 6.8.0 · cgroup v2`.
fn header(column: &Column, with_palisade_version: bool, notes: &mut Footnotes) -> String {
    let fact = |value: &Option<String>, what: &str| {
        value.clone().unwrap_or_else(|| format!("{what} unknown"))
    };
    let host = &column.host;
    let status = match column.status.as_str() {
        "ready" => String::new(),
        "unavailable" => " — not available".to_owned(),
        "preflight-failed" => " — preflight failed".to_owned(),
        other => format!(" — {other}"),
    };
    let reason = match (&column.reason, column.is_ready()) {
        (Some(reason), false) => notes.mark(reason),
        _ => String::new(),
    };
    let engine = match column.kind {
        TargetKind::Runtime => "",
        TargetKind::Engine => " (engine)",
    };
    let mut lines = vec![
        format!("**{}**", html_text(&column.host_name)),
        format!("{}{engine}{status}{reason}", html_text(&column.title())),
        format!(
            "{} · {}",
            html_text(&fact(&host.distribution, "distribution")),
            html_text(&fact(&host.architecture, "architecture"))
        ),
        format!(
            "kernel {} · cgroup {}{}",
            html_text(&host.kernel_release.clone().unwrap_or_else(unknown)),
            html_text(&host.cgroup_mode.clone().unwrap_or_else(unknown)),
            if host.in_vm { " · VM" } else { "" }
        ),
    ];
    if with_palisade_version {
        lines.push(format!(
            "palisade {}",
            html_text(&column.palisade_version.clone().unwrap_or_else(unknown))
        ));
    }
    cell(&lines.join("<br>"))
}

/// Text inside a header cell, where `<br>` is markup: no other markup gets through.
fn html_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// JUnit: one testsuite per column, with its host facts as properties; a scenario the column did
/// not run is a skipped case that says so.
pub fn junit(merged: &Merged) -> Result<String, ReportError> {
    let mut junit = Report::new("palisade merge");
    let mut total = Duration::ZERO;
    for column in &merged.columns {
        let mut suite = TestSuite::new(column.id.as_str());
        let host = &column.host;
        let known = |v: &Option<String>| v.clone().unwrap_or_else(unknown);
        for (name, value) in [
            ("source", column.source.clone()),
            ("host.name", column.host_name.clone()),
            ("host.kernel", known(&host.kernel_release)),
            ("host.distribution", known(&host.distribution)),
            ("host.architecture", known(&host.architecture)),
            ("host.cgroup", known(&host.cgroup_mode)),
            ("host.vm", host.in_vm.to_string()),
            (
                match column.kind {
                    TargetKind::Runtime => "runtime.label",
                    TargetKind::Engine => "engine.label",
                },
                column.label.clone(),
            ),
            ("version", known(&column.version)),
            ("status", column.status.clone()),
            ("palisade.version", known(&column.palisade_version)),
        ] {
            suite.add_property(Property::new(name, value));
        }
        if let Some(reason) = &column.reason {
            suite.add_property(Property::new("status.reason", reason.as_str()));
        }
        let mut time = Duration::ZERO;
        let preflight = column.results.iter().filter(|r| r.name == "preflight");
        for result in preflight {
            suite.add_test_case(super::junit::test_case(&column.id, result));
            time += result.duration;
        }
        for scenario in &merged.scenarios {
            match column.verdict_of(scenario) {
                Some(result) => {
                    suite.add_test_case(super::junit::test_case(&column.id, result));
                    time += result.duration;
                }
                None => {
                    let mut status = TestCaseStatus::skipped();
                    status.set_message(format!(
                        "not run on this host: {} has no such trial (a difference between the merged reports)",
                        column.source
                    ));
                    let mut case = TestCase::new(scenario.as_str(), status);
                    case.set_classname(column.id.as_str());
                    suite.add_test_case(case);
                }
            }
        }
        suite.set_time(time);
        total += time;
        junit.add_test_suite(suite);
    }
    junit.set_time(total);
    Ok(junit.to_string()?)
}

#[derive(Serialize)]
struct JsonMerged<'a> {
    merge_schema_version: u32,
    /// The Palisade that merged.
    palisade_version: &'a str,
    /// Those that wrote the reports.
    palisade_versions: Vec<String>,
    passed: bool,
    columns: &'a [Column],
    scenarios: Vec<JsonScenario<'a>>,
    differences: &'a [Difference],
}

#[derive(Serialize)]
struct JsonScenario<'a> {
    name: &'a str,
    /// One per column, in column order.
    results: Vec<JsonCell<'a>>,
}

#[derive(Serialize)]
struct JsonCell<'a> {
    column: &'a str,
    /// `pass`, `fail`, `skip`, or `not-run` (the column's report has no such trial).
    verdict: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_secs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    skip_reason: Option<&'a str>,
}

pub fn json(merged: &Merged) -> Result<String, MergeError> {
    json_as(merged, super::json::PALISADE_VERSION)
}

/// [`json`], as merged by Palisade `palisade_version` (fixed in snapshot tests).
pub(crate) fn json_as(merged: &Merged, palisade_version: &str) -> Result<String, MergeError> {
    let scenarios = merged
        .scenarios
        .iter()
        .map(|scenario| JsonScenario {
            name: scenario,
            results: merged
                .columns
                .iter()
                .map(|column| {
                    let result = column.verdict_of(scenario);
                    let (verdict, message, skip_reason) = match result.map(|r| &r.verdict) {
                        Some(Verdict::Pass) => {
                            ("pass", result.and_then(|r| r.caught.as_deref()), None)
                        }
                        Some(Verdict::Fail(m)) => ("fail", Some(m.as_str()), None),
                        Some(Verdict::Skip(r)) => ("skip", None, Some(r.as_str())),
                        None => ("not-run", None, None),
                    };
                    JsonCell {
                        column: &column.id,
                        verdict,
                        duration_secs: result.map(|r| r.duration.as_secs_f64()),
                        message,
                        skip_reason,
                    }
                })
                .collect(),
        })
        .collect();
    let json = JsonMerged {
        merge_schema_version: MERGE_SCHEMA_VERSION,
        palisade_version,
        palisade_versions: merged.palisade_versions(),
        passed: !merged.has_failures(),
        columns: &merged.columns,
        scenarios,
        differences: &merged.differences,
    };
    let mut text = serde_json::to_string_pretty(&json).map_err(ReportError::from)?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::super::{fixture, json};
    use super::*;
    use rstest::rstest;

    /// The fixture run (runc with a FAIL, crun with a FAIL, youki missing, a failed preflight)
    /// as Palisade 0.1.0 wrote it on `testhost`.
    fn first() -> InputReport {
        let text = json::render_as(&fixture::report(), "0.1.0").expect("renders");
        parse("reports/testhost.json", text.as_bytes()).expect("parses")
    }

    /// A second host: arm64, cgroup v2, a newer Palisade with one more scenario and one fewer;
    /// everything passes on runc.
    fn second() -> InputReport {
        parse(
            "reports/arm-node.json",
            br#"{
              "schema_version": 1,
              "palisade_version": "0.2.0",
              "run_id": "def456",
              "duration_secs": 1.5,
              "host": {
                "kernel_release": "6.8.0-1017-azure",
                "distribution": "Ubuntu 24.04.1 LTS",
                "architecture": "aarch64",
                "cgroup_mode": "v2",
                "hostname": "arm-node",
                "in_vm": false
              },
              "passed": true,
              "runtimes": [
                {
                  "label": "runc",
                  "name": "runc",
                  "path": "/usr/sbin/runc",
                  "version": "runc version 1.1.12-0ubuntu3.1",
                  "status": "ready",
                  "trials": [
                    {"name": "pid::init_is_pid_1", "verdict": "pass", "duration_secs": 0.3},
                    {"name": "pid::only_sigkill_stops_init", "verdict": "pass", "duration_secs": 0.5},
                    {"name": "uts::hostname_is_private", "verdict": "pass", "duration_secs": 0.2},
                    {"name": "kernel::time_ns", "verdict": "pass", "duration_secs": 0.2}
                  ]
                }
              ]
            }"#,
        )
        .expect("parses")
    }

    /// A report from before the distribution, architecture and Palisade version were recorded.
    fn old() -> InputReport {
        parse(
            "reports/old.json",
            br#"{
              "schema_version": 1,
              "run_id": "0ld",
              "duration_secs": 0.9,
              "host": {
                "euid": 0,
                "kernel_release": "5.15.0-1050-azure",
                "cgroup_mode": "v2",
                "hostname": "old-host",
                "in_vm": true,
                "in_ci": true
              },
              "passed": true,
              "runtimes": [
                {
                  "label": "crun",
                  "name": "crun",
                  "path": "/usr/bin/crun",
                  "version": "crun version 0.17",
                  "status": "ready",
                  "counts": {"passed": 2, "failed": 0, "skipped": 1},
                  "trials": [
                    {"name": "pid::init_is_pid_1", "verdict": "pass", "duration_secs": 0.4},
                    {"name": "uts::hostname_is_private", "verdict": "pass", "duration_secs": 0.3},
                    {"name": "kernel::time_ns", "verdict": "skip", "duration_secs": 0.0,
                     "skip_reason": "the kernel has no time namespace"}
                  ]
                }
              ]
            }"#,
        )
        .expect("parses")
    }

    /// `report` without one of its trials (as a filter would leave it).
    fn without(mut report: InputReport, scenario: &str) -> InputReport {
        for runtime in &mut report.runtimes {
            runtime.trials.retain(|t| t.name != scenario);
        }
        report
    }

    fn merged() -> Merged {
        merge(
            vec![
                ("reports/testhost.json".into(), first()),
                ("reports/arm-node.json".into(), second()),
                ("reports/old.json".into(), old()),
            ],
            MergeOptions::default(),
        )
        .expect("merges")
    }

    #[test]
    fn markdown_snapshot() {
        insta::assert_snapshot!(markdown(&merged()));
    }

    #[test]
    fn junit_snapshot() {
        insta::assert_snapshot!(junit(&merged()).expect("renders"));
    }

    #[test]
    fn json_snapshot() {
        insta::assert_snapshot!(json_as(&merged(), "0.3.0-test").expect("renders"));
    }

    #[test]
    fn junit_parses_back() {
        let xml = junit(&merged()).expect("renders");
        let parsed = Report::deserialize_from_str(&xml).expect("valid JUnit");
        // testhost: 4 runtimes; arm-node: runc; old-host: crun.
        assert_eq!(parsed.test_suites.len(), 6);
        // 7 scenario rows per column, plus the failed preflight of `broken`.
        assert_eq!(parsed.tests, 6 * 7 + 1);
        assert_eq!(parsed.failures, 3);
    }

    #[test]
    fn json_parses_back() {
        let text = json(&merged()).expect("renders");
        let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(value["passed"], false);
        assert_eq!(value["columns"][4]["id"], "arm-node/runc");
        assert_eq!(value["columns"][4]["host"]["architecture"], "aarch64");
        assert_eq!(
            value["columns"][5]["host"]["distribution"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn rows_keep_every_reports_order() {
        assert_eq!(
            merged().scenarios,
            [
                "pid::init_is_pid_1",
                "pid::only_sigkill_stops_init",
                "uts::hostname_is_private",
                "kernel::time_ns",
                "selftest::pid::init_is_pid_1",
                "selftest::uts::hostname_is_private",
                "selftest::kernel::time_ns",
            ]
        );
    }

    #[rstest]
    #[case::one_report(vec![first()], true)]
    #[case::the_failing_report_among_others(vec![second(), first()], true)]
    #[case::passing_reports(vec![second(), old()], false)]
    fn a_fail_anywhere_fails_the_merge(#[case] reports: Vec<InputReport>, #[case] fails: bool) {
        let inputs = reports
            .into_iter()
            .enumerate()
            .map(|(i, r)| (format!("{i}.json"), r))
            .collect();
        let merged = merge(inputs, MergeOptions::default()).expect("merges");
        assert_eq!(merged.has_failures(), fails);
    }

    /// The differences each pair of reports shows.
    #[rstest]
    #[case::same_report_twice(vec![second(), second()], vec![])]
    #[case::versions(
        vec![second(), first()],
        vec!["palisade-versions", "not-run", "not-run"]
    )]
    #[case::missing_facts(vec![second(), old()], vec!["palisade-versions", "missing-facts", "not-run"])]
    #[case::scenario_sets(vec![second(), without(second(), "kernel::time_ns")], vec!["not-run"])]
    fn differences_are_listed_not_rejected(
        #[case] reports: Vec<InputReport>,
        #[case] kinds: Vec<&str>,
    ) {
        let inputs = reports
            .into_iter()
            .enumerate()
            .map(|(i, r)| (format!("{i}.json"), r))
            .collect();
        let merged = merge(inputs, MergeOptions::default()).expect("merges");
        let found: Vec<String> = merged
            .differences
            .iter()
            .map(|d| {
                serde_json::to_value(d).expect("serializes")["kind"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        assert_eq!(found, kinds, "{:#?}", merged.differences);
    }

    #[test]
    fn a_missing_scenario_is_a_dash_and_a_difference() {
        let merged = merge(
            vec![("a.json".into(), second()), ("b.json".into(), old())],
            MergeOptions::default(),
        )
        .expect("merges");
        let old_column = &merged.columns[1];
        assert!(
            old_column
                .verdict_of("pid::only_sigkill_stops_init")
                .is_none()
        );
        assert!(merged.differences.contains(&Difference::NotRun {
            columns: vec!["old-host/crun".into()],
            scenarios: vec!["pid::only_sigkill_stops_init".into()],
        }));
        let table = markdown(&merged);
        assert!(
            table.contains("| `pid::only_sigkill_stops_init` | pass | — |"),
            "{table}"
        );
    }

    #[test]
    fn missing_facts_show_as_unknown() {
        let merged =
            merge(vec![("old.json".into(), old())], MergeOptions::default()).expect("merges");
        assert_eq!(
            merged.differences,
            vec![Difference::MissingFacts {
                source: "old.json".into(),
                facts: vec!["distribution".into(), "architecture".into()],
            }]
        );
        let table = markdown(&merged);
        assert!(
            table.contains("distribution unknown · architecture unknown"),
            "{table}"
        );
        assert!(table.contains("from Palisade unknown"), "{table}");
    }

    #[test]
    fn versions_are_listed_with_their_reports() {
        let merged = merge(
            vec![
                ("a.json".into(), first()),
                ("b.json".into(), second()),
                ("c.json".into(), old()),
            ],
            MergeOptions::default(),
        )
        .expect("merges");
        let Some(Difference::PalisadeVersions { versions }) = merged.differences.first() else {
            panic!("no version difference: {:#?}", merged.differences);
        };
        let expected: BTreeMap<String, Vec<String>> = [
            ("0.1.0".to_owned(), vec!["a.json".to_owned()]),
            ("0.2.0".to_owned(), vec!["b.json".to_owned()]),
            ("unknown".to_owned(), vec!["c.json".to_owned()]),
        ]
        .into_iter()
        .collect();
        assert_eq!(*versions, expected);
    }

    #[rstest]
    #[case::hostname(false, "arm-node/runc")]
    #[case::file_name(true, "node-7/runc")]
    fn hosts_are_named_by_hostname_or_file(#[case] from_file: bool, #[case] id: &str) {
        let merged = merge(
            vec![("results/node-7.json".into(), second())],
            MergeOptions {
                host_from_file_name: from_file,
            },
        )
        .expect("merges");
        assert_eq!(merged.columns[0].id, id);
    }

    #[test]
    fn two_reports_of_one_host_get_distinct_columns() {
        let merged = merge(
            vec![
                ("monday/arm.json".into(), second()),
                ("tuesday/arm.json".into(), second()),
                ("tuesday/arm2.json".into(), second()),
            ],
            MergeOptions::default(),
        )
        .expect("merges");
        let ids: Vec<&str> = merged.columns.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "arm-node (arm)/runc",
                "arm-node (arm) #2/runc",
                "arm-node (arm2)/runc"
            ]
        );
    }

    #[test]
    fn a_newer_schema_is_read_and_noted() {
        let merged = merge(
            vec![(
                "future.json".into(),
                parse(
                    "future.json",
                    br#"{"schema_version": 9, "palisade_version": "9.0.0",
                         "host": {"hostname": "h", "kernel_release": "7.0", "distribution": "d",
                                  "architecture": "riscv64", "cgroup_mode": "v2", "quantum": true},
                         "runtimes": [{"label": "r", "version": "r 1", "status": "ready",
                                       "trials": [{"name": "a", "verdict": "pass"}]}]}"#,
                )
                .expect("parses"),
            )],
            MergeOptions::default(),
        )
        .expect("merges");
        assert_eq!(
            merged.differences,
            vec![Difference::NewerSchema {
                source: "future.json".into(),
                schema_version: 9
            }]
        );
    }

    #[rstest]
    #[case::not_json(b"garbage\x00\xff".as_slice(), "expected value")]
    #[case::empty(b"".as_slice(), "EOF")]
    #[case::other_json(br#"{"name": "x"}"#.as_slice(), "missing field `schema_version`")]
    #[case::unknown_verdict(
        br#"{"schema_version": 1, "runtimes": [{"label": "r", "trials": [{"name": "a", "verdict": "maybe"}]}]}"#.as_slice(),
        "unknown variant `maybe`"
    )]
    #[case::merged_report(
        br#"{"merge_schema_version": 1, "columns": [], "scenarios": []}"#.as_slice(),
        "it is a merged report"
    )]
    fn garbage_is_a_clear_error(#[case] bytes: &[u8], #[case] expected: &str) {
        let error = parse("in.json", bytes)
            .expect_err("not a report")
            .to_string();
        assert!(
            error.starts_with("in.json is not a Palisade JSON report"),
            "{error}"
        );
        assert!(error.contains(expected), "{error}");
    }

    #[test]
    fn only_regular_files_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let error = read(dir.path()).expect_err("a directory").to_string();
        assert!(error.contains("is not a regular file"), "{error}");
        let error = read(&dir.path().join("absent.json"))
            .expect_err("missing")
            .to_string();
        assert!(error.starts_with("reading "), "{error}");
    }

    #[test]
    fn nothing_to_merge_is_an_error() {
        assert!(matches!(
            merge(Vec::new(), MergeOptions::default()),
            Err(MergeError::NoReports)
        ));
    }

    #[test]
    fn tap_is_not_a_merge_format() {
        assert!(matches!(
            render(Format::Tap, &merged()),
            Err(MergeError::Tap)
        ));
    }
}
