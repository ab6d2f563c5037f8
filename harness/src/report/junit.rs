//! JUnit XML (through `quick-junit`): one `<testsuite>` per runtime, so CI tools show each
//! runtime's results apart; skips carry their reason, failures their message.

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::{ReportError, RunReport, RuntimeStatus, one_line};
use crate::run::runner::{TrialResult, Verdict};

pub fn render(report: &RunReport) -> Result<String, ReportError> {
    let mut junit = Report::new("palisade");
    junit.set_time(report.duration);
    for runtime in &report.runtimes {
        let mut suite = TestSuite::new(runtime.label.as_str());
        if let Some(info) = &runtime.info {
            suite.add_property(Property::new("runtime.version", info.version.as_str()));
            suite.add_property(Property::new(
                "runtime.path",
                info.path.display().to_string(),
            ));
        }
        match &runtime.status {
            RuntimeStatus::Ready => {}
            RuntimeStatus::Unavailable(reason) => {
                suite.add_property(Property::new("runtime.unavailable", reason.as_str()));
            }
            RuntimeStatus::PreflightFailed(error) => {
                suite.add_property(Property::new("runtime.preflight-error", error.as_str()));
            }
        }
        suite.add_property(Property::new("run.id", report.run_id.as_str()));
        suite.add_property(Property::new(
            "host.kernel",
            report.host.kernel_release.as_str(),
        ));
        suite.add_property(Property::new(
            "host.distribution",
            report.host.distribution.as_deref().unwrap_or("unknown"),
        ));
        suite.add_property(Property::new(
            "host.architecture",
            report.host.architecture.as_str(),
        ));
        suite.add_property(Property::new(
            "host.cgroup",
            report.host.cgroup_mode.to_string(),
        ));
        suite.add_property(Property::new("host.vm", report.host.in_vm.to_string()));
        let mut time = std::time::Duration::ZERO;
        for result in report.results_of(&runtime.label) {
            let case = test_case(&runtime.label, result);
            time += result.duration;
            suite.add_test_case(case);
        }
        suite.set_time(time);
        junit.add_test_suite(suite);
    }
    Ok(junit.to_string()?)
}

/// One trial as a JUnit test case of class `class` (a runtime's label; a merged report's column).
pub(super) fn test_case(class: &str, result: &TrialResult) -> TestCase {
    let status = match &result.verdict {
        Verdict::Pass => TestCaseStatus::success(),
        Verdict::Fail(message) => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status.set_message(one_line(message));
            status.set_description(message.as_str());
            status
        }
        Verdict::Skip(reason) => {
            let mut status = TestCaseStatus::skipped();
            status.set_message(one_line(reason));
            status
        }
    };
    let mut case = TestCase::new(result.name.as_str(), status);
    case.set_classname(class);
    case.set_time(result.duration);
    case
}

#[cfg(test)]
mod tests {
    use super::super::fixture;

    #[test]
    fn junit_snapshot() {
        insta::assert_snapshot!(super::render(&fixture::report()).expect("renders"));
    }

    #[test]
    fn junit_parses_back() {
        let xml = super::render(&fixture::report()).expect("renders");
        let parsed = quick_junit::Report::deserialize_from_str(&xml).expect("valid JUnit");
        assert_eq!(parsed.test_suites.len(), 4);
        assert_eq!(parsed.tests, 25);
        assert_eq!(parsed.failures, 3);
        assert_eq!(parsed.skipped, 16);
    }
}
