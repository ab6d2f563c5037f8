//! `cargo test` runs the whole suite, scenarios and negative controls, against every runtime of
//! the default matrix (or `PALISADE_RUNTIME`, comma-separated). `PALISADE_REPORT=junit=path,...`
//! writes reports too.

use std::path::Path;
use std::process::ExitCode;

use palisade_harness::report::parse_specs;
use palisade_harness::run::runner::Mode;
use palisade_suites::entry::{self, SuiteRun, test_matrix};

fn main() -> ExitCode {
    // Ctrl-C during `cargo test` stops the suite cleanly, as it does `palisade run`.
    if let Err(e) = palisade_harness::run::interrupt::install() {
        eprintln!("palisade: warning: cannot take over SIGINT/SIGTERM ({e})");
    }
    let (args, filters) = arguments();
    let named: Vec<String> = std::env::var("PALISADE_RUNTIME")
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let explicit = !named.is_empty();
    let runtimes = if explicit {
        named
    } else {
        test_matrix(Path::new(env!("CARGO_BIN_EXE_palisade-runtime")))
    };
    let reports = match parse_specs(&std::env::var("PALISADE_REPORT").unwrap_or_default()) {
        Ok(reports) => reports,
        Err(e) => {
            eprintln!("palisade: error: PALISADE_REPORT: {e}");
            return ExitCode::from(entry::EXIT_SETUP);
        }
    };
    entry::run(SuiteRun {
        filters,
        explicit,
        reports,
        known_bugs: palisade_suites::known_bugs(),
        ..SuiteRun::new(
            palisade_suites::all(),
            runtimes,
            Mode::Both,
            env!("CARGO_BIN_EXE_palisade-probe").into(),
            args,
        )
    })
}

/// libtest's arguments, but taking several filters (`cargo test --test suite -- network:: nat::`),
/// which libtest itself refuses: with more than one, they are handed to the suite instead.
fn arguments() -> (libtest_mimic::Arguments, Vec<String>) {
    const TAKES_VALUE: &[&str] = &[
        "--test-threads",
        "--logfile",
        "--skip",
        "--color",
        "--format",
    ];
    let mut kept = Vec::new();
    let mut filters = Vec::new();
    let mut raw = std::env::args();
    kept.extend(raw.next());
    while let Some(arg) = raw.next() {
        if TAKES_VALUE.contains(&arg.as_str()) {
            kept.push(arg);
            kept.extend(raw.next());
        } else if arg.starts_with('-') {
            kept.push(arg);
        } else {
            filters.push(arg);
        }
    }
    if filters.len() == 1 {
        kept.append(&mut filters);
    }
    (libtest_mimic::Arguments::from_iter(kept), filters)
}
