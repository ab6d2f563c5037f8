//! Palisade's bundled reference OCI runtime.

use std::process::ExitCode;

/// Entry point of the `palisade-runtime` binary.
pub fn main() -> ExitCode {
    eprintln!("palisade-runtime: not implemented yet");
    ExitCode::FAILURE
}
