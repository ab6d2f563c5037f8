//! The conformance matrix in Markdown: one row per trial, one column per runtime (with its
//! version), each cell pass / FAIL / skip, every skip reason and failure message in a footnote.

use super::{RunReport, RuntimeStatus, one_line};
use crate::run::runner::Verdict;

pub fn render(report: &RunReport) -> String {
    let mut notes = Footnotes::default();
    // Rows: every trial name, in the order the results are in (the scenario order). A failed
    // preflight is told in its runtime's header instead.
    let mut rows: Vec<&str> = Vec::new();
    for result in &report.results {
        if result.name != "preflight" && !rows.contains(&result.name.as_str()) {
            rows.push(&result.name);
        }
    }

    let mut out = format!(
        "Kernel {}, cgroup {}{}.\n\n",
        report.host.kernel_release,
        report.host.cgroup_mode,
        if report.host.in_vm { ", in a VM" } else { "" }
    );
    out.push_str("| Scenario |");
    for runtime in &report.runtimes {
        let title = match &runtime.status {
            RuntimeStatus::Ready => runtime.title(),
            RuntimeStatus::Unavailable(reason) => {
                format!("{} — not available{}", runtime.title(), notes.mark(reason))
            }
            RuntimeStatus::PreflightFailed(error) => {
                format!(
                    "{} — preflight failed{}",
                    runtime.title(),
                    notes.mark(error)
                )
            }
        };
        out.push_str(&format!(" {} |", cell(&title)));
    }
    out.push_str("\n|---|");
    for _ in &report.runtimes {
        out.push_str("---|");
    }
    out.push('\n');

    for row in &rows {
        out.push_str(&format!("| `{row}` |"));
        for runtime in &report.runtimes {
            let text = if runtime.status != RuntimeStatus::Ready {
                // The header says why; one footnote per cell would only repeat it.
                "—".to_owned()
            } else {
                match report
                    .results_of(&runtime.label)
                    .find(|r| r.name == *row)
                    .map(|r| &r.verdict)
                {
                    Some(Verdict::Pass) => "pass".to_owned(),
                    Some(Verdict::Fail(message)) => format!("**FAIL**{}", notes.mark(message)),
                    Some(Verdict::Skip(reason)) => format!("skip{}", notes.mark(reason)),
                    None => "not run".to_owned(),
                }
            };
            out.push_str(&format!(" {text} |"));
        }
        out.push('\n');
    }

    out.push_str("| **total** |");
    for runtime in &report.runtimes {
        let counts = report.counts_of(&runtime.label);
        if runtime.status == RuntimeStatus::Ready {
            out.push_str(&format!(
                " {} pass, {} fail, {} skip |",
                counts.passed, counts.failed, counts.skipped
            ));
        } else {
            out.push_str(" — |");
        }
    }
    out.push('\n');

    if !notes.texts.is_empty() {
        out.push('\n');
        for (i, text) in notes.texts.iter().enumerate() {
            out.push_str(&format!("[^{}]: {}\n", i + 1, one_line(text)));
        }
    }
    out
}

/// Numbered footnotes; the same text gets the same number.
#[derive(Default)]
pub(crate) struct Footnotes {
    pub(crate) texts: Vec<String>,
}

impl Footnotes {
    pub(crate) fn mark(&mut self, text: &str) -> String {
        let index = match self.texts.iter().position(|t| t == text) {
            Some(i) => i,
            None => {
                self.texts.push(text.to_owned());
                self.texts.len() - 1
            }
        };
        format!(" [^{}]", index + 1)
    }
}

/// A table cell holds one line and no unescaped `|`.
pub(crate) fn cell(text: &str) -> String {
    one_line(text).replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::super::fixture;

    #[test]
    fn markdown_snapshot() {
        insta::assert_snapshot!(super::render(&fixture::report()));
    }
}
