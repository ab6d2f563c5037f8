//! `cargo test` runs the whole suite, scenarios and negative controls, against every runtime of
//! the default matrix (or `PALISADE_RUNTIME`, comma-separated). `PALISADE_REPORT=junit=path,...`
//! writes reports too.

use std::path::Path;
use std::process::ExitCode;

use palisade_harness::report::parse_specs;
use palisade_harness::runner::Mode;
use palisade_suites::entry::{self, SuiteRun, default_runtimes};

fn main() -> ExitCode {
    let args = libtest_mimic::Arguments::from_args();
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
        default_runtimes(Path::new(env!("CARGO_BIN_EXE_palisade-runtime")))
    };
    let reports = match parse_specs(&std::env::var("PALISADE_REPORT").unwrap_or_default()) {
        Ok(reports) => reports,
        Err(e) => {
            eprintln!("palisade: error: PALISADE_REPORT: {e}");
            return ExitCode::from(entry::EXIT_SETUP);
        }
    };
    entry::run(SuiteRun {
        explicit,
        reports,
        ..SuiteRun::new(
            runtimes,
            Mode::Both,
            env!("CARGO_BIN_EXE_palisade-probe").into(),
            args,
        )
    })
}
