//! A seccomp profile as real configs carry it: Docker's default, in the OCI `linux.seccomp`
//! format (written for Palisade from Docker's documented rules). The bundled runtime's tests and
//! the seccomp scenarios both use it.

/// Docker's default profile for x86_64 hosts (architectures x86_64, x86 and x32).
pub const DOCKER_DEFAULT_X86_64: &str = include_str!("../profiles/docker-default-x86_64.json");
