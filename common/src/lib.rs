//! What Palisade's crates must agree on, in one place: the test-only annotations the bundled
//! runtime understands, the names of capabilities and namespaces as each crate spells them, and
//! the test runner that gives Palisade's own integration tests honest skips.

pub mod annotations;
pub mod capabilities;
pub mod mountinfo;
pub mod namespaces;
pub mod profiles;
pub mod testkit;

use std::path::PathBuf;

/// A program given by name (looked up on `PATH`) or by path, if it exists.
pub fn find_program(name_or_path: &str) -> Option<PathBuf> {
    if name_or_path.contains('/') {
        let path = PathBuf::from(name_or_path);
        return path.is_file().then_some(path);
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .map(|dir| dir.join(name_or_path))
        .find(|candidate| candidate.is_file())
}
