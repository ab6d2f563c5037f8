//! `cargo test` runs the whole suite, scenarios and negative controls, against every runtime of
//! the default matrix (or `PALISADE_RUNTIME`, comma-separated).

use std::path::Path;
use std::process::ExitCode;

use palisade_harness::runner::Mode;
use palisade_suites::entry::{self, SuiteRun, test_matrix};

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
        test_matrix(Path::new(env!("CARGO_BIN_EXE_palisade-runtime")))
    };
    entry::run(SuiteRun {
        runtimes,
        mode: Mode::Both,
        probe: env!("CARGO_BIN_EXE_palisade-probe").into(),
        args,
        explicit,
    })
}
