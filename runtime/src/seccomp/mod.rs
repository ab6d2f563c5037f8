//! seccomp: compiles `linux.seccomp` into a classic-BPF filter and loads it.
//!
//! # API
//!
//! ```text
//! // create, while planning (before any side effect):
//! let plan = seccomp::plan(linux.seccomp())?;     // pure: validate + compile
//! for name in plan.skipped_syscalls() { log it }  // names no architecture of the filter knows
//! // create, on the host side, before forking: listenerPath is a host path, and the connection
//! // (close-on-exec) reaches the init through fork
//! let conn = seccomp::connect_listener(&plan)?;    // Some(..) iff a rule uses SCMP_ACT_NOTIFY
//! // init, after capabilities are set, right before exec; the init needs no_new_privs
//! // (process.noNewPrivileges) or CAP_SYS_ADMIN in its effective set
//! let listener = seccomp::load(&plan)?;            // seccomp(2); Some(fd) iff NOTIFY
//! if let (Some(conn), Some(fd)) = (conn, &listener) {
//!     // pid: the container process as the runtime sees it; state: the OCI state, "creating"
//!     seccomp::send_listener_fd(conn, &plan, fd.as_fd(), host_pid, &state)?;
//! }
//! drop(listener);                                  // the agent has its own copy
//! // execve
//! ```
//!
//! - [`plan`] validates every field, naming it in the error (`linux.seccomp.syscalls[3].args[0].index:
//!   …`), and compiles the filter.
//! - [`connect_listener`] must run before the filter is loaded (and, for the path to resolve, outside
//!   the container's mount namespace). After loading, [`send_listener_fd`] needs only `sendmsg`
//!   and `close`; this is why `plan` refuses `SCMP_ACT_NOTIFY` for `sendmsg` (runc likewise refuses
//!   it for `write`, which it needs after loading) and as the default action. If the init does not
//!   know its host pid or state, it can instead hand the listener to `create` (e.g. by reporting its
//!   number for `pidfd_getfd`), which then calls [`send_listener_fd`] itself.
//! - [`load`] installs the filter on the calling thread (all threads with `SECCOMP_FILTER_FLAG_TSYNC`)
//!   and returns the notify listener fd when a rule uses `SCMP_ACT_NOTIFY`.
//!
//! # Why an own BPF generator
//!
//! A small own generator (with the `syscalls` crate's per-architecture tables): seccompiler has no
//! `SECCOMP_RET_USER_NOTIF`, only one architecture per filter and only the TSYNC flag, and
//! libseccomp would need `libseccomp.a` at build time, which a machine with only Rust lacks.
//!
//! # Semantics (libseccomp's, as runc and crun use it)
//!
//! - Actions: `SCMP_ACT_KILL` and `SCMP_ACT_KILL_THREAD` kill the thread, `KILL_PROCESS` the process,
//!   `TRAP` sends SIGSYS, `ERRNO` fails with `errnoRet`, `TRACE` notifies a ptracer with `errnoRet` as
//!   the message, `LOG` allows and logs, `ALLOW` allows, `NOTIFY` asks the agent. `errnoRet`
//!   (`defaultErrnoRet` for the default action) defaults to EPERM and is refused on any other action
//!   (the spec's MUST); it must fit `SECCOMP_RET_DATA` (16 bits; the kernel caps errnos at 4095).
//! - Architectures: the native one is always in the filter, the listed ones follow in order. A
//!   syscall from an architecture not in the filter gets libseccomp's default bad-arch action,
//!   which runc keeps: kill the thread. x86_64 and x32 share `AUDIT_ARCH_X86_64`; x32 numbers carry
//!   `__X32_SYSCALL_BIT`. With x86_64 but not x32 in the filter an x32 syscall is a bad arch (but
//!   -1, which tracers use to skip a syscall, goes to the rules); with x32 but not x86_64, an x86_64
//!   syscall is. Tables exist for x86_64, x86, x32, aarch64, arm and riscv64; any other listed
//!   architecture is refused by name.
//! - Names: resolved per architecture; a name missing on one architecture (`socketcall` on x86_64)
//!   gets no rule there. A name no architecture of the filter knows is skipped, as runc and crun
//!   skip unknown syscalls. On x86 a socket or SysV IPC name (`socket`, `shmget`, …) also gets a
//!   rule on its multiplexer, `socketcall`/`ipc` with argument 0 equal to the call (the rule's own
//!   test of argument 0, if any, is replaced), as libseccomp does.
//! - A rule whose action equals the default action is dropped (runc and crun do; it changes nothing).
//! - Arguments: `index` 0–5; `EQ NE LT LE GE GT` compare the 64-bit value (two 32-bit words, high
//!   first); `MASKED_EQ` is `(arg & value) == (valueTwo & value)` (libseccomp masks both sides). On
//!   32-bit ABIs (x86, x32, arm) only the low word exists and values are truncated to 32 bits.
//!   `valueTwo` other than 0 is refused for operators that do not use it. Arguments of one entry
//!   are ANDed, except that when an index repeats each argument becomes a rule of its own (ORed):
//!   libseccomp cannot AND two tests of one argument and runc and crun both do this.
//! - Order, per syscall and architecture: the first unconditional rule (in config order) decides
//!   and every argument rule of that syscall is dropped (libseccomp replaces a syscall's argument
//!   chains by an unconditional rule and ignores rules added after one). Otherwise the argument
//!   rules are tried in config order (entries, then names within an entry), the first match wins,
//!   and no match gives the default action.
//! - Flags: `TSYNC`, `LOG`, `SPEC_ALLOW`, `WAIT_KILLABLE_RECV` are passed to seccomp(2);
//!   `NEW_LISTENER` is added when a rule uses NOTIFY (with `TSYNC_ESRCH` if TSYNC is set too, as the
//!   kernel requires). `WAIT_KILLABLE_RECV` without a NOTIFY rule is refused (the kernel would).
//! - `listenerPath` is required when a rule uses NOTIFY and ignored otherwise (spec);
//!   `listenerMetadata` without `listenerPath` is refused (spec's MUST NOT).
//! - Unlike runc, no `-ENOSYS` stub is prepended for syscalls newer than the profile: the default
//!   action applies to every syscall not named, as the spec says (crun does the same).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::libc;
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

use crate::sys;

mod arch;
mod bpf;
mod notify;

#[cfg(test)]
mod kernel_tests;
#[cfg(test)]
mod tests;

use arch::ScmpArch;
pub use bpf::SockFilter;
use bpf::{Abi, Body, Cond, Entry, Group, Op, Program, Rule};
pub use notify::{ListenerConnection, connect_listener, send_listener_fd};

const RET_KILL_THREAD: u32 = 0x0000_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_TRAP: u32 = 0x0003_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_USER_NOTIF: u32 = 0x7fc0_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_DATA: u32 = 0x0000_ffff;

/// The syscall the listener fd is sent with after loading (see the module doc).
const SEND_SYSCALL: &str = "sendmsg";

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("linux.seccomp: palisade-runtime has no syscall table for this machine's architecture")]
    UnsupportedMachine,
    #[error("linux.seccomp: {0}")]
    Bpf(#[from] bpf::BpfError),
    #[error("loading the seccomp filter: seccomp(SECCOMP_SET_MODE_FILTER): {source}{}", load_hint(*.source))]
    Load { source: Errno },
    #[error(
        "loading the seccomp filter: thread {0} could not be synchronized (SECCOMP_FILTER_FLAG_TSYNC)"
    )]
    Tsync(libc::c_long),
    #[error("seccomp listener {}: {what}: {source}", .path.display())]
    Listener {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
}

fn load_hint(errno: Errno) -> &'static str {
    match errno {
        Errno::EACCES => " (the process needs no_new_privs or CAP_SYS_ADMIN)",
        Errno::EINVAL => " (a flag or action this kernel does not support?)",
        _ => "",
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> SeccompError {
    SeccompError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Where the notify listener fd goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub path: PathBuf,
    pub metadata: Option<String>,
}

/// A compiled filter, ready for [`load`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeccompPlan {
    filter: Vec<SockFilter>,
    flags: libc::c_ulong,
    listener: Option<Listener>,
    skipped: Vec<String>,
}

impl SeccompPlan {
    /// The BPF program.
    #[cfg(test)]
    pub fn instructions(&self) -> &[SockFilter] {
        &self.filter
    }

    /// `SECCOMP_FILTER_FLAG_*` for seccomp(2).
    #[cfg(test)]
    pub fn flags(&self) -> libc::c_ulong {
        self.flags
    }

    /// Set when a rule uses `SCMP_ACT_NOTIFY`.
    pub fn listener(&self) -> Option<&Listener> {
        self.listener.as_ref()
    }

    /// Syscall names that no architecture of the filter knows, skipped as runc and crun do.
    pub fn skipped_syscalls(&self) -> &[String] {
        &self.skipped
    }
}

/// The architectures a filter can name (those with syscall tables here).
pub fn known_architectures() -> Vec<Arch> {
    ScmpArch::ALL.iter().map(|a| a.to_oci()).collect()
}

/// Validates `linux.seccomp` and compiles it. Pure: no side effect.
pub fn plan(seccomp: &LinuxSeccomp) -> Result<SeccompPlan, SeccompError> {
    let native = ScmpArch::native().ok_or(SeccompError::UnsupportedMachine)?;
    let arches = architectures(seccomp, native)?;
    let default = action(
        seccomp.default_action(),
        seccomp.default_errno_ret(),
        "linux.seccomp.defaultAction",
        "linux.seccomp.defaultErrnoRet",
    )?;
    if default == RET_USER_NOTIF {
        return Err(invalid(
            "linux.seccomp.defaultAction",
            "SCMP_ACT_NOTIFY cannot be the default action (the runtime's own syscalls after \
             loading the filter would wait for an agent that has not been told yet)",
        ));
    }

    let entries = seccomp.syscalls().as_deref().unwrap_or_default();
    let mut rules: Vec<(&[String], Rule)> = Vec::new();
    let mut notify_entry = None;
    for (i, entry) in entries.iter().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        if entry.names().is_empty() {
            return Err(invalid(
                format!("{field}.names"),
                "must contain at least one entry",
            ));
        }
        if let Some(j) = entry.names().iter().position(|n| n.is_empty()) {
            return Err(invalid(format!("{field}.names[{j}]"), "empty syscall name"));
        }
        let act = action(
            entry.action(),
            entry.errno_ret(),
            &format!("{field}.action"),
            &format!("{field}.errnoRet"),
        )?;
        if act == RET_USER_NOTIF {
            notify_entry.get_or_insert(i);
            if entry.names().iter().any(|n| n == SEND_SYSCALL) {
                return Err(invalid(
                    format!("{field}.action"),
                    format!(
                        "SCMP_ACT_NOTIFY cannot be used for {SEND_SYSCALL}: palisade-runtime \
                         sends the listener fd to the agent with it after loading the filter"
                    ),
                ));
            }
        }
        let conds = conditions(entry.args().as_deref().unwrap_or_default(), &field)?;
        if act == default {
            // libseccomp refuses such a rule; runc and crun drop it. It changes nothing.
            continue;
        }
        let mut seen = [false; 6];
        let repeated = conds
            .iter()
            .any(|c| std::mem::replace(&mut seen[usize::from(c.index)], true));
        if repeated {
            for cond in conds {
                rules.push((
                    entry.names(),
                    Rule {
                        conds: vec![cond],
                        action: act,
                    },
                ));
            }
        } else {
            rules.push((entry.names(), Rule { conds, action: act }));
        }
    }

    let flags = flags(seccomp, notify_entry.is_some())?;
    let listener = listener(seccomp, notify_entry)?;
    let (groups, skipped) = groups(&arches, &rules);
    let filter = bpf::generate(&Program {
        default_action: default,
        bad_arch_action: RET_KILL_THREAD,
        groups,
    })?;
    Ok(SeccompPlan {
        filter,
        flags,
        listener,
        skipped,
    })
}

/// Loads the filter. Returns the notify listener when the plan has one.
///
/// The caller must have set no_new_privs or hold CAP_SYS_ADMIN.
pub fn load(plan: &SeccompPlan) -> Result<Option<OwnedFd>, SeccompError> {
    let program: Vec<libc::sock_filter> = plan
        .filter
        .iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect();
    match sys::seccomp_set_mode_filter(plan.flags, &program)
        .map_err(|source| SeccompError::Load { source })?
    {
        sys::SeccompLoaded::Listener(fd) => Ok(Some(fd)),
        sys::SeccompLoaded::Value(0) => Ok(None),
        sys::SeccompLoaded::Value(tid) => Err(SeccompError::Tsync(tid)),
    }
}

fn architectures(seccomp: &LinuxSeccomp, native: ScmpArch) -> Result<Vec<ScmpArch>, SeccompError> {
    let mut arches = vec![native];
    for (i, &a) in seccomp.architectures().iter().flatten().enumerate() {
        let arch = if a == Arch::ScmpArchNative {
            native
        } else {
            ScmpArch::from_oci(a).ok_or_else(|| {
                let known: Vec<&str> = ScmpArch::ALL.iter().map(|a| a.name()).collect();
                invalid(
                    format!("linux.seccomp.architectures[{i}]"),
                    format!(
                        "{a} is not supported by palisade-runtime (it has syscall tables for {})",
                        known.join(", ")
                    ),
                )
            })?
        };
        if !arches.contains(&arch) {
            arches.push(arch);
        }
    }
    Ok(arches)
}

/// The `SECCOMP_RET_*` value of an action.
fn action(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    action_field: &str,
    errno_field: &str,
) -> Result<u32, SeccompError> {
    use LinuxSeccompAction as A;
    let data = match (action, errno_ret) {
        (A::ScmpActErrno | A::ScmpActTrace, None) => Errno::EPERM as u32,
        (A::ScmpActErrno | A::ScmpActTrace, Some(e)) if e <= RET_DATA => e,
        (A::ScmpActErrno | A::ScmpActTrace, Some(e)) => {
            return Err(invalid(
                errno_field,
                format!("{e} does not fit the 16 bits seccomp returns"),
            ));
        }
        (_, Some(_)) => {
            return Err(invalid(
                errno_field,
                format!(
                    "{action} takes no errno (only SCMP_ACT_ERRNO and SCMP_ACT_TRACE do; see \
                     {action_field})"
                ),
            ));
        }
        (_, None) => 0,
    };
    Ok(match action {
        A::ScmpActKill | A::ScmpActKillThread => RET_KILL_THREAD,
        A::ScmpActKillProcess => RET_KILL_PROCESS,
        A::ScmpActTrap => RET_TRAP,
        A::ScmpActErrno => RET_ERRNO | data,
        A::ScmpActTrace => RET_TRACE | data,
        A::ScmpActNotify => RET_USER_NOTIF,
        A::ScmpActLog => RET_LOG,
        A::ScmpActAllow => RET_ALLOW,
    })
}

fn conditions(
    args: &[oci_spec::runtime::LinuxSeccompArg],
    field: &str,
) -> Result<Vec<Cond>, SeccompError> {
    use LinuxSeccompOperator as O;
    args.iter()
        .enumerate()
        .map(|(j, arg)| {
            let field = format!("{field}.args[{j}]");
            let index = u8::try_from(arg.index())
                .ok()
                .filter(|i| *i < 6)
                .ok_or_else(|| {
                    invalid(
                        format!("{field}.index"),
                        format!(
                            "{} is out of range (syscalls have arguments 0 to 5)",
                            arg.index()
                        ),
                    )
                })?;
            // Go-based tools write `"valueTwo": 0` for every operator; only a value that would
            // mean something is refused where the operator ignores it.
            let plain = |op: Op| match arg.value_two().filter(|v| *v != 0) {
                Some(v2) => Err(invalid(
                    format!("{field}.valueTwo"),
                    format!("{v2} given, but {} does not use valueTwo", arg.op()),
                )),
                None => Ok((op, arg.value())),
            };
            let (op, value) = match arg.op() {
                O::ScmpCmpMaskedEq => (
                    Op::MaskedEq { mask: arg.value() },
                    arg.value_two().unwrap_or(0),
                ),
                O::ScmpCmpNe => plain(Op::Ne)?,
                O::ScmpCmpLt => plain(Op::Lt)?,
                O::ScmpCmpLe => plain(Op::Le)?,
                O::ScmpCmpEq => plain(Op::Eq)?,
                O::ScmpCmpGe => plain(Op::Ge)?,
                O::ScmpCmpGt => plain(Op::Gt)?,
            };
            Ok(Cond { index, op, value })
        })
        .collect()
}

fn flags(seccomp: &LinuxSeccomp, notify: bool) -> Result<libc::c_ulong, SeccompError> {
    use LinuxSeccompFilterFlag as F;
    let mut flags = 0;
    for (i, flag) in seccomp.flags().iter().flatten().enumerate() {
        flags |= match flag {
            F::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            F::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            F::SeccompFilterFlagSpecAllow => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            F::SeccompFilterFlagWaitKillableRecv if !notify => {
                return Err(invalid(
                    format!("linux.seccomp.flags[{i}]"),
                    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV needs a rule with SCMP_ACT_NOTIFY \
                     (the kernel accepts it only with a listener)",
                ));
            }
            F::SeccompFilterFlagWaitKillableRecv => libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
        };
    }
    if notify {
        flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
        if flags & libc::SECCOMP_FILTER_FLAG_TSYNC != 0 {
            // The kernel refuses TSYNC with NEW_LISTENER unless TSYNC failures report ESRCH.
            flags |= libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH;
        }
    }
    Ok(flags)
}

fn listener(
    seccomp: &LinuxSeccomp,
    notify_entry: Option<usize>,
) -> Result<Option<Listener>, SeccompError> {
    let path = seccomp.listener_path().as_deref();
    let metadata = seccomp.listener_metadata();
    if metadata.is_some() && path.is_none() {
        return Err(invalid(
            "linux.seccomp.listenerMetadata",
            "set without linux.seccomp.listenerPath",
        ));
    }
    let Some(i) = notify_entry else {
        // The spec: without SCMP_ACT_NOTIFY, listenerPath is ignored.
        return Ok(None);
    };
    let path = path.filter(|p| *p != Path::new("")).ok_or_else(|| {
        invalid(
            "linux.seccomp.listenerPath",
            format!("required because linux.seccomp.syscalls[{i}] uses SCMP_ACT_NOTIFY"),
        )
    })?;
    Ok(Some(Listener {
        path: path.to_path_buf(),
        metadata: metadata.clone(),
    }))
}

/// Resolves the rules per architecture into the generator's groups; also returns the names that
/// no architecture of the filter knows.
fn groups(arches: &[ScmpArch], rules: &[(&[String], Rule)]) -> (Vec<Group>, Vec<String>) {
    // One group per audit architecture, in the order they first appear.
    let mut members: Vec<(u32, Vec<ScmpArch>)> = Vec::new();
    for &arch in arches {
        match members.iter_mut().find(|(audit, _)| *audit == arch.audit()) {
            Some((_, m)) => m.push(arch),
            None => members.push((arch.audit(), vec![arch])),
        }
    }
    // Per group: (number, 32-bit ABI, rule), in config order. Each name is looked up once per
    // architecture: this loop is most of the cost of compiling a large profile.
    let mut hits: Vec<Vec<(u32, bool, RuleRef)>> = vec![Vec::new(); members.len()];
    let mut muxed: Vec<Rule> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    for (r, (names, rule)) in rules.iter().enumerate() {
        for name in names.iter() {
            let mut known = false;
            for ((_, archs), hits) in members.iter().zip(&mut hits) {
                for arch in archs {
                    if let Some((mux, call)) = arch.multiplexed(name) {
                        // libseccomp: the multiplexer with its first argument set to the call
                        // (replacing any test of argument 0), next to the direct syscall.
                        known = true;
                        let mut conds = vec![Cond {
                            index: 0,
                            op: Op::Eq,
                            value: u64::from(call),
                        }];
                        conds.extend(rule.conds.iter().filter(|c| c.index != 0));
                        muxed.push(Rule {
                            conds,
                            action: rule.action,
                        });
                        hits.push((mux, arch.is_32bit(), RuleRef::Muxed(muxed.len() - 1)));
                    }
                    if let Some(nr) = arch.resolve(name) {
                        known = true;
                        hits.push((nr, arch.is_32bit(), RuleRef::Config(r)));
                    }
                }
            }
            if !known && !skipped.contains(name) {
                skipped.push(name.clone());
            }
        }
    }
    let rule = |r: RuleRef| match r {
        RuleRef::Config(i) => &rules[i].1,
        RuleRef::Muxed(i) => &muxed[i],
    };
    let groups = members
        .into_iter()
        .zip(hits)
        .map(|((audit, archs), mut hits)| {
            let has = |a| archs.contains(&a);
            let abi = match (has(ScmpArch::X86_64), has(ScmpArch::X32)) {
                (true, false) => Abi::X86_64Only,
                (false, true) => Abi::X32Only,
                _ => Abi::Whole,
            };
            // A stable sort keeps config order among the rules of one number.
            hits.sort_by_key(|&(nr, _, _)| nr);
            let entries = hits
                .chunk_by(|a, b| a.0 == b.0)
                .map(|chunk| {
                    let (nr, narrow, _) = chunk[0];
                    let rules = chunk.iter().map(|&(_, _, r)| rule(r));
                    Entry {
                        nr,
                        narrow,
                        body: body(rules, narrow),
                    }
                })
                .collect();
            Group {
                audit,
                abi,
                entries,
            }
        })
        .collect();
    (groups, skipped)
}

#[derive(Clone, Copy, Debug)]
enum RuleRef {
    Config(usize),
    Muxed(usize),
}

/// libseccomp's merge for one syscall: the first unconditional rule wins over everything;
/// otherwise the argument rules in order.
fn body<'a>(rules: impl Iterator<Item = &'a Rule> + Clone, narrow: bool) -> Body {
    let always_true = |c: &Cond| match c.op {
        // libseccomp emits no test for a comparison that cannot fail.
        Op::MaskedEq { mask } if narrow => mask as u32 == 0,
        Op::MaskedEq { mask } => mask == 0,
        _ => false,
    };
    match rules.clone().find(|r| r.conds.iter().all(always_true)) {
        Some(r) => Body::Always(r.action),
        None => Body::Rules(rules.cloned().collect()),
    }
}
