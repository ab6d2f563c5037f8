//! Annotations that switch the bundled runtime into deliberately defective, test-only modes. They
//! exist for Palisade's negative controls; other runtimes ignore them.

/// MS_MOVE + chroot(2) instead of pivot_root(2), like `runc --no-pivot`: the host's root stays in
/// the container's mount namespace, under the rootfs.
pub const NO_PIVOT: &str = "org.palisade.test.no-pivot";

/// A bare chroot(2) into the rootfs: no pivot_root, no MS_MOVE. Deliberately escapable (a second
/// chroot plus enough `..` reaches the mount namespace's root, a copy of the host's): it exists
/// only as the negative control of the jailbreak scenario and must never be used otherwise.
pub const CHROOT_ONLY: &str = "org.palisade.test.chroot-only";
