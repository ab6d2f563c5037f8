//! The device cgroup: which device nodes the container may create (mknod) and open.
//!
//! The config's rules (`linux.resources.devices`) are applied in order on top of deny-all, then
//! the runtime's default devices are allowed (as runc does: the defaults come after the config's
//! rules, so a config that starts with "deny all" still keeps /dev/null). The result is kept the
//! way the v1 devices controller keeps it ([`DeviceRules`]: a default behaviour and exceptions),
//! so that both cgroup versions enforce exactly the same thing:
//! - v1: written to `devices.deny`/`devices.allow` ([`DeviceRules::v1_writes`]);
//! - v2: a `BPF_PROG_TYPE_CGROUP_DEVICE` program generated from it ([`DeviceRules::program`]),
//!   attached to the container's cgroup.

use std::fmt;

/// Access bits, with the values the BPF context uses (`BPF_DEVCG_ACC_*`).
pub const ACC_MKNOD: u8 = 1;
pub const ACC_READ: u8 = 2;
pub const ACC_WRITE: u8 = 4;

/// Device types of the BPF context (`BPF_DEVCG_DEV_*`).
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevKind {
    /// Every device (`a`).
    All,
    Char,
    Block,
}

/// One rule, as config.json and the v1 controller spell it (`c 1:3 rwm`); `None` is `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    pub kind: DevKind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u8,
}

impl DeviceRule {
    pub const RWM: u8 = ACC_READ | ACC_WRITE | ACC_MKNOD;

    const fn allow(kind: DevKind, major: Option<u32>, minor: Option<u32>, access: u8) -> Self {
        Self {
            allow: true,
            kind,
            major,
            minor,
            access,
        }
    }

    /// `rwm`-style access; `None` unless it is a non-empty combination of r, w and m.
    pub fn parse_access(text: &str) -> Option<u8> {
        let mut access = 0;
        for c in text.chars() {
            access |= match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => return None,
            };
        }
        (access != 0).then_some(access)
    }

    /// Whether the rule names this device (the kind, the numbers; not the access).
    #[cfg(test)]
    fn names(&self, kind: DevKind, major: u32, minor: u32) -> bool {
        (self.kind == DevKind::All || self.kind == kind)
            && self.major.is_none_or(|m| m == major)
            && self.minor.is_none_or(|m| m == minor)
    }
}

impl fmt::Display for DeviceRule {
    /// As the v1 controller reads it: `c 1:3 rwm`, `a *:* rwm`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            DevKind::All => 'a',
            DevKind::Char => 'c',
            DevKind::Block => 'b',
        };
        let number = |n: Option<u32>| n.map_or("*".to_owned(), |n| n.to_string());
        let mut access = String::new();
        for (bit, c) in [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')] {
            if self.access & bit != 0 {
                access.push(c);
            }
        }
        write!(
            f,
            "{kind} {}:{} {access}",
            number(self.major),
            number(self.minor)
        )
    }
}

const C: DevKind = DevKind::Char;

/// What the runtime always allows, after the config's rules (runc's list, without tun): mknod of
/// any node (so `linux.devices` can be created whatever the rules; opening is still governed by
/// them), and the spec's default devices: null, zero, full, random, urandom, tty, console, ptmx
/// and the pty slaves (136:*).
pub const DEFAULT_ALLOWED: &[DeviceRule] = &[
    DeviceRule::allow(DevKind::Char, None, None, ACC_MKNOD),
    DeviceRule::allow(DevKind::Block, None, None, ACC_MKNOD),
    DeviceRule::allow(C, Some(1), Some(3), DeviceRule::RWM),
    DeviceRule::allow(C, Some(1), Some(5), DeviceRule::RWM),
    DeviceRule::allow(C, Some(1), Some(7), DeviceRule::RWM),
    DeviceRule::allow(C, Some(1), Some(8), DeviceRule::RWM),
    DeviceRule::allow(C, Some(1), Some(9), DeviceRule::RWM),
    DeviceRule::allow(C, Some(5), Some(0), DeviceRule::RWM),
    DeviceRule::allow(C, Some(5), Some(1), DeviceRule::RWM),
    DeviceRule::allow(C, Some(5), Some(2), DeviceRule::RWM),
    DeviceRule::allow(C, Some(136), None, DeviceRule::RWM),
];

/// The state of a v1 devices cgroup: a default behaviour and the exceptions to it (each of the
/// opposite kind). This is what a list of rules leaves behind, whatever order it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRules {
    pub default_allow: bool,
    pub exceptions: Vec<DeviceRule>,
}

impl Default for DeviceRules {
    /// Deny-all plus the defaults: what a config without device rules gets.
    fn default() -> Self {
        Self::with_defaults([])
    }
}

impl DeviceRules {
    /// Deny-all, then `rules` in order, then [`DEFAULT_ALLOWED`].
    pub fn with_defaults(rules: impl IntoIterator<Item = DeviceRule>) -> Self {
        let mut state = Self {
            default_allow: false,
            exceptions: Vec::new(),
        };
        for rule in rules.into_iter().chain(DEFAULT_ALLOWED.iter().copied()) {
            state.apply(rule);
        }
        state
    }

    /// One rule, as the v1 controller takes it (the kernel's devcgroup_update_access): a rule
    /// for all devices resets the behaviour and drops the exceptions; a rule that agrees with
    /// the behaviour takes its access away from the exception for the same device (the same
    /// type and numbers, wildcards included); any other rule adds its access to that exception.
    fn apply(&mut self, rule: DeviceRule) {
        if rule.kind == DevKind::All {
            self.default_allow = rule.allow;
            self.exceptions.clear();
            return;
        }
        let same =
            |e: &DeviceRule| e.kind == rule.kind && e.major == rule.major && e.minor == rule.minor;
        if rule.allow == self.default_allow {
            for e in self.exceptions.iter_mut().filter(|e| same(e)) {
                e.access &= !rule.access;
            }
            self.exceptions.retain(|e| e.access != 0);
        } else if let Some(e) = self.exceptions.iter_mut().find(|e| same(e)) {
            e.access |= rule.access;
        } else {
            self.exceptions.push(rule);
        }
    }

    /// Whether `access` to a device is permitted (the kernel's v1 check): with a deny
    /// behaviour, one allowing exception must cover all of the access; with an allow behaviour,
    /// no denying exception may share any of it. The reference the tests hold the v2 program
    /// to; at run time the kernel does this check.
    #[cfg(test)]
    pub fn permits(&self, kind: DevKind, major: u32, minor: u32, access: u8) -> bool {
        let named = self
            .exceptions
            .iter()
            .filter(|e| e.names(kind, major, minor));
        if self.default_allow {
            !named.into_iter().any(|e| e.access & access != 0)
        } else {
            named.into_iter().any(|e| access & !e.access == 0)
        }
    }

    /// What to write to a fresh v1 devices cgroup, in order: (file, line).
    pub fn v1_writes(&self) -> Vec<(&'static str, String)> {
        let (reset, exception) = if self.default_allow {
            ("devices.allow", "devices.deny")
        } else {
            ("devices.deny", "devices.allow")
        };
        std::iter::once((reset, "a".to_owned()))
            .chain(self.exceptions.iter().map(|e| (exception, e.to_string())))
            .collect()
    }

    /// A cgroup-device BPF program enforcing the same as [`Self::permits`].
    ///
    /// r2 = device type, r3 = access, r4 = major, r5 = minor; then one block per exception that
    /// returns its verdict if it matches and otherwise jumps to the next block; the default
    /// behaviour last. Numbers fit in an immediate: majors are 12 bits, minors 20.
    pub fn program(&self) -> Vec<Insn> {
        use Insn as I;
        let mut prog = vec![
            I::ldx_w(R2, R1, 0),
            I::mov32_reg(R3, R2),
            I::rsh32_imm(R3, 16),
            I::and32_imm(R2, 0xffff),
            I::ldx_w(R4, R1, 4),
            I::ldx_w(R5, R1, 8),
        ];
        for e in &self.exceptions {
            let mut block = Vec::new();
            match e.kind {
                DevKind::Char => block.push(I::jne_imm(R2, DEV_CHAR)),
                DevKind::Block => block.push(I::jne_imm(R2, DEV_BLOCK)),
                DevKind::All => {}
            }
            block.push(I::mov32_reg(R1, R3));
            if e.allow {
                // Every requested bit must be in the exception: (access & !rule) == 0.
                block.push(I::and32_imm(R1, !i32::from(e.access)));
                block.push(I::jne_imm(R1, 0));
            } else {
                // Any requested bit in the exception denies: (access & rule) != 0.
                block.push(I::and32_imm(R1, i32::from(e.access)));
                block.push(I::jeq_imm(R1, 0));
            }
            if let Some(major) = e.major {
                block.push(I::jne_imm(R4, major as i32));
            }
            if let Some(minor) = e.minor {
                block.push(I::jne_imm(R5, minor as i32));
            }
            block.push(I::mov64_imm(R0, i32::from(e.allow)));
            block.push(I::exit());
            // Every jump of the block goes to the instruction after it.
            let len = block.len();
            for (i, insn) in block.iter_mut().enumerate() {
                if insn.is_jump() {
                    insn.off = (len - i - 1) as i16;
                }
            }
            prog.extend(block);
        }
        prog.push(I::mov64_imm(R0, i32::from(self.default_allow)));
        prog.push(I::exit());
        prog
    }
}

/// BPF registers.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

/// One BPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

// Opcodes (linux/bpf_common.h, linux/bpf.h): class | operation | source.
// BPF_W is 0.
const LDX_W_MEM: u8 = 0x01 | 0x60;
const ALU32_MOV_X: u8 = 0x04 | 0xb0 | 0x08;
const ALU32_RSH_K: u8 = 0x04 | 0x70;
const ALU32_AND_K: u8 = 0x04 | 0x50;
const ALU64_MOV_K: u8 = 0x07 | 0xb0;
const JMP_JEQ_K: u8 = 0x05 | 0x10;
const JMP_JNE_K: u8 = 0x05 | 0x50;
const JMP_EXIT: u8 = 0x05 | 0x90;

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Self {
            code,
            dst,
            src,
            off,
            imm,
        }
    }
    fn ldx_w(dst: u8, src: u8, off: i16) -> Self {
        Self::new(LDX_W_MEM, dst, src, off, 0)
    }
    fn mov32_reg(dst: u8, src: u8) -> Self {
        Self::new(ALU32_MOV_X, dst, src, 0, 0)
    }
    fn rsh32_imm(dst: u8, imm: i32) -> Self {
        Self::new(ALU32_RSH_K, dst, 0, 0, imm)
    }
    fn and32_imm(dst: u8, imm: i32) -> Self {
        Self::new(ALU32_AND_K, dst, 0, 0, imm)
    }
    fn mov64_imm(dst: u8, imm: i32) -> Self {
        Self::new(ALU64_MOV_K, dst, 0, 0, imm)
    }
    /// A jump whose offset the block fills in.
    fn jne_imm(dst: u8, imm: i32) -> Self {
        Self::new(JMP_JNE_K, dst, 0, 0, imm)
    }
    fn jeq_imm(dst: u8, imm: i32) -> Self {
        Self::new(JMP_JEQ_K, dst, 0, 0, imm)
    }
    fn exit() -> Self {
        Self::new(JMP_EXIT, 0, 0, 0, 0)
    }

    fn is_jump(&self) -> bool {
        matches!(self.code, JMP_JEQ_K | JMP_JNE_K)
    }

    /// The kernel's 8-byte encoding (little-endian, as on every target this runtime builds for).
    pub fn encode(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = (self.dst & 0x0f) | (self.src << 4);
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

/// A program's instructions as the kernel reads them.
pub fn encode(prog: &[Insn]) -> Vec<u8> {
    prog.iter().flat_map(Insn::encode).collect()
}

/// Loads the program for `rules` and attaches it to the cgroup directory `dir` (cgroup v2).
///
/// Attached with BPF_F_ALLOW_MULTI: every attached program must allow an access, so this can
/// only narrow what the cgroup's ancestors' programs allow. The attachment keeps the program
/// alive after its descriptor is closed, until the cgroup is removed.
pub fn attach(dir: &std::path::Path, rules: &DeviceRules) -> Result<(), super::CgroupError> {
    use std::os::fd::AsFd;

    use super::CgroupError;
    use crate::sys;

    let insns = encode(&rules.program());
    let program = match sys::bpf_load_cgroup_device(&insns, None) {
        Ok(fd) => fd,
        Err(_) => {
            // Again with the verifier's log, for the error message.
            let mut log = vec![0u8; 64 * 1024];
            let result = sys::bpf_load_cgroup_device(&insns, Some(&mut log));
            let text = String::from_utf8_lossy(&log);
            let text = text.trim_end_matches('\0').trim();
            match result {
                Ok(fd) => fd,
                Err(source) => {
                    return Err(CgroupError::Bpf {
                        what: "cannot load the device program (bpf BPF_PROG_LOAD)",
                        source,
                        log: if text.is_empty() {
                            String::new()
                        } else {
                            format!("\n{text}")
                        },
                    });
                }
            }
        }
    };
    let cgroup = nix::fcntl::open(
        dir,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|source| CgroupError::Bpf {
        what: "cannot open the container's cgroup",
        source,
        log: String::new(),
    })?;
    sys::bpf_attach_cgroup_device(cgroup.as_fd(), program.as_fd()).map_err(|source| {
        CgroupError::Bpf {
            what: "cannot attach the device program to the container's cgroup (bpf BPF_PROG_ATTACH)",
            source,
            log: String::new(),
        }
    })
}

#[cfg(test)]
mod tests;
