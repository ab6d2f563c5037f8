//! The architectures a filter can name: their audit identity (`seccomp_data.arch`), their argument
//! width, and their syscall tables (name → number).
//!
//! Tables come from the `syscalls` crate (generated from the kernel's tables). x32 has no table of
//! its own there: it is derived from x86_64's the way the kernel's `syscall_64.tbl` defines it
//! (the `common` entries keep their number, the `64`-only entries are replaced by the x32 ones
//! numbered 512–547, and every x32 number carries `__X32_SYSCALL_BIT`). ARM's private syscalls
//! (`__ARM_NR_BASE + n`) are added to the ARM table, as libseccomp has them.

use std::collections::HashMap;
use std::sync::LazyLock;

use oci_spec::runtime::Arch;

/// `__X32_SYSCALL_BIT`: set in `seccomp_data.nr` for syscalls made through the x32 ABI.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// An architecture palisade-runtime compiles filters for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScmpArch {
    X86_64,
    X86,
    X32,
    Aarch64,
    Arm,
    Riscv64,
}

impl ScmpArch {
    /// Every supported architecture, for messages.
    pub const ALL: [ScmpArch; 6] = [
        ScmpArch::X86_64,
        ScmpArch::X86,
        ScmpArch::X32,
        ScmpArch::Aarch64,
        ScmpArch::Arm,
        ScmpArch::Riscv64,
    ];

    /// The architecture this runtime was built for, if palisade-runtime has its table.
    pub fn native() -> Option<Self> {
        if cfg!(target_arch = "x86_64") {
            Some(ScmpArch::X86_64)
        } else if cfg!(target_arch = "x86") {
            Some(ScmpArch::X86)
        } else if cfg!(target_arch = "aarch64") {
            Some(ScmpArch::Aarch64)
        } else if cfg!(target_arch = "arm") {
            Some(ScmpArch::Arm)
        } else if cfg!(target_arch = "riscv64") {
            Some(ScmpArch::Riscv64)
        } else {
            None
        }
    }

    /// Maps a config architecture; `None` for one palisade-runtime has no table for.
    /// `SCMP_ARCH_NATIVE` must be resolved by the caller.
    pub fn from_oci(arch: Arch) -> Option<Self> {
        match arch {
            Arch::ScmpArchX86_64 => Some(ScmpArch::X86_64),
            Arch::ScmpArchX86 => Some(ScmpArch::X86),
            Arch::ScmpArchX32 => Some(ScmpArch::X32),
            Arch::ScmpArchAarch64 => Some(ScmpArch::Aarch64),
            Arch::ScmpArchArm => Some(ScmpArch::Arm),
            Arch::ScmpArchRiscv64 => Some(ScmpArch::Riscv64),
            _ => None,
        }
    }

    /// The config's name of this architecture.
    pub fn to_oci(self) -> Arch {
        match self {
            ScmpArch::X86_64 => Arch::ScmpArchX86_64,
            ScmpArch::X86 => Arch::ScmpArchX86,
            ScmpArch::X32 => Arch::ScmpArchX32,
            ScmpArch::Aarch64 => Arch::ScmpArchAarch64,
            ScmpArch::Arm => Arch::ScmpArchArm,
            ScmpArch::Riscv64 => Arch::ScmpArchRiscv64,
        }
    }

    /// The config spelling, for messages.
    pub fn name(self) -> &'static str {
        match self {
            ScmpArch::X86_64 => "SCMP_ARCH_X86_64",
            ScmpArch::X86 => "SCMP_ARCH_X86",
            ScmpArch::X32 => "SCMP_ARCH_X32",
            ScmpArch::Aarch64 => "SCMP_ARCH_AARCH64",
            ScmpArch::Arm => "SCMP_ARCH_ARM",
            ScmpArch::Riscv64 => "SCMP_ARCH_RISCV64",
        }
    }

    /// `AUDIT_ARCH_*`, the value the kernel puts in `seccomp_data.arch`. x32 shares x86_64's.
    pub const fn audit(self) -> u32 {
        match self {
            ScmpArch::X86_64 | ScmpArch::X32 => 0xC000_003E,
            ScmpArch::X86 => 0x4000_0003,
            ScmpArch::Aarch64 => 0xC000_00B7,
            ScmpArch::Arm => 0x4000_0028,
            ScmpArch::Riscv64 => 0xC000_00F3,
        }
    }

    /// Whether syscall arguments are 32 bits wide: libseccomp then compares only the low word,
    /// with the rule's values truncated to 32 bits.
    pub const fn is_32bit(self) -> bool {
        matches!(self, ScmpArch::X86 | ScmpArch::X32 | ScmpArch::Arm)
    }

    /// The syscall number of `name` on this architecture (as it appears in `seccomp_data.nr`).
    pub fn resolve(self, name: &str) -> Option<u32> {
        match self {
            ScmpArch::X86_64 => X86_64.get(name).copied(),
            ScmpArch::X86 => X86.get(name).copied(),
            ScmpArch::X32 => X32.get(name).copied(),
            ScmpArch::Aarch64 => AARCH64.get(name).copied(),
            ScmpArch::Arm => ARM.get(name).copied(),
            ScmpArch::Riscv64 => RISCV64.get(name).copied(),
        }
    }

    /// For a socket or SysV IPC call that this architecture also reaches through a multiplexer
    /// (x86's `socketcall(2)` and `ipc(2)`): the multiplexer's number and the call's number in
    /// its first argument. libseccomp adds a rule on the multiplexer for each such name.
    pub fn multiplexed(self, name: &str) -> Option<(u32, u32)> {
        match self {
            ScmpArch::X86 => X86_MULTIPLEXED.get(name).copied(),
            _ => None,
        }
    }
}

/// x86's multiplexed calls: name → (multiplexer, call number in argument 0). SYS_* from
/// include/uapi/linux/net.h for `socketcall(2)`, the call numbers of include/uapi/linux/ipc.h for
/// `ipc(2)`.
static X86_MULTIPLEXED: LazyLock<HashMap<&'static str, (u32, u32)>> = LazyLock::new(|| {
    const SOCKETCALL: u32 = 102;
    const IPC: u32 = 117;
    const SOCKET_CALLS: [&str; 20] = [
        "socket",
        "bind",
        "connect",
        "listen",
        "accept",
        "getsockname",
        "getpeername",
        "socketpair",
        "send",
        "recv",
        "sendto",
        "recvfrom",
        "shutdown",
        "setsockopt",
        "getsockopt",
        "sendmsg",
        "recvmsg",
        "accept4",
        "recvmmsg",
        "sendmmsg",
    ];
    const IPC_CALLS: [(&str, u32); 12] = [
        ("semop", 1),
        ("semget", 2),
        ("semctl", 3),
        ("semtimedop", 4),
        ("msgsnd", 11),
        ("msgrcv", 12),
        ("msgget", 13),
        ("msgctl", 14),
        ("shmat", 21),
        ("shmdt", 22),
        ("shmget", 23),
        ("shmctl", 24),
    ];
    (1..)
        .zip(SOCKET_CALLS)
        .map(|(call, name)| (name, (SOCKETCALL, call)))
        .chain(IPC_CALLS.map(|(name, call)| (name, (IPC, call))))
        .collect()
});

type Table = HashMap<&'static str, u32>;

// Built once per process on first use: a hash lookup per name keeps compiling a 400-syscall
// profile for three architectures cheap (the crate's `FromStr` is one long string match).
macro_rules! table {
    ($module:ident) => {{
        use syscalls::$module::Sysno;
        let (first, last) = (Sysno::first().id(), Sysno::last().id());
        (first..=last)
            .filter_map(|id| Sysno::new(usize::try_from(id).ok()?))
            .filter_map(|s| Some((s.name(), u32::try_from(s.id()).ok()?)))
            .collect::<Table>()
    }};
}

static X86_64: LazyLock<Table> = LazyLock::new(|| table!(x86_64));
static X86: LazyLock<Table> = LazyLock::new(|| table!(x86));
static AARCH64: LazyLock<Table> = LazyLock::new(|| table!(aarch64));
static RISCV64: LazyLock<Table> = LazyLock::new(|| table!(riscv64));
static ARM: LazyLock<Table> = LazyLock::new(arm_table);
static X32: LazyLock<Table> = LazyLock::new(|| x32_table(&X86_64));

fn arm_table() -> Table {
    // __ARM_NR_BASE (0x0f0000) + n, from arch/arm/include/uapi/asm/unistd.h.
    const PRIVATE: [(&str, u32); 6] = [
        ("breakpoint", 0x000f_0001),
        ("cacheflush", 0x000f_0002),
        ("usr26", 0x000f_0003),
        ("usr32", 0x000f_0004),
        ("set_tls", 0x000f_0005),
        ("get_tls", 0x000f_0006),
    ];
    let mut table = table!(arm);
    table.extend(PRIVATE);
    table
}

/// Builds the tables a filter for x86_64, x86 and x32 needs, as the first `plan` of a process
/// does (for measuring that one-time cost).
#[cfg(test)]
pub fn build_x86_tables() -> usize {
    let x86_64 = table!(x86_64);
    let x86 = table!(x86);
    let x32 = x32_table(&x86_64);
    x86_64.len() + x86.len() + x32.len()
}

/// x86_64 syscalls whose x32 entry point has its own number (abi `x32` in `syscall_64.tbl`).
const X32_RENUMBERED: [(&str, u32); 36] = [
    ("rt_sigaction", 512),
    ("rt_sigreturn", 513),
    ("ioctl", 514),
    ("readv", 515),
    ("writev", 516),
    ("recvfrom", 517),
    ("sendmsg", 518),
    ("recvmsg", 519),
    ("execve", 520),
    ("ptrace", 521),
    ("rt_sigpending", 522),
    ("rt_sigtimedwait", 523),
    ("rt_sigqueueinfo", 524),
    ("sigaltstack", 525),
    ("timer_create", 526),
    ("mq_notify", 527),
    ("kexec_load", 528),
    ("waitid", 529),
    ("set_robust_list", 530),
    ("get_robust_list", 531),
    ("vmsplice", 532),
    ("move_pages", 533),
    ("preadv", 534),
    ("pwritev", 535),
    ("rt_tgsigqueueinfo", 536),
    ("recvmmsg", 537),
    ("sendmmsg", 538),
    ("process_vm_readv", 539),
    ("process_vm_writev", 540),
    ("setsockopt", 541),
    ("getsockopt", 542),
    ("io_setup", 543),
    ("io_submit", 544),
    ("execveat", 545),
    ("preadv2", 546),
    ("pwritev2", 547),
];

/// x86_64 syscalls of abi `64` that x32 does not have at all.
const X32_ABSENT: [&str; 11] = [
    "uselib",
    "_sysctl",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "nfsservctl",
    "set_thread_area",
    "get_thread_area",
    "epoll_ctl_old",
    "epoll_wait_old",
    "vserver",
];

fn x32_table(x86_64: &Table) -> Table {
    let mut table: Table = x86_64
        .iter()
        .filter(|(name, _)| !X32_ABSENT.contains(name))
        .map(|(&name, &nr)| (name, nr))
        .collect();
    table.extend(X32_RENUMBERED);
    table.values_mut().for_each(|nr| *nr |= X32_SYSCALL_BIT);
    table
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::x86_64_read(ScmpArch::X86_64, "read", Some(0))]
    #[case::x86_64_last_entry(ScmpArch::X86_64, "file_setattr", Some(469))]
    #[case::x86_64_no_socketcall(ScmpArch::X86_64, "socketcall", None)]
    #[case::x86_socketcall(ScmpArch::X86, "socketcall", Some(102))]
    #[case::x86_getcwd(ScmpArch::X86, "getcwd", Some(183))]
    #[case::x32_common(ScmpArch::X32, "read", Some(X32_SYSCALL_BIT))]
    #[case::x32_renumbered(ScmpArch::X32, "ioctl", Some(X32_SYSCALL_BIT | 514))]
    #[case::x32_absent(ScmpArch::X32, "uselib", None)]
    #[case::aarch64_no_open(ScmpArch::Aarch64, "open", None)]
    #[case::aarch64_openat(ScmpArch::Aarch64, "openat", Some(56))]
    #[case::arm_private(ScmpArch::Arm, "cacheflush", Some(0x000f_0002))]
    #[case::unknown(ScmpArch::X86_64, "no_such_syscall", None)]
    fn resolves(#[case] arch: ScmpArch, #[case] name: &str, #[case] nr: Option<u32>) {
        assert_eq!(arch.resolve(name), nr);
    }

    #[rstest]
    #[case::socket(ScmpArch::X86, "socket", Some((102, 1)))]
    #[case::recv_only_muxed(ScmpArch::X86, "recv", Some((102, 10)))]
    #[case::sendmmsg(ScmpArch::X86, "sendmmsg", Some((102, 20)))]
    #[case::shmget(ScmpArch::X86, "shmget", Some((117, 23)))]
    #[case::not_a_socket_call(ScmpArch::X86, "getcwd", None)]
    #[case::x86_64_has_no_multiplexer(ScmpArch::X86_64, "socket", None)]
    fn multiplexed(#[case] arch: ScmpArch, #[case] name: &str, #[case] mux: Option<(u32, u32)>) {
        assert_eq!(arch.multiplexed(name), mux);
    }
}
