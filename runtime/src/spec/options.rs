//! fstab-style mount options (`mounts[].options`) → mount(2) flags, propagation and data.

use nix::mount::MsFlags;

/// What a list of mount options asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags for mount(2); later options override earlier ones (`ro,rw` is read-write).
    pub flags: MsFlags,
    /// Propagation changes, in order, each applied by its own mount(2) call after the mount.
    pub propagation: Vec<MsFlags>,
    /// Filesystem-specific options, passed on as mount(2)'s data.
    pub data: String,
    /// `bind` or `rbind` (the latter also sets MS_REC).
    pub bind: bool,
}

/// What one option means. Recursive attributes (`rro`, `rnosuid`, … applied with
/// mount_setattr(2)) would be one more kind here; until then they are filesystem data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Sets (`true`) or clears a mount(2) flag.
    Flag(bool, MsFlags),
    /// A bind mount, recursive or not.
    Bind { recursive: bool },
    /// A propagation type, possibly with MS_REC.
    Propagation(MsFlags),
    /// Anything else: passed to the filesystem.
    Data,
}

fn kind(option: &str) -> Kind {
    use Kind::Flag;
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
        _ => Kind::Data,
    }
}

/// Splits mount options into flags, propagation changes, filesystem data and whether it is a bind.
pub fn parse_mount_options(options: &[String]) -> MountOptions {
    let mut parsed = MountOptions {
        flags: MsFlags::empty(),
        propagation: Vec::new(),
        data: String::new(),
        bind: false,
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
            Kind::Data => data.push(option),
        }
    }
    parsed.data = data.join(",");
    parsed
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
        parse_mount_options(&options)
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
    // Recursive attributes are not applied yet: they reach the filesystem as data, as before.
    #[case::rro_is_data("rro", NONE, "rro")]
    #[case::rnosuid_is_data("rbind,rnosuid", REC, "rnosuid")]
    #[case::rnoexec_is_data("rnoexec,ro", MsFlags::MS_RDONLY, "rnoexec")]
    fn data_options(#[case] options: &str, #[case] flags: MsFlags, #[case] data: &str) {
        let parsed = parse(options);
        assert_eq!(parsed.flags, flags);
        assert_eq!(parsed.data, data);
    }
}
