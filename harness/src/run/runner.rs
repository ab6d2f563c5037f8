//! Turns scenarios × runtimes into libtest-mimic trials, runs the preflight, and records every
//! verdict in [`Results`]: the one source of truth for reports and the exit code (libtest-mimic
//! only prints them).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libtest_mimic::{Completion, Failed, Trial};
use serde::Serialize;

use crate::driver::{Driver, RuntimeInfo};
use crate::run::env::{RunEnv, scenario_timeout};
use crate::run::scenario::{Ctx, Failure, Scenario, Schedule};

/// A runtime the suite was asked to test, or the reason it cannot be.
#[derive(Clone)]
pub struct Target {
    pub label: String,
    pub driver: Result<Arc<dyn Driver>, String>,
}

impl Target {
    pub fn info(&self) -> Option<&RuntimeInfo> {
        self.driver.as_ref().ok().map(|d| d.info())
    }
}

/// Which half of the suite to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The scenarios: each must pass.
    Scenarios,
    /// The negative controls (`selftest`): each scenario must FAIL under its control.
    Controls,
    /// Both, as `cargo test` does.
    Both,
}

/// The verdict of one trial, as reports see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", content = "message", rename_all = "kebab-case")]
pub enum Verdict {
    Pass,
    Fail(String),
    Skip(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct TrialResult {
    pub runtime: String,
    pub name: String,
    #[serde(flatten)]
    pub verdict: Verdict,
    pub duration: Duration,
    /// For a negative control that was caught: the failure message of the check that caught it,
    /// so a reader can tell it was caught for the right reason.
    pub caught: Option<String>,
}

/// Collects every trial's verdict, in completion order.
#[derive(Clone, Default)]
pub struct Results(Arc<Mutex<Vec<TrialResult>>>);

impl Results {
    fn push(&self, result: TrialResult) {
        if let Ok(mut all) = self.0.lock() {
            all.push(result);
        }
    }

    pub fn all(&self) -> Vec<TrialResult> {
        self.0.lock().map(|all| all.clone()).unwrap_or_default()
    }

    /// Skip reasons with how many trials each skipped, so a silent skip is impossible.
    pub fn skip_summary(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for result in self.all() {
            if let Verdict::Skip(reason) = result.verdict {
                *counts.entry(reason).or_default() += 1;
            }
        }
        counts
    }
}

/// A failure of a third-party runtime that Palisade's own test run (`cargo test`) accepts: the
/// trial is reported as ignored with the bug, not hidden. `palisade run` never uses these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownBug {
    /// The runtime's label (`runc`) and a prefix of its `--version` line (`runc version 1.1`).
    pub runtime: &'static str,
    pub version_prefix: &'static str,
    /// The cgroup modes it shows in (empty: all).
    pub cgroup_modes: &'static [crate::lab::host::CgroupMode],
    /// The trial (`paths::sys_is_readonly`).
    pub trial: &'static str,
    /// What the runtime does wrong, where it is explained.
    pub reason: &'static str,
}

impl KnownBug {
    fn covers(&self, target: &Target, trial: &str, mode: crate::lab::host::CgroupMode) -> bool {
        target.label == self.runtime
            && target
                .info()
                .is_some_and(|i| i.version.starts_with(self.version_prefix))
            && (self.cgroup_modes.is_empty() || self.cgroup_modes.contains(&mode))
            && trial == self.trial
    }
}

/// Runs one trivial container. Its error, with the runtime's own stderr, is the one error to show
/// when a runtime cannot run containers here at all.
pub fn preflight(run: &Arc<RunEnv>, runtime: &Arc<dyn Driver>) -> Result<(), String> {
    let deadline = Instant::now() + scenario_timeout();
    let ctx = Ctx::new(run.clone(), runtime.clone(), "preflight", None, deadline);
    let outcome = ctx
        .spec("preflight")
        .and_then(|spec| ctx.facts_of(spec))
        .map(drop)
        .map_err(|e| e.to_string());
    outcome.map_err(|e| {
        format!(
            "`{}` could not run a trivial container: {e}",
            runtime.info().name
        )
    })
}

/// Builds the trials for `scenarios` on every target. `preflight_errors` holds the targets whose
/// preflight failed: their scenarios are skipped, and one `preflight` trial fails with the error.
pub fn trials(
    run: &Arc<RunEnv>,
    targets: &[Target],
    scenarios: &[&'static Scenario],
    mode: Mode,
    preflight_errors: &BTreeMap<String, String>,
    results: &Results,
    known_bugs: &[KnownBug],
) -> Vec<Trial> {
    let mut trials = Vec::new();
    for target in targets {
        let blocked: Option<String> = match (&target.driver, preflight_errors.get(&target.label)) {
            (Err(reason), _) => Some(reason.clone()),
            (Ok(_), Some(_)) => Some(format!("`{}` failed its preflight", target.label)),
            (Ok(_), None) => None,
        };
        if let (Ok(_), Some(error)) = (&target.driver, preflight_errors.get(&target.label)) {
            let error = error.clone();
            let (results, runtime) = (results.clone(), target.label.clone());
            trials.push(
                Trial::test("preflight", move || {
                    results.push(TrialResult {
                        runtime,
                        name: "preflight".into(),
                        verdict: Verdict::Fail(error.clone()),
                        duration: Duration::ZERO,
                        caught: None,
                    });
                    Err(error.into())
                })
                .with_kind(&target.label),
            );
        }
        for &scenario in scenarios {
            let halves: &[bool] = match mode {
                Mode::Scenarios => &[false],
                Mode::Controls => &[true],
                Mode::Both => &[false, true],
            };
            for &control in halves {
                let known = (!control)
                    .then(|| {
                        known_bugs
                            .iter()
                            .find(|bug| {
                                bug.covers(target, &scenario.full_name(), run.host.cgroup_mode)
                            })
                            .cloned()
                    })
                    .flatten();
                trials.push(trial(
                    run,
                    target,
                    scenario,
                    control,
                    blocked.clone(),
                    results.clone(),
                    known,
                ));
            }
        }
    }
    trials
}

fn trial(
    run: &Arc<RunEnv>,
    target: &Target,
    scenario: &'static Scenario,
    control: bool,
    blocked: Option<String>,
    results: Results,
    known: Option<KnownBug>,
) -> Trial {
    let name = if control {
        format!("selftest::{}", scenario.full_name())
    } else {
        scenario.full_name()
    };
    // The first unmet requirement, in the order the scenario lists them: what the driver cannot
    // be (an engine) is said before a program the host lacks for it.
    let driver = target.driver.as_ref().ok();
    let skip = blocked.or_else(|| {
        scenario.requires.iter().find_map(|r| {
            r.unmet(&run.host)
                .or_else(|| driver.and_then(|d| r.unmet_on(d.as_ref())))
        })
    });
    let (run, driver, label) = (
        run.clone(),
        target.driver.clone().ok(),
        target.label.clone(),
    );
    let trial_name = name.clone();
    Trial::ignorable_test(name, move || {
        let started = Instant::now();
        let skip = skip.or_else(|| {
            crate::run::interrupt::interrupted().then(|| "the run was interrupted".to_owned())
        });
        let mut caught = None;
        let verdict = match (skip, driver) {
            (Some(reason), _) => Verdict::Skip(reason),
            (None, None) => Verdict::Skip(format!("`{label}` is not available")),
            (None, Some(driver)) => {
                // Ctx puts the runtime into every container id: the same scenario runs on each
                // runtime at once, and must not share bundle directories or ids.
                let outcome = execute(&run, &driver, scenario, &trial_name, control);
                if let (Err(Failure::Failed(message)), true) = (&outcome, control) {
                    caught = Some(message.clone());
                }
                match (judge(outcome, control, scenario), known) {
                    (Verdict::Fail(message), Some(bug)) => Verdict::Skip(format!(
                        "known bug of {} ({}), not Palisade's: {message}",
                        bug.runtime, bug.reason
                    )),
                    (verdict, _) => verdict,
                }
            }
        };
        results.push(TrialResult {
            runtime: label,
            name: trial_name,
            verdict: verdict.clone(),
            duration: started.elapsed(),
            caught,
        });
        match verdict {
            Verdict::Pass => Ok(Completion::Completed),
            Verdict::Skip(reason) => Ok(Completion::ignored_with(reason)),
            Verdict::Fail(message) => Err(Failed::from(message)),
        }
    })
    .with_kind(&target.label)
}

/// A scenario passes by passing; its negative control passes by making the scenario fail.
fn judge(outcome: Result<(), Failure>, control: bool, scenario: &Scenario) -> Verdict {
    match (outcome, control) {
        (Ok(()), false) => Verdict::Pass,
        (Err(Failure::Failed(message) | Failure::Broken(message)), false) => Verdict::Fail(message),
        (Err(Failure::Failed(_)), true) => Verdict::Pass,
        (Err(Failure::Broken(message)), true) => Verdict::Fail(format!(
            "the negative control ({}) broke the scenario before any check could catch it: {message}",
            scenario.control
        )),
        (Ok(()), true) => Verdict::Fail(format!(
            "the negative control did not make the scenario fail (control: {}); the check has no teeth",
            scenario.control
        )),
        (Err(Failure::Skipped(reason)), _) => Verdict::Skip(reason),
    }
}

/// Trials that measure CPU take turns; the turn is taken here, before the trial's deadline
/// starts, and given back when the runner is done with the trial, even if its thread hangs.
static CPU_TURN: Mutex<()> = Mutex::new(());
/// The same for trials that route through an engine host's uplink or change its forwarding.
static UPLINK_TURN: Mutex<()> = Mutex::new(());

/// Runs the scenario on its own thread, so a panic or a hang is a verdict, not a crash. Containers
/// clean themselves up on drop, panics included; those of a thread that hangs past its deadline
/// are stopped here, so they cannot disturb the trials after it.
fn execute(
    run: &Arc<RunEnv>,
    runtime: &Arc<dyn Driver>,
    scenario: &'static Scenario,
    trial_name: &str,
    control: bool,
) -> Result<(), Failure> {
    let lane = match scenario.schedule {
        Schedule::Parallel => None,
        Schedule::CpuAlone => Some(&CPU_TURN),
        Schedule::UplinkAlone => Some(&UPLINK_TURN),
    };
    let _turn = lane.map(|lane| {
        lane.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    });
    let timeout = scenario_timeout();
    let ctx = Ctx::new(
        run.clone(),
        runtime.clone(),
        trial_name,
        control.then_some(scenario.control),
        Instant::now() + timeout,
    );
    let tag = ctx.trial().to_owned();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (scenario.run)(&ctx)));
        let _ = sender.send(outcome);
    });
    // Every blocking step honours the deadline; the grace covers the cleanup after it.
    match receiver.recv_timeout(timeout + Duration::from_secs(15)) {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(panic)) => Err(Failure::Broken(format!(
            "the scenario panicked: {}",
            panic_message(&panic)
        ))),
        Err(_) => {
            let stopped = run.live.stop(Some(&tag));
            Err(Failure::Broken(format!(
                "the scenario did not finish within {} s (stopped its containers: {stopped:?})",
                timeout.as_secs()
            )))
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(no message)".to_owned())
}

#[cfg(test)]
mod judge_tests {
    use super::*;
    use rstest::rstest;

    fn noop(_: &Ctx) -> crate::run::scenario::Outcome {
        Ok(())
    }

    const SCENARIO: Scenario = Scenario {
        area: "t",
        name: "t",
        checks: "",
        control: crate::run::control::Control::config(crate::run::control::Edit::NoHostname),
        means: "",
        requires: &[],
        schedule: Schedule::Parallel,
        run: noop,
    };

    #[rstest]
    #[case::pass(Ok(()), false, "pass")]
    #[case::check_failed(Err(Failure::Failed("no".into())), false, "fail")]
    #[case::broken(Err(Failure::Broken("runtime refused".into())), false, "fail")]
    #[case::control_caught(Err(Failure::Failed("no".into())), true, "pass")]
    #[case::control_not_caught(Ok(()), true, "fail")]
    #[case::control_broke_setup(Err(Failure::Broken("runtime refused".into())), true, "fail")]
    #[case::skip(Err(Failure::Skipped("why".into())), true, "skip")]
    fn verdicts(
        #[case] outcome: crate::run::scenario::Outcome,
        #[case] control: bool,
        #[case] expected: &str,
    ) {
        let verdict = match judge(outcome, control, &SCENARIO) {
            Verdict::Pass => "pass",
            Verdict::Fail(_) => "fail",
            Verdict::Skip(_) => "skip",
        };
        assert_eq!(verdict, expected);
    }
}
