//! fstab-style mount options (`mounts[].options`) → mount(2) flags, propagation, recursive
//! attributes (mount_setattr(2)) and data.

use nix::mount::MsFlags;

/// mount(2)'s MS_NOSYMFOLLOW (Linux 5.10), which nix does not name.
pub const MS_NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(256);

/// `MOUNT_ATTR_*` of mount_setattr(2) (linux/mount.h).
pub mod attr {
    pub const RDONLY: u64 = 0x0000_0001;
    pub const NOSUID: u64 = 0x0000_0002;
    pub const NODEV: u64 = 0x0000_0004;
    pub const NOEXEC: u64 = 0x0000_0008;
    /// The mask of the three atime modes below (relatime is 0).
    pub const ATIME: u64 = 0x0000_0070;
    pub const RELATIME: u64 = 0x0000_0000;
    pub const NOATIME: u64 = 0x0000_0010;
    pub const STRICTATIME: u64 = 0x0000_0020;
    pub const NODIRATIME: u64 = 0x0000_0080;
    pub const NOSYMFOLLOW: u64 = 0x0020_0000;
}

/// Attributes set on a mount and every mount below it (mount_setattr(2) with AT_RECURSIVE).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecursiveAttr {
    pub set: u64,
    pub clear: u64,
}

/// What a list of mount options asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags for mount(2); later options override earlier ones (`ro,rw` is read-write).
    pub flags: MsFlags,
    /// Propagation changes, in order, each applied by its own mount(2) call after the mount.
    pub propagation: Vec<MsFlags>,
    /// Recursive attributes (`rro`, `rnosuid`, …), applied to the whole tree after the mount;
    /// `None` if no option asks for one.
    pub recursive: Option<RecursiveAttr>,
    /// Filesystem-specific options, passed on as mount(2)'s data.
    pub data: String,
    /// `bind` or `rbind` (the latter also sets MS_REC).
    pub bind: bool,
    /// `tmpcopyup`: the tmpfs starts with a copy of the directory it is mounted on.
    pub copy_up: bool,
}

/// An option this runtime refuses rather than passing it on, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option}: {reason}")]
pub struct RefusedOption {
    pub option: String,
    pub reason: &'static str,
}

/// What one option means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Sets (`true`) or clears a mount(2) flag.
    Flag(bool, MsFlags),
    /// A bind mount, recursive or not.
    Bind { recursive: bool },
    /// A propagation type, possibly with MS_REC.
    Propagation(MsFlags),
    /// Sets (`true`) or clears a recursive attribute.
    Recursive(bool, u64),
    /// A recursive atime mode: clears the atime mask, then sets this mode.
    RecursiveAtime(u64),
    /// runc's `tmpcopyup`.
    CopyUp,
    /// Refused, with the reason.
    Refused(&'static str),
    /// Anything else: passed to the filesystem.
    Data,
}

fn kind(option: &str) -> Kind {
    use Kind::{Flag, Recursive, RecursiveAtime};
    match option {
        "ro" => Flag(true, MsFlags::MS_RDONLY),
        "rw" => Flag(false, MsFlags::MS_RDONLY),
        "nosuid" => Flag(true, MsFlags::MS_NOSUID),
        "suid" => Flag(false, MsFlags::MS_NOSUID),
        "nodev" => Flag(true, MsFlags::MS_NODEV),
        "dev" => Flag(false, MsFlags::MS_NODEV),
        "noexec" => Flag(true, MsFlags::MS_NOEXEC),
        "exec" => Flag(false, MsFlags::MS_NOEXEC),
        "sync" => Flag(true, MsFlags::MS_SYNCHRONOUS),
        "async" => Flag(false, MsFlags::MS_SYNCHRONOUS),
        "dirsync" => Flag(true, MsFlags::MS_DIRSYNC),
        "remount" => Flag(true, MsFlags::MS_REMOUNT),
        "mand" => Flag(true, MsFlags::MS_MANDLOCK),
        "nomand" => Flag(false, MsFlags::MS_MANDLOCK),
        "noatime" => Flag(true, MsFlags::MS_NOATIME),
        "atime" => Flag(false, MsFlags::MS_NOATIME),
        "nodiratime" => Flag(true, MsFlags::MS_NODIRATIME),
        "diratime" => Flag(false, MsFlags::MS_NODIRATIME),
        "relatime" => Flag(true, MsFlags::MS_RELATIME),
        "norelatime" => Flag(false, MsFlags::MS_RELATIME),
        "strictatime" => Flag(true, MsFlags::MS_STRICTATIME),
        "nostrictatime" => Flag(false, MsFlags::MS_STRICTATIME),
        "nosymfollow" => Flag(true, MS_NOSYMFOLLOW),
        "symfollow" => Flag(false, MS_NOSYMFOLLOW),
        "bind" => Kind::Bind { recursive: false },
        "rbind" => Kind::Bind { recursive: true },
        "private" => Kind::Propagation(MsFlags::MS_PRIVATE),
        "rprivate" => Kind::Propagation(MsFlags::MS_PRIVATE | MsFlags::MS_REC),
        "shared" => Kind::Propagation(MsFlags::MS_SHARED),
        "rshared" => Kind::Propagation(MsFlags::MS_SHARED | MsFlags::MS_REC),
        "slave" => Kind::Propagation(MsFlags::MS_SLAVE),
        "rslave" => Kind::Propagation(MsFlags::MS_SLAVE | MsFlags::MS_REC),
        "unbindable" => Kind::Propagation(MsFlags::MS_UNBINDABLE),
        "runbindable" => Kind::Propagation(MsFlags::MS_UNBINDABLE | MsFlags::MS_REC),
        // The runtime spec's recursive options (mount_setattr(2), as runc and crun).
        "rro" => Recursive(true, attr::RDONLY),
        "rrw" => Recursive(false, attr::RDONLY),
        "rnosuid" => Recursive(true, attr::NOSUID),
        "rsuid" => Recursive(false, attr::NOSUID),
        "rnodev" => Recursive(true, attr::NODEV),
        "rdev" => Recursive(false, attr::NODEV),
        "rnoexec" => Recursive(true, attr::NOEXEC),
        "rexec" => Recursive(false, attr::NOEXEC),
        "rnodiratime" => Recursive(true, attr::NODIRATIME),
        "rdiratime" => Recursive(false, attr::NODIRATIME),
        "rnosymfollow" => Recursive(true, attr::NOSYMFOLLOW),
        "rsymfollow" => Recursive(false, attr::NOSYMFOLLOW),
        "rrelatime" => RecursiveAtime(attr::RELATIME),
        "rnoatime" => RecursiveAtime(attr::NOATIME),
        "rstrictatime" => RecursiveAtime(attr::STRICTATIME),
        // Back to the kernel's default atime mode.
        "ratime" | "rnorelatime" | "rnostrictatime" => RecursiveAtime(attr::RELATIME),
        // runc's extension (podman's --read-only asks for it): never filesystem data.
        "tmpcopyup" => Kind::CopyUp,
        "idmap" | "ridmap" => Kind::Refused(
            "id-mapped mounts (mount_setattr with MOUNT_ATTR_IDMAP) are not implemented by palisade-runtime",
        ),
        _ => Kind::Data,
    }
}

/// Splits mount options into flags, propagation changes, recursive attributes, filesystem data
/// and whether it is a bind; refuses options this runtime cannot apply.
pub fn parse_mount_options(options: &[String]) -> Result<MountOptions, RefusedOption> {
    let mut parsed = MountOptions {
        flags: MsFlags::empty(),
        propagation: Vec::new(),
        recursive: None,
        data: String::new(),
        bind: false,
        copy_up: false,
    };
    let mut data: Vec<&str> = Vec::new();
    for option in options {
        match kind(option) {
            Kind::Flag(true, flag) => parsed.flags |= flag,
            Kind::Flag(false, flag) => parsed.flags.remove(flag),
            Kind::Bind { recursive } => {
                parsed.bind = true;
                if recursive {
                    parsed.flags |= MsFlags::MS_REC;
                }
            }
            Kind::Propagation(p) => parsed.propagation.push(p),
            Kind::Recursive(set, bit) => {
                let r = parsed.recursive.get_or_insert_with(RecursiveAttr::default);
                // Later options override earlier ones, as for the plain flags.
                if set {
                    r.set |= bit;
                    r.clear &= !bit;
                } else {
                    r.clear |= bit;
                    r.set &= !bit;
                }
            }
            Kind::RecursiveAtime(mode) => {
                let r = parsed.recursive.get_or_insert_with(RecursiveAttr::default);
                r.set = (r.set & !attr::ATIME) | mode;
                r.clear |= attr::ATIME;
            }
            Kind::Refused(reason) => {
                return Err(RefusedOption {
                    option: option.clone(),
                    reason,
                });
            }
            Kind::CopyUp => parsed.copy_up = true,
            Kind::Data => data.push(option),
        }
    }
    parsed.data = data.join(",");
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    const NONE: MsFlags = MsFlags::empty();
    const REC: MsFlags = MsFlags::MS_REC;

    fn parse(options: &str) -> MountOptions {
        let options: Vec<String> = options
            .split(',')
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
            .collect();
        parse_mount_options(&options).expect("accepted options")
    }

    #[rstest]
    #[case::nothing("", NONE)]
    #[case::ro("ro", MsFlags::MS_RDONLY)]
    #[case::rw_after_ro_clears("ro,rw", NONE)]
    #[case::ro_after_rw_sets("rw,ro", MsFlags::MS_RDONLY)]
    #[case::runc_sys("nosuid,noexec,nodev,ro", MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV | MsFlags::MS_RDONLY)]
    #[case::suid_clears("nosuid,suid", NONE)]
    #[case::dev_clears("nodev,dev", NONE)]
    #[case::exec_clears("noexec,exec", NONE)]
    #[case::sync("sync", MsFlags::MS_SYNCHRONOUS)]
    #[case::async_clears("sync,async", NONE)]
    #[case::dirsync("dirsync", MsFlags::MS_DIRSYNC)]
    #[case::remount("remount", MsFlags::MS_REMOUNT)]
    #[case::mand("mand", MsFlags::MS_MANDLOCK)]
    #[case::nomand_clears("mand,nomand", NONE)]
    #[case::noatime("noatime", MsFlags::MS_NOATIME)]
    #[case::atime_clears("noatime,atime", NONE)]
    #[case::nodiratime("nodiratime", MsFlags::MS_NODIRATIME)]
    #[case::diratime_clears("nodiratime,diratime", NONE)]
    #[case::relatime("relatime", MsFlags::MS_RELATIME)]
    #[case::norelatime_clears("relatime,norelatime", NONE)]
    #[case::strictatime("strictatime", MsFlags::MS_STRICTATIME)]
    #[case::nostrictatime_clears("strictatime,nostrictatime", NONE)]
    #[case::clearing_unset_flag_is_harmless("rw,suid,dev", NONE)]
    fn sets_and_clears_flags(#[case] options: &str, #[case] flags: MsFlags) {
        let parsed = parse(options);
        assert_eq!(parsed.flags, flags);
        assert!(!parsed.bind);
        assert_eq!(parsed.propagation, []);
        assert_eq!(parsed.data, "");
    }

    #[rstest]
    #[case::bind("bind", NONE)]
    #[case::rbind("rbind", REC)]
    #[case::bind_ro("bind,ro", MsFlags::MS_RDONLY)]
    #[case::rbind_ro_nosuid("rbind,ro,nosuid", REC | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID)]
    // MS_REC from rbind is not an option that a later one can clear.
    #[case::rbind_then_rw("rbind,rw", REC)]
    fn bind_options(#[case] options: &str, #[case] flags: MsFlags) {
        let parsed = parse(options);
        assert!(parsed.bind);
        assert_eq!(parsed.flags, flags);
        assert_eq!(parsed.data, "");
    }

    #[rstest]
    #[case::private("private", &[MsFlags::MS_PRIVATE])]
    #[case::rprivate("rprivate", &[MsFlags::MS_PRIVATE | REC])]
    #[case::shared("shared", &[MsFlags::MS_SHARED])]
    #[case::rshared("rshared", &[MsFlags::MS_SHARED | REC])]
    #[case::slave("slave", &[MsFlags::MS_SLAVE])]
    #[case::rslave("rslave", &[MsFlags::MS_SLAVE | REC])]
    #[case::unbindable("unbindable", &[MsFlags::MS_UNBINDABLE])]
    #[case::runbindable("runbindable", &[MsFlags::MS_UNBINDABLE | REC])]
    #[case::in_order("rshared,private", &[MsFlags::MS_SHARED | REC, MsFlags::MS_PRIVATE])]
    fn propagation_options(#[case] options: &str, #[case] propagation: &[MsFlags]) {
        let parsed = parse(options);
        assert_eq!(parsed.propagation, propagation);
        // Propagation never leaks into the mount's own flags.
        assert_eq!(parsed.flags, NONE);
    }

    #[rstest]
    #[case::tmpfs("nosuid,strictatime,mode=755,size=65536k", MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME, "mode=755,size=65536k")]
    #[case::devpts("nosuid,noexec,newinstance,ptmxmode=0666,mode=0620", MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620")]
    #[case::unknown_word("x-palisade", NONE, "x-palisade")]
    fn data_options(#[case] options: &str, #[case] flags: MsFlags, #[case] data: &str) {
        let parsed = parse(options);
        assert_eq!(parsed.flags, flags);
        assert_eq!(parsed.data, data);
        assert_eq!(parsed.recursive, None);
    }

    #[rstest]
    #[case::nosymfollow("nosymfollow", MS_NOSYMFOLLOW)]
    #[case::symfollow_clears("nosymfollow,symfollow", NONE)]
    fn nosymfollow(#[case] options: &str, #[case] flags: MsFlags) {
        assert_eq!(parse(options).flags, flags);
    }

    const fn rec(set: u64, clear: u64) -> Option<RecursiveAttr> {
        Some(RecursiveAttr { set, clear })
    }

    #[rstest]
    #[case::rro("rbind,rro", rec(attr::RDONLY, 0))]
    #[case::rrw("rrw", rec(0, attr::RDONLY))]
    #[case::rro_then_rrw("rro,rrw", rec(0, attr::RDONLY))]
    #[case::rrw_then_rro("rrw,rro", rec(attr::RDONLY, 0))]
    #[case::rnosuid("rnosuid", rec(attr::NOSUID, 0))]
    #[case::rsuid("rsuid", rec(0, attr::NOSUID))]
    #[case::rnodev("rnodev", rec(attr::NODEV, 0))]
    #[case::rdev("rdev", rec(0, attr::NODEV))]
    #[case::rnoexec("rnoexec", rec(attr::NOEXEC, 0))]
    #[case::rexec("rexec", rec(0, attr::NOEXEC))]
    #[case::rnodiratime("rnodiratime", rec(attr::NODIRATIME, 0))]
    #[case::rdiratime("rdiratime", rec(0, attr::NODIRATIME))]
    #[case::rnosymfollow("rnosymfollow", rec(attr::NOSYMFOLLOW, 0))]
    #[case::rsymfollow("rsymfollow", rec(0, attr::NOSYMFOLLOW))]
    // An atime mode clears the whole atime mask and sets one mode.
    #[case::rnoatime("rnoatime", rec(attr::NOATIME, attr::ATIME))]
    #[case::rstrictatime("rstrictatime", rec(attr::STRICTATIME, attr::ATIME))]
    #[case::rrelatime("rrelatime", rec(attr::RELATIME, attr::ATIME))]
    #[case::ratime_is_the_default_mode("rnoatime,ratime", rec(attr::RELATIME, attr::ATIME))]
    #[case::last_atime_mode_wins("rnoatime,rstrictatime", rec(attr::STRICTATIME, attr::ATIME))]
    #[case::several("rro,rnosuid,rnodev,rnoexec", rec(attr::RDONLY | attr::NOSUID | attr::NODEV | attr::NOEXEC, 0))]
    fn recursive_options(#[case] options: &str, #[case] expected: Option<RecursiveAttr>) {
        let parsed = parse(options);
        assert_eq!(parsed.recursive, expected);
        // Never reaches the filesystem, nor the mount(2) flags.
        assert_eq!(parsed.data, "");
        assert_eq!(parsed.flags - REC, NONE);
    }

    #[rstest]
    #[case::idmap("idmap")]
    #[case::ridmap("rbind,ridmap")]
    fn id_mapped_mounts_are_refused(#[case] options: &str) {
        let options: Vec<String> = options.split(',').map(str::to_owned).collect();
        let err = parse_mount_options(&options).expect_err("refused");
        assert!(err.option.ends_with("idmap"));
        assert!(err.to_string().contains("are not implemented"), "{err}");
    }
}
