//! `palisade bench`: speed and accounting measured side by side in one run, never as timed tests.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_harness::driver::Driver;
use palisade_harness::lab::burn::start_burners;
use palisade_harness::lab::cgroups::{self, CpuWindow};
use palisade_harness::run::orchestrate::end_run;
use palisade_harness::{Ctx, HarnessError, Request, RunEnv};

use crate::entry::{runtime_label, setup_error};

/// `palisade bench start`: the life of a container running the probe's no-op (create, start, wait
/// for its exit, delete), `iterations` times per runtime. Runtimes take turns within each round,
/// so a noisy machine slows all of them alike; the ratios to the first runtime are what to read.
pub fn bench_start(
    probe: &Path,
    bundled: &Path,
    runtimes: &[String],
    iterations: usize,
    seccomp: bool,
) -> ExitCode {
    let profile = match seccomp
        .then(palisade_common::profiles::docker_default)
        .transpose()
    {
        Ok(profile) => profile,
        Err(e) => return setup_error(&format!("Docker's default seccomp profile: {e}")),
    };
    let run = match start(probe, bundled) {
        Ok(run) => run,
        Err(e) => return setup_error(&e.to_string()),
    };
    let mut drivers: Vec<(String, Arc<dyn Driver>)> = Vec::new();
    for name in runtimes {
        match run.runtime(name) {
            Ok(driver) => {
                println!(
                    "palisade: runtime {}: {} ({})",
                    runtime_label(name),
                    driver.info().version,
                    driver.info().path.display()
                );
                drivers.push((runtime_label(name), driver));
            }
            Err(e) => eprintln!("palisade: bench: {e}"),
        }
    }
    println!(
        "palisade: bench start, run {}: create + start + wait + delete of the probe's no-op, {iterations} rounds{}",
        run.id,
        if profile.is_some() {
            ", under Docker's default seccomp profile"
        } else {
            ""
        }
    );
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(iterations); drivers.len()];
    let mut code = ExitCode::SUCCESS;
    'rounds: for _ in 0..iterations {
        for ((label, driver), times) in drivers.iter().zip(samples.iter_mut()) {
            match container_life(&run, driver, label, profile.as_ref()) {
                Ok(took) => times.push(took),
                Err(e) => {
                    eprintln!("palisade: bench {label}: {e}");
                    code = ExitCode::FAILURE;
                    break 'rounds;
                }
            }
        }
    }
    let medians: Vec<Option<Duration>> = samples.iter_mut().map(|t| percentile(t, 50)).collect();
    println!(
        "{:<20} {:>10} {:>10} {:>14}",
        "runtime", "median", "p95", "median ratio"
    );
    for (((label, _), times), median) in drivers.iter().zip(samples.iter_mut()).zip(&medians) {
        let (Some(median), Some(p95)) = (*median, percentile(times, 95)) else {
            continue;
        };
        let ratio = medians[0]
            .map(|base| median.as_secs_f64() / base.as_secs_f64())
            .unwrap_or(f64::NAN);
        println!(
            "{label:<20} {:>8.2}ms {:>8.2}ms {ratio:>14.2}",
            median.as_secs_f64() * 1e3,
            p95.as_secs_f64() * 1e3
        );
    }
    end_run(&run, code)
}

/// A run for a bench, with the bundled runtime in place.
fn start(
    probe: &Path,
    bundled: &Path,
) -> Result<Arc<RunEnv>, palisade_harness::run::env::RunSetupError> {
    let run = RunEnv::new(probe)?;
    if let Err(e) = run.add_bundled_runtime(bundled) {
        end_run(&run, ExitCode::SUCCESS);
        return Err(e);
    }
    Ok(run)
}

/// One container's whole life, timed from `create` to the end of `delete`.
fn container_life(
    run: &Arc<RunEnv>,
    driver: &Arc<dyn Driver>,
    label: &str,
    seccomp: Option<&oci_spec::runtime::LinuxSeccomp>,
) -> Result<Duration, HarnessError> {
    let deadline = Instant::now() + palisade_harness::run::scenario_timeout();
    let cx = Ctx::new(
        run.clone(),
        driver.clone(),
        &format!("bench-{label}"),
        None,
        deadline,
    );
    // The probe's no-op: exit at once. Only the lifecycle the runtime drives is timed.
    let mut spec = cx.spec("bench")?.one_shot(&Request::Exit { code: 0 });
    if let Some(profile) = seccomp {
        spec = spec.seccomp(profile.clone());
    }
    let started = Instant::now();
    let container = cx.launch(spec)?;
    container.wait_exit()?;
    container.delete()?;
    Ok(started.elapsed())
}

/// The `pct`-th percentile (nearest rank) of `times`.
fn percentile(times: &mut [Duration], pct: usize) -> Option<Duration> {
    if times.is_empty() {
        return None;
    }
    times.sort_unstable();
    let rank = (pct * times.len()).div_ceil(100).clamp(1, times.len());
    Some(times[rank - 1])
}

/// `palisade bench cgroups`: per runtime, the mean and spread of the CPU fraction a burner under
/// `quota` µs per 100 ms is charged over 1 s windows. Everything it makes is cleaned up after.
pub fn bench_cgroups(
    probe: &Path,
    bundled: &Path,
    runtimes: &[String],
    samples: usize,
    quota: i64,
    window: std::time::Duration,
) -> ExitCode {
    const PERIOD: u64 = 100_000;
    let run = match start(probe, bundled) {
        Ok(run) => run,
        Err(e) => return setup_error(&e.to_string()),
    };
    println!(
        "palisade: bench cgroups, run {}, cgroup {}, quota {quota}/{PERIOD} µs ({:.3} CPUs), {samples} samples of {} s",
        run.id,
        run.host.cgroup_mode,
        quota as f64 / PERIOD as f64,
        window.as_secs_f64()
    );
    let mut code = ExitCode::SUCCESS;
    for name in runtimes {
        let outcome = run
            .runtime(name)
            .map_err(|e| e.to_string())
            .and_then(|driver| {
                // Each sample takes about a second plus a container's life; allow for a slow host.
                let deadline = std::time::Instant::now()
                    + (palisade_harness::run::scenario_timeout() + window) * samples.max(1) as u32;
                let cx = Ctx::new(
                    run.clone(),
                    driver,
                    &format!("bench-{}", runtime_label(name)),
                    None,
                    deadline,
                );
                quota_fractions(&cx, quota, PERIOD, window, samples).map_err(|e| e.to_string())
            });
        match outcome {
            Ok(fractions) => {
                let n = fractions.len().max(1) as f64;
                let mean = fractions.iter().sum::<f64>() / n;
                let sd = (fractions.iter().map(|f| (f - mean).powi(2)).sum::<f64>() / n).sqrt();
                let min = fractions.iter().copied().fold(f64::INFINITY, f64::min);
                let max = fractions.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                println!(
                    "{:<18} mean {mean:.4} CPUs  sd {sd:.4}  min {min:.4}  max {max:.4}  (n={})",
                    runtime_label(name),
                    fractions.len()
                );
            }
            Err(e) => {
                eprintln!("palisade: bench {name}: {e}");
                code = ExitCode::FAILURE;
            }
        }
    }
    end_run(&run, code)
}

/// One sample per entry: the CPUs a burner under `quota`/`period` used over `window`.
fn quota_fractions(
    cx: &Ctx,
    quota: i64,
    period: u64,
    window: Duration,
    samples: usize,
) -> Result<Vec<f64>, HarnessError> {
    let cgroups = cgroups::for_host(cx.host())?;
    cgroups.favour(&cx.run.cgroup_parent())?;
    let mut fractions = Vec::with_capacity(samples);
    for n in 0..samples {
        let spec = cx.spec(&format!("bench-{n}"))?.cpu_quota(quota, period);
        let burners = start_burners(cx, cgroups.as_ref(), vec![spec], 2)?;
        let used = burners.measure_over(window)?;
        fractions.extend(used.iter().map(CpuWindow::cpus));
    }
    Ok(fractions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut times: Vec<Duration> = (1..=20).map(Duration::from_millis).collect();
        assert_eq!(percentile(&mut times, 50), Some(Duration::from_millis(10)));
        assert_eq!(percentile(&mut times, 95), Some(Duration::from_millis(19)));
        assert_eq!(percentile(&mut [], 50), None);
    }
}
