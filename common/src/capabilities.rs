//! The one conversion between the OCI config's capability names (`oci_spec`) and the kernel's
//! capability numbers (`caps`).

use oci_spec::runtime::Capability;

/// The kernel capability an OCI capability names; `None` for a name this kernel crate does not
/// know (a newer capability than `caps` has).
pub fn to_kernel(cap: Capability) -> Option<caps::Capability> {
    // oci-spec prints `CHOWN` (SCREAMING_SNAKE_CASE without the prefix); caps parses `CAP_CHOWN`.
    format!("CAP_{cap}").parse().ok()
}

/// The OCI name of a kernel capability, if oci-spec knows it.
pub fn to_oci(cap: caps::Capability) -> Option<Capability> {
    cap.to_string()
        .strip_prefix("CAP_")
        .and_then(|name| name.parse().ok())
}

/// A set of OCI capabilities as the bit mask `/proc/<pid>/status` shows (unknown names are left
/// out: no kernel could grant them).
pub fn mask<'a>(set: impl IntoIterator<Item = &'a Capability>) -> u64 {
    set.into_iter()
        .filter_map(|cap| to_kernel(*cap))
        .fold(0, |mask, cap| mask | cap.bitmask())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(Capability::Chown, caps::Capability::CAP_CHOWN)]
    #[case(Capability::SysAdmin, caps::Capability::CAP_SYS_ADMIN)]
    #[case(Capability::NetBindService, caps::Capability::CAP_NET_BIND_SERVICE)]
    #[case(Capability::AuditWrite, caps::Capability::CAP_AUDIT_WRITE)]
    #[case(Capability::Bpf, caps::Capability::CAP_BPF)]
    fn names_map_both_ways(#[case] oci: Capability, #[case] kernel: caps::Capability) {
        assert_eq!(to_kernel(oci), Some(kernel));
        assert_eq!(to_oci(kernel), Some(oci));
    }

    #[test]
    fn masks_are_the_kernel_bits() {
        let set = [Capability::Kill, Capability::AuditWrite];
        assert_eq!(mask(&set), (1 << 5) | (1 << 29));
    }
}
