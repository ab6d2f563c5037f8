//! The `palisade` command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use libtest_mimic::Arguments;
use palisade_harness::report::ReportSpec;
use palisade_harness::run::runner::Mode;
use palisade_suites::entry::{self, SuiteRun, default_runtime, own_binary};

#[derive(Parser)]
#[command(
    name = "palisade",
    version,
    about = "A conformance suite for Linux container isolation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the scenarios against a runtime.
    Run(RunArgs),
    /// Run every negative control: each scenario must FAIL under its control.
    Selftest(RunArgs),
    /// Run the scenarios on several runtimes and print the conformance matrix (Markdown).
    Matrix(MatrixArgs),
    /// Combine JSON reports from any number of hosts into one matrix: a row per scenario, a
    /// column per host × runtime. Exit 1 when any column has a FAIL, 2 when a report is unreadable.
    Merge(MergeArgs),
    /// List the scenarios with what each checks and its negative control.
    List {
        /// Print the README's Markdown table instead.
        #[arg(long)]
        markdown: bool,
    },
    /// Measure something repeatedly and report its mean and spread (not a test: no verdict).
    Bench {
        #[command(subcommand)]
        what: Bench,
    },
    /// Remove what killed runs left behind (containers, cgroups, namespaces, temp dirs).
    Cleanup {
        /// Also clean up after runs that are still alive.
        #[arg(long)]
        all: bool,
    },
    /// Run the suite in a throwaway QEMU guest built from this host's kernel; exits with the
    /// suite's exit code (3 if the guest died or hung before reporting one, 128 + the signal if
    /// SIGINT, SIGTERM or SIGHUP stopped it).
    Vm(VmArgs),
    /// The guest's init (pid 1 inside `palisade vm`).
    #[command(hide = true)]
    VmInit,
}

#[derive(clap::Args)]
struct VmArgs {
    /// The guest kernel (a bzImage). Default: the newest /boot/vmlinuz-*.
    #[arg(long)]
    kernel: Option<std::path::PathBuf>,
    /// The cgroup hierarchy the guest mounts: v1, v2 or hybrid.
    #[arg(long, default_value = "v2")]
    cgroup: palisade_harness::vm::CgroupLayout,
    /// kvm, tcg, or auto (KVM when it boots the guest, TCG otherwise).
    #[arg(long, default_value = "auto")]
    accel: palisade_harness::vm::Accel,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 1024)]
    memory: u32,
    /// Guest CPUs.
    #[arg(long, default_value_t = 2)]
    cpus: u32,
    /// Kill the guest after this many seconds (boot included).
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// Programs to copy into the guest (names on PATH or paths), with their shared libraries:
    /// runtimes, the network lab's `ip` and `nft`, and `nsenter` for the exec defects.
    #[arg(
        long = "with",
        value_delimiter = ',',
        default_value = "runc,crun,ip,nft,nsenter"
    )]
    with: Vec<String>,
    /// Echo the guest's console and its init's messages.
    #[arg(long, short)]
    verbose: bool,
    /// Write the guest's JSON report (its suite's `--report json=`) here: json=PATH.
    #[arg(long, value_name = "json=PATH")]
    report: Option<ReportSpec>,
    /// The `palisade` command to run inside; default `run`.
    #[arg(last = true)]
    suite: Vec<String>,
}

#[derive(Subcommand)]
enum Bench {
    /// Start latency: create + start + wait + delete of the probe's no-op, side by side.
    Start {
        /// Runtimes to compare (names on PATH or paths); ratios are to the first one.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "palisade-runtime,crun,runc"
        )]
        runtimes: Vec<String>,
        /// Containers per runtime.
        #[arg(long, default_value_t = 50)]
        iterations: usize,
        /// Every container runs under Docker's default seccomp profile (what real configs carry).
        #[arg(long)]
        seccomp: bool,
    },
    /// The CPU fraction the kernel charges a 2-thread burner under a CPU quota, per runtime.
    Cgroups {
        /// Runtimes to measure (names on PATH or paths).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "palisade-runtime,runc,crun"
        )]
        runtimes: Vec<String>,
        /// Measurements (one container each, 1 s window) per runtime.
        #[arg(long, default_value_t = 10)]
        samples: usize,
        /// CPU quota in µs per 100 000 µs period.
        #[arg(long, default_value_t = 30_000)]
        quota: i64,
        /// Length of each measurement window, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        window_ms: u64,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// The runtime under test: a name looked up on PATH, or a path. Default: the bundled runtime
    /// (none when an engine is named).
    #[arg(long, env = "PALISADE_RUNTIME", value_delimiter = ',')]
    runtime: Vec<String>,
    #[command(flatten)]
    engines: EngineArgs,
    #[command(flatten)]
    select: SelectArgs,
}

/// Container engines under test, beside (or instead of) the runtimes.
#[derive(clap::Args)]
struct EngineArgs {
    /// Run the scenarios through a container engine: `docker` or `podman`, optionally with the
    /// runtime it knows by that name (`docker:crun`, `podman:runc`, `docker:palisade-runtime`).
    /// Palisade starts its own dockerd or podman in a lab host, unless --engine-socket (or
    /// DOCKER_HOST) names an operator's dockerd.
    #[arg(
        long = "engine",
        value_delimiter = ',',
        value_name = "ENGINE[:RUNTIME]"
    )]
    engines: Vec<String>,
    /// An operator's dockerd to test instead of starting one (`/var/run/docker.sock`): Palisade
    /// only creates and removes its own containers, networks, volumes and image there.
    #[arg(long, value_name = "PATH")]
    engine_socket: Option<std::path::PathBuf>,
}

#[derive(clap::Args)]
struct MatrixArgs {
    /// The runtimes, one column each: names looked up on PATH, or paths. A runtime that is not
    /// installed, or cannot run a trivial container, is a column that says so.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "palisade-runtime,runc,crun,youki"
    )]
    runtimes: Vec<String>,
    /// Engines, one column each: `docker:runc,docker:crun,podman:crun`.
    #[arg(long, value_delimiter = ',', value_name = "ENGINE[:RUNTIME]")]
    engines: Vec<String>,
    /// An operator's dockerd for the docker columns (see `run --engine-socket`).
    #[arg(long, value_name = "PATH")]
    engine_socket: Option<std::path::PathBuf>,
    /// Also run the negative controls (`selftest::` rows).
    #[arg(long)]
    with_controls: bool,
    #[command(flatten)]
    select: SelectArgs,
}

#[derive(clap::Args)]
struct MergeArgs {
    /// JSON reports (`palisade run --report json=PATH`) from any hosts and Palisade versions.
    #[arg(required = true, value_name = "REPORT.json")]
    reports: Vec<std::path::PathBuf>,
    /// Write the merged matrix: md=PATH, junit=PATH or json=PATH. Repeatable. Without md=, the
    /// Markdown goes to stdout.
    #[arg(long = "report", value_name = "FORMAT=PATH", value_delimiter = ',')]
    outputs: Vec<ReportSpec>,
    /// Name each host by its report's file name (`results/node-a.json` → node-a) instead of the
    /// hostname it recorded: inside a pod, the hostname is the pod's, not the node's.
    #[arg(long)]
    host_from_file_name: bool,
}

/// Which scenarios run, how, and what is written at the end: shared by `run`, `selftest`, `matrix`.
#[derive(clap::Args)]
struct SelectArgs {
    /// Run only scenarios whose name contains one of these (`pid::`, `network:: nat::`).
    filters: Vec<String>,
    /// Match the filter exactly.
    #[arg(long)]
    exact: bool,
    /// How many scenarios run at once.
    #[arg(long)]
    test_threads: Option<usize>,
    /// Write a report when the run is over: junit=PATH, tap=PATH, json=PATH or md=PATH. Repeatable.
    #[arg(
        long = "report",
        value_name = "FORMAT=PATH",
        env = "PALISADE_REPORT",
        value_delimiter = ','
    )]
    reports: Vec<ReportSpec>,
}

impl SelectArgs {
    /// A run of `runtimes` in `mode` with this selection. One filter goes to libtest as usual;
    /// several are applied by the suite (libtest takes one).
    fn suite_run(self, runtimes: Vec<String>, mode: Mode) -> SuiteRun {
        let mut filters = self.filters;
        if mode == Mode::Controls && self.exact {
            // `palisade selftest --exact pid::init_is_pid_1` names the scenario; its control trial
            // is `selftest::pid::init_is_pid_1`.
            for filter in &mut filters {
                if !filter.starts_with("selftest::") {
                    *filter = format!("selftest::{filter}");
                }
            }
        }
        let filter = if filters.len() == 1 {
            filters.pop()
        } else {
            None
        };
        let test_args = Arguments {
            filter,
            exact: self.exact,
            test_threads: self.test_threads,
            ..Arguments::default()
        };
        SuiteRun {
            filters,
            reports: self.reports,
            bundled_runtime: Some(own_binary("palisade-runtime")),
            ..SuiteRun::new(
                palisade_suites::all(),
                runtimes,
                mode,
                own_binary("palisade-probe"),
                test_args,
            )
        }
    }
}

fn main() -> ExitCode {
    // One file carries all three programs: run as `palisade-probe` (inside every container) or
    // as `palisade-runtime` (the bundled runtime), it is that program.
    let called = std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    match called.as_str() {
        "palisade-probe" => return palisade_probe::agent::main(),
        "palisade-runtime" => return palisade_runtime::main(),
        _ => {}
    }
    let cli = Cli::parse();
    // Runs and benches stop cleanly on SIGINT/SIGTERM/SIGHUP; `vm` handles its own signals.
    if matches!(
        cli.command,
        Command::Run(_) | Command::Selftest(_) | Command::Matrix(_) | Command::Bench { .. }
    ) && let Err(e) = palisade_harness::run::interrupt::install()
    {
        eprintln!(
            "palisade: warning: cannot take over SIGINT/SIGTERM ({e}): stopping a run will not clean up; `palisade cleanup` will"
        );
    }
    match cli.command {
        Command::Run(args) => suite(args, Mode::Scenarios),
        Command::Selftest(args) => suite(args, Mode::Controls),
        Command::Matrix(args) => matrix(args),
        Command::Merge(args) => merge(args),
        Command::List { markdown: true } => {
            print!("{}", palisade_suites::scenario_table());
            ExitCode::SUCCESS
        }
        Command::List { markdown: false } => {
            for scenario in palisade_suites::all() {
                println!(
                    "{:<55} {}\n{:<55} control: {}",
                    scenario.full_name(),
                    scenario.checks,
                    "",
                    scenario.control
                );
            }
            ExitCode::SUCCESS
        }
        Command::Bench {
            what:
                Bench::Start {
                    runtimes,
                    iterations,
                    seccomp,
                },
        } => palisade_suites::bench::bench_start(
            &own_binary("palisade-probe"),
            &own_binary("palisade-runtime"),
            &runtimes,
            iterations,
            seccomp,
        ),
        Command::Bench {
            what:
                Bench::Cgroups {
                    runtimes,
                    samples,
                    quota,
                    window_ms,
                },
        } => palisade_suites::bench::bench_cgroups(
            &own_binary("palisade-probe"),
            &own_binary("palisade-runtime"),
            &runtimes,
            samples,
            quota,
            std::time::Duration::from_millis(window_ms),
        ),
        Command::Vm(args) => {
            palisade_harness::run::orchestrate::sweep_dead_runs();
            vm(args)
        }
        // The kernel runs the guest's init as `/init vm-init`. Anywhere else this would power the
        // machine off at the end: refuse.
        Command::VmInit if std::process::id() == 1 => palisade_harness::vm::guest::init_main(),
        Command::VmInit => {
            eprintln!("palisade: vm-init only runs as pid 1 of a `palisade vm` guest");
            ExitCode::from(entry::EXIT_SETUP)
        }
        Command::Cleanup { all } => {
            let removed = palisade_harness::run::cleanup::cleanup_all(all, true);
            for item in &removed.items {
                println!("removed {item}");
            }
            for problem in &removed.problems {
                eprintln!("palisade: cleanup: {problem}");
            }
            if removed.items.is_empty() && removed.problems.is_empty() {
                println!("nothing to clean up");
            }
            if removed.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn suite(args: RunArgs, mode: Mode) -> ExitCode {
    let engines = args.engines.engines;
    let explicit = !args.runtime.is_empty() || !engines.is_empty();
    let runtimes = if !args.runtime.is_empty() {
        args.runtime
    } else if engines.is_empty() {
        default_runtime()
    } else {
        Vec::new()
    };
    entry::run(SuiteRun {
        explicit,
        engines,
        engine_socket: args.engines.engine_socket,
        ..args.select.suite_run(runtimes, mode)
    })
}

fn vm(args: VmArgs) -> ExitCode {
    if let Some(spec) = &args.report
        && spec.format != palisade_harness::report::Format::Json
    {
        eprintln!(
            "palisade: vm: --report takes json=PATH (the guest's own JSON report); for other formats run `palisade vm -- run --report ...` inside"
        );
        return ExitCode::from(entry::EXIT_SETUP);
    }
    let mut suite = args.suite;
    if suite.is_empty() {
        suite.push("run".to_owned());
    }
    // Emulated CPUs are slow: give runtimes and scenarios more time unless the user set it.
    let mut env = Vec::new();
    for (var, default) in [
        ("PALISADE_RUNTIME_TIMEOUT", "60"),
        ("PALISADE_SCENARIO_TIMEOUT", "180"),
    ] {
        env.push((
            var.to_owned(),
            std::env::var(var).unwrap_or_else(|_| default.to_owned()),
        ));
    }
    if let Ok(runtimes) = std::env::var("PALISADE_RUNTIME") {
        env.push(("PALISADE_RUNTIME".to_owned(), runtimes));
    }
    // The file that runs now: `palisade` alone holds the probe and the bundled runtime too.
    let palisade = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("palisade: vm: error: finding the running palisade binary: {e}");
            return ExitCode::from(2);
        }
    };
    let options = palisade_harness::vm::VmOptions {
        kernel: args.kernel,
        cgroup: args.cgroup,
        accel: args.accel,
        memory_mib: args.memory,
        cpus: args.cpus,
        timeout: std::time::Duration::from_secs(args.timeout),
        verbose: args.verbose,
        programs: args.with.into_iter().filter(|w| !w.is_empty()).collect(),
        suite_args: suite,
        palisade,
        env,
    };
    match palisade_harness::vm::run_vm(&options) {
        Ok(report) => vm_conclusion(&report, &options, args.report.as_ref()),
        Err(palisade_harness::vm::qemu::VmError::Interrupted(interruption)) => {
            eprintln!("palisade: vm: {interruption}");
            ExitCode::from(interruption.exit_code())
        }
        Err(e) => {
            eprintln!("palisade: vm: error: {e}");
            ExitCode::from(entry::EXIT_SETUP)
        }
    }
}

/// Prints how the guest run went (its verdicts from its JSON report), writes that report when
/// asked, and gives the exit code: the suite's, unless its report contradicts it or is missing.
fn vm_conclusion(
    report: &palisade_harness::vm::VmReport,
    options: &palisade_harness::vm::VmOptions,
    write_to: Option<&ReportSpec>,
) -> ExitCode {
    let secs = |d: Option<std::time::Duration>| {
        d.map(|d| format!("{:.1} s", d.as_secs_f64()))
            .unwrap_or_else(|| "never".to_owned())
    };
    let verdicts = match &report.report {
        Some(Ok(r)) => format!(
            "{} passed, {} failed, {} skipped",
            r.counts.passed, r.counts.failed, r.counts.skipped
        ),
        Some(Err(_)) => "no JSON report".to_owned(),
        None => "no verdicts".to_owned(),
    };
    println!(
        "palisade: vm: {} guest, cgroup {}: boot to first scenario {}, whole run {:.1} s, {verdicts}, exit code {}{}",
        report.accel,
        options.cgroup,
        secs(report.first_result),
        report.total.as_secs_f64(),
        report.exit_code,
        report
            .failure
            .as_ref()
            .map(|f| format!(" ({f})"))
            .unwrap_or_default()
    );
    let mut code = report.exit_code;
    match &report.report {
        Some(Ok(guest)) => {
            for runtime in &guest.not_tested {
                println!("palisade: vm: not tested in the guest: {runtime}");
            }
            for trial in &guest.failed {
                println!("palisade: vm: failed in the guest: {trial}");
            }
            if code == 0 && !guest.failed.is_empty() {
                eprintln!("palisade: vm: the suite exited 0 but its report has failures");
                code = 1;
            }
            match write_to.map(|spec| (&spec.path, guest.write(&spec.path))) {
                Some((path, Ok(()))) => println!("palisade: vm: wrote {}", path.display()),
                Some((path, Err(e))) => {
                    eprintln!("palisade: vm: writing {}: {e}", path.display());
                    if code == 0 {
                        code = i32::from(entry::EXIT_SETUP);
                    }
                }
                None => {}
            }
        }
        Some(Err(why)) => {
            eprintln!("palisade: vm: the guest sent no JSON report: {why}");
            if code == 0 {
                code = i32::from(entry::EXIT_SETUP);
            }
        }
        None => {
            if let Some(spec) = write_to {
                eprintln!(
                    "palisade: vm: no JSON report from the guest, {} not written",
                    spec.path.display()
                );
                if code == 0 {
                    code = i32::from(entry::EXIT_SETUP);
                }
            }
        }
    }
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn matrix(args: MatrixArgs) -> ExitCode {
    let runtimes = args.runtimes;
    let mode = if args.with_controls {
        Mode::Both
    } else {
        Mode::Scenarios
    };
    entry::run(SuiteRun {
        matrix: true,
        engines: args.engines,
        engine_socket: args.engine_socket,
        ..args.select.suite_run(runtimes, mode)
    })
}

fn merge(args: MergeArgs) -> ExitCode {
    use palisade_harness::report::{Format, merge};
    let options = merge::MergeOptions {
        host_from_file_name: args.host_from_file_name,
    };
    let merged = match merge::merge_files(&args.reports, options) {
        Ok(merged) => merged,
        Err(e) => {
            eprintln!("palisade: merge: error: {e}");
            return ExitCode::from(entry::EXIT_SETUP);
        }
    };
    let mut written = true;
    for spec in &args.outputs {
        match merge::write(spec, &merged) {
            Ok(()) => eprintln!("palisade: wrote {}", spec.path.display()),
            Err(e) => {
                eprintln!("palisade: merge: error: {e}");
                written = false;
            }
        }
    }
    if !args.outputs.iter().any(|s| s.format == Format::Markdown) {
        print!("{}", merge::markdown(&merged));
    }
    let failing: Vec<&str> = merged
        .columns
        .iter()
        .filter(|c| c.has_failures())
        .map(|c| c.id.as_str())
        .collect();
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    eprintln!(
        "palisade: merged {} report{} into {} column{}; {}",
        merged.reports,
        plural(merged.reports),
        merged.columns.len(),
        plural(merged.columns.len()),
        if failing.is_empty() {
            "no FAIL".to_owned()
        } else {
            format!("FAIL in {}", failing.join(", "))
        }
    );
    if !written {
        ExitCode::from(entry::EXIT_SETUP)
    } else if failing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
