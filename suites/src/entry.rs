//! What the `palisade` command and `cargo test` share besides the run itself (which is
//! [`palisade_harness::run::orchestrate`]): where the binaries are, and which runtimes run by
//! default.

use std::path::{Path, PathBuf};

pub use palisade_harness::run::orchestrate::{
    EXIT_SETUP, SuiteRun, run, runtime_label, setup_error,
};

/// The binary that answers to `name` (`palisade-probe`, `palisade-runtime`): the one installed
/// next to the running `palisade` if there is one (a cargo build makes them), else `palisade`
/// itself, which carries the probe and the runtime and dispatches on the name it is run under.
pub fn own_binary(name: &str) -> PathBuf {
    let sibling = sibling_binary(name);
    if sibling.is_file() {
        return sibling;
    }
    std::env::current_exe().unwrap_or(sibling)
}

/// A binary installed next to the running one (`cargo` puts them side by side; test binaries
/// live one level down, in `deps/`).
pub fn sibling_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let candidate = dir.join(name);
    if !candidate.exists()
        && dir.ends_with("deps")
        && let Some(parent) = dir.parent()
    {
        return parent.join(name);
    }
    candidate
}

/// The runtimes `palisade run` uses when none is named: the bundled one.
pub fn default_runtime() -> Vec<String> {
    vec![palisade_harness::run::env::BUNDLED_RUNTIME.to_owned()]
}

/// The matrix `cargo test` runs: the bundled runtime (at `bundled`), and runc, crun and youki as
/// references (one that is not installed is a column of skips that says so).
pub fn test_matrix(bundled: &Path) -> Vec<String> {
    vec![
        bundled.to_string_lossy().into_owned(),
        "runc".to_owned(),
        "crun".to_owned(),
        "youki".to_owned(),
    ]
}
