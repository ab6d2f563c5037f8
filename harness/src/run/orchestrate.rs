//! A whole run, from preflight to exit code: shared by `palisade run`/`selftest`/`matrix` and by
//! `cargo test`'s suite binary. The scenarios come from the caller (the policy crate).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use libtest_mimic::Arguments;

use crate::report::{self, ReportSpec, RunReport, RuntimeReport, RuntimeStatus};
use crate::run::cleanup::{self, Removed, cleanup_run};
use crate::run::env::RunEnv;
use crate::run::runner::{self, Mode, Results, Target, TrialResult, Verdict};
use crate::run::scenario::Scenario;

/// What to run.
pub struct SuiteRun {
    /// Every scenario of the suite, in the order they are listed and run.
    pub scenarios: Vec<&'static Scenario>,
    /// Runtime names (looked up on PATH) or paths.
    pub runtimes: Vec<String>,
    /// Engines, each a column next to the runtimes: `docker`, `docker:crun`, `podman:runc`.
    pub engines: Vec<String>,
    /// An operator's dockerd socket for the docker engines (`--engine-socket`); without it,
    /// `DOCKER_HOST` if set, else Palisade starts its own dockerd in a lab host.
    pub engine_socket: Option<PathBuf>,
    pub mode: Mode,
    /// The probe binary to place in every rootfs.
    pub probe: PathBuf,
    /// The bundled runtime's binary, which the name `palisade-runtime` then means.
    pub bundled_runtime: Option<PathBuf>,
    /// Filter, `--list`, `--exact`, threads...: libtest's usual arguments.
    pub args: Arguments,
    /// More than one filter (`network:: nat::`): a trial runs if any matches. libtest's own
    /// `filter` takes one; this is used instead when several are given.
    pub filters: Vec<String>,
    /// The user named the runtime: a runtime that cannot be found is an error, not a skip.
    pub explicit: bool,
    /// Reports to write when the run is over (`--report junit=path`, `PALISADE_REPORT`).
    pub reports: Vec<ReportSpec>,
    /// The conformance matrix: every runtime is a column, whether it is missing, fails its
    /// preflight or runs; the Markdown table is printed at the end.
    pub matrix: bool,
    /// Third-party runtime bugs reported as ignored instead of failed (Palisade's own tests).
    pub known_bugs: Vec<runner::KnownBug>,
}

impl SuiteRun {
    pub fn new(
        scenarios: Vec<&'static Scenario>,
        runtimes: Vec<String>,
        mode: Mode,
        probe: PathBuf,
        args: Arguments,
    ) -> SuiteRun {
        SuiteRun {
            scenarios,
            runtimes,
            engines: Vec::new(),
            engine_socket: None,
            mode,
            probe,
            bundled_runtime: None,
            args,
            filters: Vec::new(),
            explicit: false,
            reports: Vec::new(),
            matrix: false,
            known_bugs: Vec::new(),
        }
    }
}

/// Exit code for a run that could not start at all (bad runtime, no probe).
pub const EXIT_SETUP: u8 = 2;

pub fn run(suite: SuiteRun) -> ExitCode {
    let run = match RunEnv::new(&suite.probe) {
        Ok(run) => run,
        Err(e) => return setup_error(&e.to_string()),
    };
    if let Some(bundled) = &suite.bundled_runtime
        && let Err(e) = run.add_bundled_runtime(bundled)
    {
        return end_run(&run, setup_error(&e.to_string()));
    }
    let mut code = run_in(&run, &suite);
    crate::run::interrupt::wait_if_interrupted();
    // The engines go first: their containers and lab hosts are the run's too.
    let engine_leaks = if suite.args.list {
        Vec::new()
    } else {
        run.engine_leftovers()
    };
    for problem in run.stop_engines() {
        eprintln!("palisade: stopping the engines: {problem}");
        code = ExitCode::FAILURE;
    }
    if !suite.args.list {
        let mut leaks = leftovers(&run);
        leaks.extend(engine_leaks);
        for leak in &leaks {
            eprintln!("palisade: leak check: left behind: {leak}");
        }
        if !leaks.is_empty() {
            code = ExitCode::FAILURE;
        }
    }
    end_run(&run, code)
}

/// Removes what runs whose palisade is dead left behind (a SIGKILL leaves everything), and says
/// what it removed. Runs that are alive are never touched.
pub fn sweep_dead_runs() {
    // Only runs whose record shows a dead owner: never names without a directory here.
    let removed = cleanup::cleanup_all(false, false);
    if !removed.items.is_empty() {
        println!(
            "palisade: removed what dead runs left behind: {}",
            removed.items.join(", ")
        );
    }
    for problem in &removed.problems {
        eprintln!("palisade: cleanup of dead runs: {problem}");
    }
}

/// Removes everything the run made (its directory, cgroups, namespaces) and passes `code` on.
pub fn end_run(run: &RunEnv, code: ExitCode) -> ExitCode {
    crate::run::interrupt::wait_if_interrupted();
    crate::run::interrupt::set_phase("the final cleanup");
    let mut removed = Removed::default();
    cleanup_run(&run.dir, &mut removed);
    crate::run::interrupt::unregister(run);
    for problem in &removed.problems {
        eprintln!("palisade: cleanup: {problem}");
    }
    code
}

fn run_in(run: &std::sync::Arc<RunEnv>, suite: &SuiteRun) -> ExitCode {
    let started = Instant::now();
    let host = &run.host;
    if !suite.args.list {
        println!(
            "palisade: run {} on kernel {}, cgroup {}, {}{}",
            run.id,
            host.kernel_release,
            host.cgroup_mode,
            if host.is_privileged() {
                "privileged"
            } else {
                "unprivileged"
            },
            match (host.in_vm, host.in_ci) {
                (true, true) => ", VM, CI",
                (true, false) => ", VM",
                (false, true) => ", CI",
                (false, false) => "",
            }
        );
    }
    let mut targets = Vec::new();
    for name in &suite.runtimes {
        let driver = run.runtime(name).map_err(|e| e.to_string());
        if let Err(e) = &driver
            && suite.explicit
            && !suite.matrix
        {
            return setup_error(e);
        }
        let label = runtime_label(name);
        if !suite.args.list {
            match &driver {
                Ok(d) => println!(
                    "palisade: runtime {label}: {} ({})",
                    d.info().version,
                    d.info().path.display()
                ),
                Err(e) => println!("palisade: runtime {label}: unavailable: {e}"),
            }
        }
        targets.push(Target { label, driver });
    }
    for text in &suite.engines {
        let target = engine_target(run, suite, text);
        if let Err(e) = &target.driver
            && suite.explicit
            && !suite.matrix
        {
            return setup_error(e);
        }
        targets.push(target);
    }

    let mut preflight_errors = BTreeMap::new();
    crate::run::interrupt::set_phase("the preflight");
    if host.is_privileged() && !suite.args.list {
        for target in &targets {
            if let Ok(driver) = &target.driver
                && let Err(e) = runner::preflight(run, driver)
            {
                preflight_errors.insert(target.label.clone(), e);
            }
        }
        let usable = targets
            .iter()
            .filter(|t| t.driver.is_ok() && !preflight_errors.contains_key(&t.label))
            .count();
        if usable == 0 && !preflight_errors.is_empty() && !suite.matrix {
            // Nothing can run: one clear error per runtime instead of a wall of identical failures.
            for error in preflight_errors.values() {
                eprintln!("palisade: preflight failed: {error}");
            }
            let report = run_report(run, &targets, &preflight_errors, Vec::new(), started);
            write_reports(&suite.reports, &report);
            return ExitCode::FAILURE;
        }
    }

    let results = Results::default();
    let scenarios = &suite.scenarios;
    let mut trials = runner::trials(
        run,
        &targets,
        scenarios,
        suite.mode,
        &preflight_errors,
        &results,
        &suite.known_bugs,
    );
    if !suite.filters.is_empty() {
        trials.retain(|trial| {
            suite.filters.iter().any(|filter| {
                if suite.args.exact {
                    trial.name() == filter
                } else {
                    trial.name().contains(filter.as_str())
                }
            })
        });
    }
    crate::run::interrupt::set_phase("the trials");
    let conclusion = libtest_mimic::run(&suite.args, trials);
    if suite.args.list {
        return conclusion.exit_code();
    }
    let skips = results.skip_summary();
    if !skips.is_empty() {
        println!("palisade: skipped, by reason:");
        for (reason, count) in &skips {
            println!("  {count:>4}  {reason}");
        }
    }

    let mut report = run_report(run, &targets, &preflight_errors, results.all(), started);
    report.sort_results(&trial_order(scenarios));
    print!("{}", report::summary(&report));
    if suite.matrix {
        println!();
        print!("{}", report::markdown::render(&report));
    }
    crate::run::interrupt::set_phase("the report writing");
    let written = write_reports(&suite.reports, &report);
    // The verdicts in `results` decide; libtest-mimic's conclusion only printed them.
    drop(conclusion);
    if report.has_failures() {
        ExitCode::FAILURE
    } else if !written {
        ExitCode::from(EXIT_SETUP)
    } else {
        ExitCode::SUCCESS
    }
}

/// One engine column: its engine set up (daemon, lab host, image), or the reason it cannot be.
fn engine_target(run: &std::sync::Arc<RunEnv>, suite: &SuiteRun, text: &str) -> Target {
    use crate::engine::driver::{Endpoint, EngineChoice, EngineOptions};
    let choice = match text.parse::<EngineChoice>() {
        Ok(choice) => choice,
        Err(e) => {
            return Target {
                label: text.to_owned(),
                driver: Err(e),
            };
        }
    };
    if suite.args.list {
        // Listing needs no engine: the column is named as given.
        return Target {
            label: text.to_owned(),
            driver: Err("not set up for --list".into()),
        };
    }
    let docker = choice.kind == crate::engine::translate::EngineKind::Docker;
    let endpoint = match (&suite.engine_socket, std::env::var("DOCKER_HOST").ok()) {
        (Some(socket), _) => Ok(Endpoint::Socket(socket.clone())),
        (None, Some(host)) if docker && !host.is_empty() => match host.strip_prefix("unix://") {
            Some(path) => Ok(Endpoint::Socket(PathBuf::from(path))),
            None => Err(format!(
                "DOCKER_HOST={host}: Palisade looks at containers from the machine they run on, so the daemon must be local (unix://…)"
            )),
        },
        _ => Ok(Endpoint::Owned),
    };
    let started = Instant::now();
    let driver = endpoint.and_then(|endpoint| {
        let options = EngineOptions {
            choice: choice.clone(),
            endpoint: endpoint.clone(),
            // The run's own copy, which answers to the name `palisade-runtime`.
            bundled_runtime: Some(run.dir.join(crate::run::env::BUNDLED_RUNTIME))
                .filter(|p| p.is_file()),
        };
        let driver = run.engine(&options).map_err(|e| e.to_string())?;
        let whose = match &endpoint {
            Endpoint::Owned => format!(
                "Palisade's own {} in a lab host",
                if docker { "dockerd" } else { "podman" }
            ),
            Endpoint::Socket(path) => format!("the operator's dockerd at {}", path.display()),
        };
        println!(
            "palisade: engine {}: {} ({whose}, ready in {:.1} s)",
            driver.info().name,
            driver.info().version,
            started.elapsed().as_secs_f64()
        );
        Ok(driver)
    });
    match driver {
        Ok(driver) => Target {
            label: driver.info().name.clone(),
            driver: Ok(driver),
        },
        Err(e) => {
            // A column that says so; a run that named only this engine stops with the error.
            if suite.matrix || !suite.explicit {
                println!("palisade: engine {text}: unavailable: {e}");
            }
            Target {
                label: text.to_owned(),
                driver: Err(e),
            }
        }
    }
}

/// What the reporters get: the run's facts and every verdict, fixed.
fn run_report(
    run: &RunEnv,
    targets: &[Target],
    preflight_errors: &BTreeMap<String, String>,
    mut results: Vec<TrialResult>,
    started: Instant,
) -> RunReport {
    // A failed preflight is a failure even when a filter left its `preflight` trial out.
    for (label, error) in preflight_errors {
        if !results
            .iter()
            .any(|r| r.runtime == *label && r.name == "preflight")
        {
            results.push(TrialResult {
                runtime: label.clone(),
                name: "preflight".into(),
                verdict: Verdict::Fail(error.clone()),
                duration: Duration::ZERO,
                caught: None,
            });
        }
    }
    let runtimes = targets
        .iter()
        .map(|target| RuntimeReport {
            label: target.label.clone(),
            info: target.info().cloned(),
            status: match (&target.driver, preflight_errors.get(&target.label)) {
                (Err(reason), _) => RuntimeStatus::Unavailable(reason.clone()),
                (Ok(_), Some(error)) => RuntimeStatus::PreflightFailed(error.clone()),
                (Ok(_), None) => RuntimeStatus::Ready,
            },
        })
        .collect();
    RunReport {
        run_id: run.id.clone(),
        host: run.host.clone(),
        runtimes,
        results,
        duration: started.elapsed(),
    }
}

/// The trial names in the order the suite lists them: scenarios, then their negative controls.
fn trial_order(scenarios: &[&Scenario]) -> Vec<String> {
    let names: Vec<String> = scenarios.iter().map(|s| s.full_name()).collect();
    let controls = names.iter().map(|n| format!("selftest::{n}"));
    names.iter().cloned().chain(controls).collect()
}

/// Writes every report; a report that cannot be written is an error line, not a lost run.
fn write_reports(specs: &[ReportSpec], report: &RunReport) -> bool {
    let mut all_written = true;
    for spec in specs {
        match spec.write(report) {
            Ok(()) => println!("palisade: wrote {}", spec.path.display()),
            Err(e) => {
                eprintln!("palisade: error: {e}");
                all_written = false;
            }
        }
    }
    all_written
}

/// What the scenarios' own cleanup guards failed to remove.
fn leftovers(run: &RunEnv) -> Vec<String> {
    let roots: Vec<PathBuf> = run
        .record()
        .map(|r| r.runtimes.into_iter().map(|rt| rt.root).collect())
        .unwrap_or_default();
    cleanup::leftovers(&run.dir, &run.cgroup_parent()[1..], &roots)
}

pub fn setup_error(message: &str) -> ExitCode {
    eprintln!("palisade: error: {message}");
    ExitCode::from(EXIT_SETUP)
}

/// `runc` → `runc`; `/path/to/palisade-runtime` → `palisade-runtime`.
pub fn runtime_label(name_or_path: &str) -> String {
    Path::new(name_or_path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| name_or_path.to_owned())
}
