//! The `palisade` command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use libtest_mimic::Arguments;
use palisade_harness::report::ReportSpec;
use palisade_harness::runner::Mode;
use palisade_suites::entry::{self, SuiteRun, default_runtimes, sibling_binary};

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
    /// List the scenarios with what each checks and its negative control.
    List,
    /// Remove what killed runs left behind (containers, cgroups, namespaces, temp dirs).
    Cleanup {
        /// Also clean up after runs that are still alive.
        #[arg(long)]
        all: bool,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// The runtime under test: a name looked up on PATH, or a path. Default: the bundled runtime.
    #[arg(long, env = "PALISADE_RUNTIME", value_delimiter = ',')]
    runtime: Vec<String>,
    /// Run only scenarios whose name contains this (`pid::`).
    filter: Option<String>,
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
    /// Also run the negative controls (`selftest::` rows).
    #[arg(long)]
    with_controls: bool,
    /// Run only scenarios whose name contains this (`pid::`).
    filter: Option<String>,
    /// Match the filter exactly.
    #[arg(long)]
    exact: bool,
    /// How many scenarios run at once.
    #[arg(long)]
    test_threads: Option<usize>,
    /// Write a report too: md=MATRIX.md (the table), junit=PATH, tap=PATH or json=PATH. Repeatable.
    #[arg(
        long = "report",
        value_name = "FORMAT=PATH",
        env = "PALISADE_REPORT",
        value_delimiter = ','
    )]
    reports: Vec<ReportSpec>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => suite(args, Mode::Scenarios),
        Command::Selftest(args) => suite(args, Mode::Controls),
        Command::Matrix(args) => matrix(args),
        Command::List => {
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
        default_runtimes(&sibling_binary("palisade-runtime"))
    };
    let test_args = Arguments {
        filter: args.filter,
        exact: args.exact,
        test_threads: args.test_threads,
        ..Arguments::default()
    };
    entry::run(SuiteRun {
        explicit,
        reports: args.reports,
        ..SuiteRun::new(runtimes, mode, sibling_binary("palisade-probe"), test_args)
    })
}

fn matrix(args: MatrixArgs) -> ExitCode {
    let runtimes = args
        .runtimes
        .into_iter()
        .map(|name| bundled_if_not_on_path(&name))
        .collect();
    let test_args = Arguments {
        filter: args.filter,
        exact: args.exact,
        test_threads: args.test_threads,
        ..Arguments::default()
    };
    let mode = if args.with_controls {
        Mode::Both
    } else {
        Mode::Scenarios
    };
    entry::run(SuiteRun {
        reports: args.reports,
        matrix: true,
        ..SuiteRun::new(runtimes, mode, sibling_binary("palisade-probe"), test_args)
    })
}

/// `palisade-runtime` means the bundled runtime next to this binary unless one is on PATH.
fn bundled_if_not_on_path(name: &str) -> String {
    let bundled = sibling_binary("palisade-runtime");
    if name == "palisade-runtime"
        && palisade_harness::driver::find_runtime(name).is_err()
        && bundled.is_file()
    {
        bundled.display().to_string()
    } else {
        name.to_owned()
    }
}
