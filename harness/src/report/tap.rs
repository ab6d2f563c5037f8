//! TAP version 13: one test point per trial, `# SKIP <reason>` for skips, and a YAML block under
//! each `not ok` with the message, the runtime and the duration.

use super::{RunReport, RuntimeStatus, one_line};
use crate::run::runner::Verdict;

pub fn render(report: &RunReport) -> String {
    let mut out = String::from("TAP version 13\n");
    out.push_str(&format!("1..{}\n", report.results.len()));
    out.push_str(&format!(
        "# palisade run {} on kernel {}, cgroup {}{}\n",
        report.run_id,
        report.host.kernel_release,
        report.host.cgroup_mode,
        if report.host.in_vm { ", VM" } else { "" }
    ));
    let mut number = 0;
    for runtime in &report.runtimes {
        let status = match &runtime.status {
            RuntimeStatus::Ready => String::new(),
            RuntimeStatus::Unavailable(reason) => format!(": unavailable: {}", one_line(reason)),
            RuntimeStatus::PreflightFailed(error) => {
                format!(": preflight failed: {}", one_line(error))
            }
        };
        out.push_str(&format!(
            "# runtime {}{status}\n",
            one_line(&runtime.title())
        ));
        for result in report.results_of(&runtime.label) {
            number += 1;
            let description = escape(&format!("{} [{}]", result.name, result.runtime));
            match &result.verdict {
                Verdict::Pass => out.push_str(&format!("ok {number} - {description}\n")),
                Verdict::Skip(reason) => out.push_str(&format!(
                    "ok {number} - {description} # SKIP {}\n",
                    escape(&one_line(reason))
                )),
                Verdict::Fail(message) => {
                    out.push_str(&format!("not ok {number} - {description}\n"));
                    out.push_str("  ---\n");
                    out.push_str(&format!("  message: {}\n", yaml_string(message)));
                    out.push_str(&format!("  runtime: {}\n", yaml_string(&result.runtime)));
                    out.push_str(&format!("  duration_ms: {}\n", result.duration.as_millis()));
                    out.push_str("  ...\n");
                }
            }
        }
    }
    out
}

/// `#` starts a directive and `\` escapes in a TAP description.
fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('#', "\\#")
}

/// A JSON string is a valid YAML double-quoted scalar: every character is escaped safely.
fn yaml_string(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::super::fixture;

    #[test]
    fn tap_snapshot() {
        insta::assert_snapshot!(super::render(&fixture::report()));
    }
}
