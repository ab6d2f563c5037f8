//! The `palisade` command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use libtest_mimic::Arguments;
use palisade_harness::runner::Mode;
use palisade_suites::entry::{self, SuiteRun, default_runtime, sibling_binary};

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
}

#[derive(Subcommand)]
enum Bench {
    /// The CPU fraction the kernel charges a 2-thread burner under a CPU quota, per runtime.
    Cgroups {
        /// Runtimes to measure (names on PATH or paths).
        #[arg(long, value_delimiter = ',', default_value = "runc,crun")]
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
    /// The runtime under test: a name looked up on PATH, or a path. Default: the bundled runtime.
    #[arg(long, env = "PALISADE_RUNTIME", value_delimiter = ',')]
    runtime: Vec<String>,
    /// Run only scenarios whose name contains one of these (`pid::`, `network:: nat::`).
    filters: Vec<String>,
    /// Match the filter exactly.
    #[arg(long)]
    exact: bool,
    /// How many scenarios run at once.
    #[arg(long)]
    test_threads: Option<usize>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => suite(args, Mode::Scenarios),
        Command::Selftest(args) => suite(args, Mode::Controls),
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
                Bench::Cgroups {
                    runtimes,
                    samples,
                    quota,
                    window_ms,
                },
        } => entry::bench_cgroups(
            &sibling_binary("palisade-probe"),
            &runtimes,
            samples,
            quota,
            std::time::Duration::from_millis(window_ms),
        ),
        Command::Cleanup { all } => {
            let removed = palisade_harness::cleanup::cleanup_all(all);
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
    let explicit = !args.runtime.is_empty();
    let runtimes = if explicit {
        args.runtime
    } else {
        default_runtime(&sibling_binary("palisade-runtime"))
    };
    let (filter, filters) = split_filters(args.filters);
    let test_args = Arguments {
        filter,
        exact: args.exact,
        test_threads: args.test_threads,
        ..Arguments::default()
    };
    entry::run(SuiteRun {
        runtimes,
        mode,
        probe: sibling_binary("palisade-probe"),
        args: test_args,
        filters,
        explicit,
    })
}

/// One filter goes to libtest as usual; several are applied by the suite (libtest takes one).
fn split_filters(mut filters: Vec<String>) -> (Option<String>, Vec<String>) {
    if filters.len() == 1 {
        (filters.pop(), Vec::new())
    } else {
        (None, filters)
    }
}
