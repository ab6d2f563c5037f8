//! A seccomp profile as real configs carry it: Docker's default, in the OCI `linux.seccomp`
//! format (written for Palisade from Docker's documented rules). The bundled runtime's tests, the
//! seccomp scenarios and `palisade bench start --seccomp` use it.

use oci_spec::runtime::{Arch, LinuxSeccomp};

/// Docker's default profile for x86_64 hosts (architectures x86_64, x86 and x32).
pub const DOCKER_DEFAULT_X86_64: &str = include_str!("../profiles/docker-default-x86_64.json");

/// This host's architectures, as a profile names them.
pub fn host_architectures() -> Vec<Arch> {
    match std::env::consts::ARCH {
        "aarch64" => vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm],
        _ => vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32],
    }
}

/// Docker's default profile, for this host's architectures.
pub fn docker_default() -> Result<LinuxSeccomp, serde_json::Error> {
    let mut profile: LinuxSeccomp = serde_json::from_str(DOCKER_DEFAULT_X86_64)?;
    profile.set_architectures(Some(host_architectures()));
    Ok(profile)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_profile_parses_as_an_oci_seccomp_section() {
        let profile = super::docker_default().expect("parses");
        assert!(profile.syscalls().as_ref().is_some_and(|s| !s.is_empty()));
    }
}
