//! `features`: what this runtime implements, as the runtime spec's features document
//! (features.md, features-linux.md). It describes the implementation, not the host: AppArmor and
//! SELinux are implemented even where, as on a host without them, their fields are refused.

use std::collections::HashMap;

use oci_spec::runtime::{
    ApparmorBuilder, CgroupBuilder, Features, FeaturesBuilder, IDMapBuilder, IntelRdtBuilder,
    LinuxFeatureBuilder, LinuxNamespaceType, MountExtensionsBuilder, NetDevicesBuilder,
    SeccompBuilder, SelinuxBuilder,
};
use palisade_common::annotations;

use crate::hooks::HookKind;

/// Mount options with a meaning of their own (anything else is passed to the filesystem as data).
const MOUNT_OPTIONS: &[&str] = &[
    "async",
    "atime",
    "bind",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "nosymfollow",
    "private",
    "ratime",
    "rbind",
    "rdev",
    "rdiratime",
    "relatime",
    "remount",
    "rexec",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnorelatime",
    "rnostrictatime",
    "rnosuid",
    "rnosymfollow",
    "ro",
    "rprivate",
    "rrelatime",
    "rro",
    "rrw",
    "rshared",
    "rslave",
    "rstrictatime",
    "rsuid",
    "rsymfollow",
    "runbindable",
    "rw",
    "shared",
    "slave",
    "strictatime",
    "suid",
    "symfollow",
    "sync",
    "tmpcopyup",
    "unbindable",
];

/// Namespace types the runtime creates and joins.
const NAMESPACES: &[LinuxNamespaceType] = &[
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Mount,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::User,
    LinuxNamespaceType::Uts,
];

/// The seccomp filter flags the runtime passes to seccomp(2) (crate::seccomp's `flags`).
const SECCOMP_FLAGS: &[&str] = &[
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
];

/// What the runtime's own seccomp compiler ([`crate::seccomp`]) implements: every action and
/// operator of the spec, and the architectures it has syscall tables for.
fn seccomp() -> oci_spec::runtime::Seccomp {
    use oci_spec::runtime::{LinuxSeccompAction as A, LinuxSeccompOperator as O};
    let operators = [
        O::ScmpCmpNe,
        O::ScmpCmpLt,
        O::ScmpCmpLe,
        O::ScmpCmpEq,
        O::ScmpCmpGe,
        O::ScmpCmpGt,
        O::ScmpCmpMaskedEq,
    ];
    SeccompBuilder::default()
        .enabled(true)
        .actions(vec![
            A::ScmpActKill,
            A::ScmpActKillProcess,
            A::ScmpActKillThread,
            A::ScmpActTrap,
            A::ScmpActErrno,
            A::ScmpActTrace,
            A::ScmpActAllow,
            A::ScmpActLog,
            A::ScmpActNotify,
        ])
        .operators(
            operators
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
        )
        .archs(crate::seccomp::known_architectures())
        // The kernel, not the runtime, may lack one (WAIT_KILLABLE_RECV: Linux 5.19); seccomp(2)
        // then fails `create` with EINVAL, named in the error.
        .known_flags(
            SECCOMP_FLAGS
                .iter()
                .map(|f| (*f).to_owned())
                .collect::<Vec<_>>(),
        )
        .supported_flags(
            SECCOMP_FLAGS
                .iter()
                .map(|f| (*f).to_owned())
                .collect::<Vec<_>>(),
        )
        .build()
        .unwrap_or_default()
}

pub fn features() -> Features {
    let mut capabilities: Vec<caps::Capability> = caps::all().into_iter().collect();
    capabilities.sort_by_key(|c| c.index());
    // Every builder below has all fields optional, so building cannot fail.
    let linux = LinuxFeatureBuilder::default()
        .namespaces(NAMESPACES.to_vec())
        .capabilities(
            capabilities
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
        )
        .cgroup(
            CgroupBuilder::default()
                .v1(true)
                .v2(true)
                .systemd(false)
                .systemd_user(false)
                .rdma(false)
                .build()
                .unwrap_or_default(),
        )
        .seccomp(seccomp())
        .apparmor(
            ApparmorBuilder::default()
                .enabled(true)
                .build()
                .unwrap_or_default(),
        )
        .selinux(
            SelinuxBuilder::default()
                .enabled(true)
                .build()
                .unwrap_or_default(),
        )
        .intel_rdt(
            IntelRdtBuilder::default()
                .enabled(false)
                .build()
                .unwrap_or_default(),
        )
        .mount_extensions(
            MountExtensionsBuilder::default()
                .idmap(
                    IDMapBuilder::default()
                        .enabled(false)
                        .build()
                        .unwrap_or_default(),
                )
                .build()
                .unwrap_or_default(),
        )
        .net_devices(
            NetDevicesBuilder::default()
                .enabled(false)
                .build()
                .unwrap_or_default(),
        )
        .build()
        .unwrap_or_default();
    FeaturesBuilder::default()
        .oci_version_min("1.0.0")
        .oci_version_max(crate::OCI_SPEC_VERSION)
        .hooks(
            HookKind::ALL
                .iter()
                .map(|k| k.name().to_owned())
                .collect::<Vec<_>>(),
        )
        .mount_options(
            MOUNT_OPTIONS
                .iter()
                .map(|o| (*o).to_owned())
                .collect::<Vec<_>>(),
        )
        .linux(linux)
        .annotations(HashMap::from([(
            "org.palisade.runtime.version".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        )]))
        // The test-only modes that make the container escapable on purpose.
        .potentially_unsafe_config_annotations(vec![
            annotations::NO_PIVOT.to_owned(),
            annotations::CHROOT_ONLY.to_owned(),
        ])
        .build()
        .unwrap_or_default()
}

/// The document `features` prints.
pub fn json() -> String {
    // Strings, booleans and lists only: serializing cannot fail.
    serde_json::to_string_pretty(&features()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::spec::parse_mount_options;

    #[test]
    fn the_document_has_the_shape_of_features_md() {
        let v: Value = serde_json::from_str(&json()).expect("valid JSON");
        assert_eq!(v["ociVersionMin"], "1.0.0");
        assert_eq!(v["ociVersionMax"], crate::OCI_SPEC_VERSION);
        assert_eq!(
            v["hooks"],
            serde_json::json!([
                "prestart",
                "createRuntime",
                "createContainer",
                "startContainer",
                "poststart",
                "poststop"
            ])
        );
        let linux = &v["linux"];
        assert_eq!(
            linux["namespaces"],
            serde_json::json!([
                "cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"
            ])
        );
        let caps = linux["capabilities"].as_array().expect("capabilities");
        assert_eq!(caps[0], "CAP_CHOWN");
        assert!(caps.contains(&Value::from("CAP_SYS_ADMIN")));
        assert_eq!(linux["cgroup"]["v1"], true);
        assert_eq!(linux["cgroup"]["v2"], true);
        assert_eq!(linux["cgroup"]["systemd"], false);
        assert_eq!(linux["seccomp"]["enabled"], true);
        assert_eq!(
            linux["seccomp"]["actions"].as_array().map(Vec::len),
            Some(9)
        );
        assert_eq!(
            linux["seccomp"]["operators"],
            serde_json::json!([
                "SCMP_CMP_NE",
                "SCMP_CMP_LT",
                "SCMP_CMP_LE",
                "SCMP_CMP_EQ",
                "SCMP_CMP_GE",
                "SCMP_CMP_GT",
                "SCMP_CMP_MASKED_EQ"
            ])
        );
        assert_eq!(
            linux["seccomp"]["archs"],
            serde_json::json!([
                "SCMP_ARCH_X86_64",
                "SCMP_ARCH_X86",
                "SCMP_ARCH_X32",
                "SCMP_ARCH_AARCH64",
                "SCMP_ARCH_ARM",
                "SCMP_ARCH_RISCV64"
            ])
        );
        assert_eq!(linux["intelRdt"]["enabled"], false);
        assert_eq!(linux["mountExtensions"]["idmap"]["enabled"], false);
        assert_eq!(
            v["potentiallyUnsafeConfigAnnotations"],
            serde_json::json!([annotations::NO_PIVOT, annotations::CHROOT_ONLY])
        );
        // It reads back as the spec's type.
        let back: Features = serde_json::from_value(v).expect("a Features document");
        assert_eq!(back, features());
    }

    #[test]
    fn every_listed_mount_option_has_a_meaning_of_its_own() {
        for option in MOUNT_OPTIONS {
            let parsed = parse_mount_options(&[(*option).to_owned()]).expect("a known option");
            assert_eq!(
                parsed.data, "",
                "{option} would be passed on as filesystem data"
            );
        }
    }
}
