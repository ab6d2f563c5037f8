//! Compiles profiles and runs the BPF through a userspace interpreter (classic BPF, the
//! instructions the generator emits) against `seccomp_data` inputs. No root, no kernel.

use oci_spec::runtime::LinuxSeccomp;
use rstest::rstest;
use serde_json::{Value, json};

use super::arch::X32_SYSCALL_BIT;
use super::bpf::{self, Abi, Body, Entry, Group, Program};
use super::*;

const AUDIT_X86_64: u32 = 0xC000_003E;
const AUDIT_I386: u32 = 0x4000_0003;
const AUDIT_AARCH64: u32 = 0xC000_00B7;

// x86_64 numbers
const GETCWD: u32 = 79;
const MKDIR: u32 = 83;
const LSEEK: u32 = 8;
const PERSONALITY: u32 = 135;
const UNSHARE: u32 = 272;
const CLONE: u32 = 56;
const CLONE3: u32 = 435;
// x86 numbers
const X86_GETCWD: u32 = 183;
const X86_LSEEK: u32 = 19;
const X86_SOCKETCALL: u32 = 102;

/// A `seccomp_data` input.
#[derive(Clone, Copy, Debug)]
pub struct Data {
    pub arch: u32,
    pub nr: u32,
    pub args: [u64; 6],
}

fn x86_64(nr: u32) -> Data {
    Data {
        arch: AUDIT_X86_64,
        nr,
        args: [0; 6],
    }
}

fn with_args(mut d: Data, args: &[(usize, u64)]) -> Data {
    for &(i, v) in args {
        d.args[i] = v;
    }
    d
}

/// Runs a program the way the kernel would, checking what the kernel's verifier would refuse
/// on the way (bad loads, jumps out of the program, falling off its end).
pub fn run(prog: &[SockFilter], d: Data) -> u32 {
    let mut mem = [0u8; 64];
    mem[0..4].copy_from_slice(&d.nr.to_le_bytes());
    mem[4..8].copy_from_slice(&d.arch.to_le_bytes());
    for (i, a) in d.args.iter().enumerate() {
        mem[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    let mut acc: u32 = 0;
    let mut pc = 0usize;
    let mut steps = 0;
    loop {
        steps += 1;
        assert!(steps <= prog.len(), "more steps than instructions: a loop?");
        let i = *prog
            .get(pc)
            .unwrap_or_else(|| panic!("pc {pc} past the end"));
        pc += 1;
        let cond = |taken: bool| usize::from(if taken { i.jt } else { i.jf });
        match i.code {
            0x20 => {
                let off = i.k as usize;
                assert!(
                    off.is_multiple_of(4) && off + 4 <= mem.len(),
                    "bad load offset {off}"
                );
                acc = u32::from_le_bytes(mem[off..off + 4].try_into().expect("4 bytes"));
            }
            0x54 => acc &= i.k,
            0x05 => pc += i.k as usize,
            0x15 => pc += cond(acc == i.k),
            0x25 => pc += cond(acc > i.k),
            0x35 => pc += cond(acc >= i.k),
            0x06 => return i.k,
            code => panic!("unexpected opcode {code:#x}"),
        }
    }
}

fn seccomp(profile: Value) -> LinuxSeccomp {
    serde_json::from_value(profile).expect("profile parses")
}

fn compile(profile: Value) -> SeccompPlan {
    plan(&seccomp(profile)).expect("profile compiles")
}

fn plan_err(profile: Value) -> String {
    match plan(&seccomp(profile)) {
        Ok(_) => panic!("profile compiled but should not"),
        Err(e) => e.to_string(),
    }
}

fn eval(plan: &SeccompPlan, d: Data) -> u32 {
    run(plan.instructions(), d)
}

const ALLOW: u32 = RET_ALLOW;
const fn errno(e: u32) -> u32 {
    RET_ERRNO | e
}

#[rstest]
#[case::kill(json!({"action": "SCMP_ACT_KILL"}), 0)]
#[case::kill_thread(json!({"action": "SCMP_ACT_KILL_THREAD"}), 0)]
#[case::kill_process(json!({"action": "SCMP_ACT_KILL_PROCESS"}), 0x8000_0000)]
#[case::trap(json!({"action": "SCMP_ACT_TRAP"}), 0x0003_0000)]
#[case::errno_default_eperm(json!({"action": "SCMP_ACT_ERRNO"}), errno(1))]
#[case::errno_ret(json!({"action": "SCMP_ACT_ERRNO", "errnoRet": 18}), errno(18))]
#[case::errno_ret_zero(json!({"action": "SCMP_ACT_ERRNO", "errnoRet": 0}), errno(0))]
#[case::trace_default_eperm(json!({"action": "SCMP_ACT_TRACE"}), 0x7ff0_0001)]
#[case::trace_ret(json!({"action": "SCMP_ACT_TRACE", "errnoRet": 42}), 0x7ff0_002a)]
#[case::log(json!({"action": "SCMP_ACT_LOG"}), 0x7ffc_0000)]
#[case::notify(json!({"action": "SCMP_ACT_NOTIFY"}), 0x7fc0_0000)]
fn every_action(#[case] mut rule: Value, #[case] expected: u32) {
    rule["names"] = json!(["getcwd"]);
    let p = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/agent.sock",
        "syscalls": [rule],
    }));
    assert_eq!(eval(&p, x86_64(GETCWD)), expected);
    assert_eq!(
        eval(&p, x86_64(MKDIR)),
        ALLOW,
        "unlisted syscall gets the default"
    );
}

#[rstest]
#[case::errno_eperm(json!({"defaultAction": "SCMP_ACT_ERRNO"}), errno(1))]
#[case::errno_ret(json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38}), errno(38))]
#[case::trace_ret(json!({"defaultAction": "SCMP_ACT_TRACE", "defaultErrnoRet": 7}), 0x7ff0_0007)]
#[case::kill_process(json!({"defaultAction": "SCMP_ACT_KILL_PROCESS"}), 0x8000_0000)]
#[case::log(json!({"defaultAction": "SCMP_ACT_LOG"}), 0x7ffc_0000)]
fn default_action(#[case] mut profile: Value, #[case] expected: u32) {
    profile["syscalls"] = json!([{"names": ["getcwd"], "action": "SCMP_ACT_ALLOW"}]);
    let p = compile(profile);
    assert_eq!(eval(&p, x86_64(MKDIR)), expected);
    assert_eq!(eval(&p, x86_64(GETCWD)), ALLOW);
}

/// One argument test on lseek's offset (arg 1), full 64-bit values on x86_64.
#[rstest]
#[case::eq_same(json!({"op": "SCMP_CMP_EQ", "value": 0x1_0000_0005u64}), 0x1_0000_0005, true)]
#[case::eq_low_word_only(json!({"op": "SCMP_CMP_EQ", "value": 0x1_0000_0005u64}), 0x5, false)]
#[case::eq_other_high(json!({"op": "SCMP_CMP_EQ", "value": 0x1_0000_0005u64}), 0x2_0000_0005, false)]
#[case::eq_max(json!({"op": "SCMP_CMP_EQ", "value": u64::MAX}), u64::MAX, true)]
#[case::ne_same(json!({"op": "SCMP_CMP_NE", "value": 0x1_0000_0005u64}), 0x1_0000_0005, false)]
#[case::ne_low_differs(json!({"op": "SCMP_CMP_NE", "value": 0x1_0000_0005u64}), 0x1_0000_0006, true)]
#[case::ne_high_differs(json!({"op": "SCMP_CMP_NE", "value": 0x1_0000_0005u64}), 0x5, true)]
#[case::gt_above_low(json!({"op": "SCMP_CMP_GT", "value": 0x1_0000_0000u64}), 0x1_0000_0001, true)]
#[case::gt_equal(json!({"op": "SCMP_CMP_GT", "value": 0x1_0000_0000u64}), 0x1_0000_0000, false)]
#[case::gt_below_high(json!({"op": "SCMP_CMP_GT", "value": 0x1_0000_0000u64}), 0xFFFF_FFFF, false)]
#[case::gt_high_wins(json!({"op": "SCMP_CMP_GT", "value": 0x1_FFFF_FFFFu64}), 0x2_0000_0000, true)]
#[case::gt_max_minus_one(json!({"op": "SCMP_CMP_GT", "value": u64::MAX - 1}), u64::MAX, true)]
#[case::ge_equal(json!({"op": "SCMP_CMP_GE", "value": 0x1_0000_0005u64}), 0x1_0000_0005, true)]
#[case::ge_below(json!({"op": "SCMP_CMP_GE", "value": 0x1_0000_0005u64}), 0x1_0000_0004, false)]
#[case::ge_high_wins(json!({"op": "SCMP_CMP_GE", "value": 0x1_0000_0005u64}), 0x2_0000_0000, true)]
#[case::ge_high_loses(json!({"op": "SCMP_CMP_GE", "value": 0x1_0000_0005u64}), 0xFFFF_FFFF, false)]
#[case::lt_below(json!({"op": "SCMP_CMP_LT", "value": 0x1_0000_0005u64}), 0x1_0000_0004, true)]
#[case::lt_equal(json!({"op": "SCMP_CMP_LT", "value": 0x1_0000_0005u64}), 0x1_0000_0005, false)]
#[case::lt_high_wins(json!({"op": "SCMP_CMP_LT", "value": 0x1_0000_0005u64}), 0xFFFF_FFFF, true)]
#[case::lt_high_loses(json!({"op": "SCMP_CMP_LT", "value": 0x1_0000_0005u64}), 0x2_0000_0000, false)]
#[case::le_equal(json!({"op": "SCMP_CMP_LE", "value": 0x1_0000_0005u64}), 0x1_0000_0005, true)]
#[case::le_above(json!({"op": "SCMP_CMP_LE", "value": 0x1_0000_0005u64}), 0x1_0000_0006, false)]
#[case::le_high_wins(json!({"op": "SCMP_CMP_LE", "value": 0x1_0000_0005u64}), 0x1_0000_0000, true)]
#[case::le_high_loses(json!({"op": "SCMP_CMP_LE", "value": 0x1_0000_0005u64}), 0x2_0000_0000, false)]
#[case::le_zero(json!({"op": "SCMP_CMP_LE", "value": 0}), 0, true)]
#[case::masked_both_words(
    json!({"op": "SCMP_CMP_MASKED_EQ", "value": 0xFF00_0000_0000_00FFu64, "valueTwo": 0x1200_0000_0000_0034u64}),
    0x12AB_CDEF_0000_1234, true)]
#[case::masked_high_differs(
    json!({"op": "SCMP_CMP_MASKED_EQ", "value": 0xFF00_0000_0000_00FFu64, "valueTwo": 0x1200_0000_0000_0034u64}),
    0x13AB_CDEF_0000_1234, false)]
#[case::masked_low_differs(
    json!({"op": "SCMP_CMP_MASKED_EQ", "value": 0xFF00_0000_0000_00FFu64, "valueTwo": 0x1200_0000_0000_0034u64}),
    0x12AB_CDEF_0000_1235, false)]
#[case::masked_docker_clone_plain(
    json!({"op": "SCMP_CMP_MASKED_EQ", "value": 2_114_060_288u64, "valueTwo": 0}), 0x0001_1200, true)]
#[case::masked_docker_clone_newuser(
    json!({"op": "SCMP_CMP_MASKED_EQ", "value": 2_114_060_288u64, "valueTwo": 0}), 0x1000_0000, false)]
#[case::masked_value_two_is_masked_too(
    json!({"op": "SCMP_CMP_MASKED_EQ", "value": 0xFF, "valueTwo": 0x1FF}), 0xFF, true)]
#[case::masked_value_two_absent(json!({"op": "SCMP_CMP_MASKED_EQ", "value": 0x3}), 0x4, true)]
fn every_op_64_bit(#[case] mut arg: Value, #[case] offset: u64, #[case] matches: bool) {
    arg["index"] = json!(1);
    let p = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["lseek"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18, "args": [arg]}],
    }));
    let got = eval(&p, with_args(x86_64(LSEEK), &[(1, offset)]));
    assert_eq!(got, if matches { errno(18) } else { ALLOW });
}

/// On a 32-bit ABI only the low word exists; the rule's value is truncated like libseccomp does.
#[rstest]
#[case::eq_truncated(json!({"op": "SCMP_CMP_EQ", "value": 0x1_0000_0005u64}), 0x5, true)]
#[case::eq_high_word_never_read(json!({"op": "SCMP_CMP_EQ", "value": 5}), 0x7_0000_0005, true)]
#[case::gt_low(json!({"op": "SCMP_CMP_GT", "value": 5}), 6, true)]
#[case::lt_low(json!({"op": "SCMP_CMP_LT", "value": 5}), 5, false)]
#[case::le_low(json!({"op": "SCMP_CMP_LE", "value": 5}), 5, true)]
#[case::ne_low(json!({"op": "SCMP_CMP_NE", "value": 5}), 5, false)]
#[case::masked_low(json!({"op": "SCMP_CMP_MASKED_EQ", "value": 0xF0, "valueTwo": 0x30}), 0x3F, true)]
fn ops_on_x86(#[case] mut arg: Value, #[case] offset: u64, #[case] matches: bool) {
    arg["index"] = json!(1);
    let p = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [{"names": ["lseek"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18, "args": [arg]}],
    }));
    let d = Data {
        arch: AUDIT_I386,
        nr: X86_LSEEK,
        args: [0, offset, 0, 0, 0, 0],
    };
    assert_eq!(eval(&p, d), if matches { errno(18) } else { ALLOW });
}

#[rstest]
#[case::both_hold([3, 0, 1], errno(18))]
#[case::first_fails([4, 0, 1], ALLOW)]
#[case::second_fails([3, 0, 0], ALLOW)]
fn args_of_one_entry_are_anded(#[case] args: [u64; 3], #[case] expected: u32) {
    let p = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["lseek"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18, "args": [
            {"index": 0, "value": 3, "op": "SCMP_CMP_EQ"},
            {"index": 2, "value": 1, "op": "SCMP_CMP_EQ"},
        ]}],
    }));
    let d = with_args(x86_64(LSEEK), &[(0, args[0]), (1, args[1]), (2, args[2])]);
    assert_eq!(eval(&p, d), expected);
}

/// runc and crun: when an index repeats in one entry, every argument becomes its own rule.
#[rstest]
#[case(0, ALLOW)]
#[case(8, ALLOW)]
#[case(9, errno(1))]
fn repeated_index_is_ored(#[case] persona: u64, #[case] expected: u32) {
    let p = compile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
            {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
        ]}],
    }));
    let d = with_args(x86_64(PERSONALITY), &[(0, persona)]);
    assert_eq!(eval(&p, d), expected);
}

#[rstest]
#[case::first_rule(0, errno(5))]
#[case::second_rule(1, errno(6))]
#[case::neither(2, ALLOW)]
fn several_entries_for_one_syscall_are_ored(#[case] whence: u64, #[case] expected: u32) {
    let p = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["lseek"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5,
             "args": [{"index": 2, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["lseek"], "action": "SCMP_ACT_ERRNO", "errnoRet": 6,
             "args": [{"index": 2, "value": 1, "op": "SCMP_CMP_EQ"}]},
        ],
    }));
    assert_eq!(eval(&p, with_args(x86_64(LSEEK), &[(2, whence)])), expected);
}

#[test]
fn overlapping_argument_rules_first_match_wins() {
    let p = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["lseek"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5,
             "args": [{"index": 2, "value": 1, "op": "SCMP_CMP_GE"}]},
            {"names": ["lseek"], "action": "SCMP_ACT_ERRNO", "errnoRet": 6,
             "args": [{"index": 2, "value": 1, "op": "SCMP_CMP_EQ"}]},
        ],
    }));
    assert_eq!(eval(&p, with_args(x86_64(LSEEK), &[(2, 1)])), errno(5));
    assert_eq!(eval(&p, with_args(x86_64(LSEEK), &[(2, 0)])), ALLOW);
}

#[test]
fn unconditional_rule_overrides_argument_rules_in_any_order() {
    for (first, second) in [(0, 1), (1, 0)] {
        let entries = [
            json!({"names": ["lseek"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5,
                   "args": [{"index": 2, "value": 1, "op": "SCMP_CMP_EQ"}]}),
            json!({"names": ["lseek"], "action": "SCMP_ACT_ERRNO", "errnoRet": 6}),
        ];
        let p = compile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [entries[first], entries[second]],
        }));
        for whence in [0, 1] {
            let got = eval(&p, with_args(x86_64(LSEEK), &[(2, whence)]));
            assert_eq!(got, errno(6), "order {first}{second}, whence {whence}");
        }
    }
}

#[test]
fn first_unconditional_rule_wins() {
    let p = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5},
            {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 6},
        ],
    }));
    assert_eq!(eval(&p, x86_64(GETCWD)), errno(5));
}

#[test]
fn rule_with_the_default_action_is_dropped() {
    // Were the unconditional ERRNO rule kept, it would override the argument rule.
    let p = compile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
        ],
    }));
    let d = |v| with_args(x86_64(PERSONALITY), &[(0, v)]);
    assert_eq!(eval(&p, d(8)), ALLOW);
    assert_eq!(eval(&p, d(9)), errno(1));
}

#[rstest]
#[case::native_only_kills_x86(json!(null), AUDIT_I386, X86_GETCWD, 0)]
#[case::native_always_included(json!(["SCMP_ARCH_X86"]), AUDIT_X86_64, GETCWD, errno(18))]
#[case::x86_listed(json!(["SCMP_ARCH_X86"]), AUDIT_I386, X86_GETCWD, errno(18))]
#[case::x86_other_syscall(json!(["SCMP_ARCH_X86"]), AUDIT_I386, 39, ALLOW)]
#[case::x32_listed(json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"]), AUDIT_X86_64, X32_SYSCALL_BIT | GETCWD, errno(18))]
#[case::x32_other(json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"]), AUDIT_X86_64, X32_SYSCALL_BIT | MKDIR, ALLOW)]
#[case::x32_not_listed_is_bad_arch(json!(["SCMP_ARCH_X86_64"]), AUDIT_X86_64, X32_SYSCALL_BIT | GETCWD, 0)]
#[case::minus_one_is_not_x32(json!(["SCMP_ARCH_X86_64"]), AUDIT_X86_64, u32::MAX, ALLOW)]
#[case::x86_64_next_to_x32(json!(["SCMP_ARCH_X32"]), AUDIT_X86_64, GETCWD, errno(18))]
#[case::native_token(json!(["SCMP_ARCH_NATIVE"]), AUDIT_X86_64, GETCWD, errno(18))]
#[case::aarch64_listed(json!(["SCMP_ARCH_AARCH64"]), AUDIT_AARCH64, 17, errno(18))]
#[case::aarch64_not_listed(json!(["SCMP_ARCH_X86"]), AUDIT_AARCH64, 17, 0)]
fn arch_dispatch(#[case] arches: Value, #[case] arch: u32, #[case] nr: u32, #[case] want: u32) {
    let mut profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18}],
    });
    if !arches.is_null() {
        profile["architectures"] = arches;
    }
    let d = Data {
        arch,
        nr,
        args: [0; 6],
    };
    assert_eq!(eval(&compile(profile), d), want);
}

/// The x32-only split cannot be reached from a config on x86_64 (the native arch is always
/// there), so the generator is driven directly.
#[rstest]
#[case::x32_syscall(X32_SYSCALL_BIT | GETCWD, errno(18))]
#[case::x32_other(X32_SYSCALL_BIT | MKDIR, ALLOW)]
#[case::x86_64_syscall_is_bad_arch(GETCWD, 0x8000_0000)]
fn x32_only_group(#[case] nr: u32, #[case] want: u32) {
    let prog = bpf::generate(&Program {
        default_action: ALLOW,
        bad_arch_action: 0x8000_0000,
        groups: vec![Group {
            audit: AUDIT_X86_64,
            abi: Abi::X32Only,
            entries: vec![Entry {
                nr: X32_SYSCALL_BIT | GETCWD,
                narrow: true,
                body: Body::Always(errno(18)),
            }],
        }],
    })
    .expect("generates");
    assert_eq!(run(&prog, x86_64(nr)), want);
}

#[test]
fn names_resolve_per_architecture() {
    let p = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [{"names": ["socketcall"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18}],
    }));
    let x86 = Data {
        arch: AUDIT_I386,
        nr: X86_SOCKETCALL,
        args: [0; 6],
    };
    assert_eq!(eval(&p, x86), errno(18));
    // 102 is getuid on x86_64, which no rule names.
    assert_eq!(eval(&p, x86_64(X86_SOCKETCALL)), ALLOW);
    assert!(p.skipped_syscalls().is_empty());
}

/// libseccomp on x86: a socket call is also caught through `socketcall(2)`, with argument 0
/// replaced by the call number.
#[rstest]
#[case::direct_socket(359, 0, errno(18))]
#[case::socketcall_socket(X86_SOCKETCALL, 1, errno(18))]
#[case::socketcall_bind(X86_SOCKETCALL, 2, ALLOW)]
#[case::ipc_shmget(117, 23, errno(19))]
#[case::ipc_shmat(117, 21, ALLOW)]
fn x86_multiplexed_calls(#[case] nr: u32, #[case] arg0: u64, #[case] want: u32) {
    let p = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86"],
        "syscalls": [
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18,
             "args": [{"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]},
            {"names": ["shmget"], "action": "SCMP_ACT_ERRNO", "errnoRet": 19},
        ],
    }));
    let d = Data {
        arch: AUDIT_I386,
        nr,
        args: [arg0, 0, 0, 0, 0, 0],
    };
    // The direct socket syscall keeps its own test (domain 2); the multiplexed one cannot.
    let d = if nr == 359 {
        with_args(d, &[(0, 2)])
    } else {
        d
    };
    assert_eq!(eval(&p, d), want);
}

#[test]
fn unknown_names_are_skipped_and_reported() {
    let p = compile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["no_such_syscall", "getcwd", "socketcall"], "action": "SCMP_ACT_ALLOW"}],
    }));
    assert_eq!(eval(&p, x86_64(GETCWD)), ALLOW);
    assert_eq!(eval(&p, x86_64(MKDIR)), errno(1));
    // socketcall exists on x86, which this filter does not have.
    assert_eq!(p.skipped_syscalls(), ["no_such_syscall", "socketcall"]);
}

#[test]
fn consecutive_syscalls_become_ranges_without_crossing_gaps() {
    // read..close (0..3), then 5 (fstat), not 4 (stat).
    let p = compile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["read", "write", "open", "close", "fstat"], "action": "SCMP_ACT_ALLOW"}],
    }));
    for nr in 0..=3 {
        assert_eq!(eval(&p, x86_64(nr)), ALLOW, "nr {nr}");
    }
    assert_eq!(eval(&p, x86_64(4)), errno(1));
    assert_eq!(eval(&p, x86_64(5)), ALLOW);
    assert_eq!(eval(&p, x86_64(6)), errno(1));
}

/// Every x86_64 syscall allowed but one: long programs whose jumps need trampolines.
#[test]
fn large_allow_list_is_exact() {
    let names: Vec<&str> = (0..500u32)
        .filter_map(|nr| {
            syscalls::x86_64::Sysno::new(nr as usize)
                .map(|s| s.name())
                .filter(|n| *n != "unshare")
        })
        .collect();
    let p = compile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": names.iter().map(|n| json!({"names": [n], "action": "SCMP_ACT_LOG"})).collect::<Vec<_>>(),
    }));
    for nr in 0..500u32 {
        let known = syscalls::x86_64::Sysno::new(nr as usize).is_some();
        let want = if known && nr != UNSHARE {
            RET_LOG
        } else {
            errno(1)
        };
        assert_eq!(eval(&p, x86_64(nr)), want, "nr {nr}");
    }
}

/// Many argument rules on one syscall: the rule chain is far longer than a conditional jump.
#[test]
fn long_rule_chains_relax_far_jumps() {
    let rules: Vec<Value> = (0..150u64)
        .map(|v| {
            json!({"names": ["lseek"], "action": "SCMP_ACT_ERRNO", "errnoRet": v + 1,
                   "args": [{"index": 1, "value": v << 32 | v, "op": "SCMP_CMP_EQ"}]})
        })
        .collect();
    let p = compile(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}));
    assert!(p.instructions().len() > 600);
    for v in 0..150u64 {
        let got = eval(&p, with_args(x86_64(LSEEK), &[(1, v << 32 | v)]));
        assert_eq!(got, errno(v as u32 + 1), "value {v}");
    }
    assert_eq!(eval(&p, with_args(x86_64(LSEEK), &[(1, 7)])), ALLOW);
    assert_eq!(eval(&p, x86_64(GETCWD)), ALLOW);
}

#[rstest]
#[case::none(json!([]), false, 0)]
#[case::log_spec_tsync(json!(["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]), false, 1 | 2 | 4)]
#[case::notify_adds_listener(json!([]), true, 8)]
#[case::notify_tsync_adds_esrch(json!(["SECCOMP_FILTER_FLAG_TSYNC"]), true, 1 | 8 | 16)]
#[case::wait_killable(json!(["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]), true, 8 | 32)]
fn filter_flags(#[case] flags: Value, #[case] notify: bool, #[case] want: libc::c_ulong) {
    let action = if notify {
        "SCMP_ACT_NOTIFY"
    } else {
        "SCMP_ACT_ERRNO"
    };
    let p = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": flags,
        "listenerPath": "/run/agent.sock",
        "syscalls": [{"names": ["mkdir"], "action": action}],
    }));
    assert_eq!(p.flags(), want);
    assert_eq!(p.listener().is_some(), notify);
}

#[test]
fn listener_carries_path_and_metadata() {
    let p = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/agent.sock",
        "listenerMetadata": "MKNOD=/dev/null",
        "syscalls": [{"names": ["mknod"], "action": "SCMP_ACT_NOTIFY"}],
    }));
    let l = p.listener().expect("listener");
    assert_eq!(l.path, PathBuf::from("/run/agent.sock"));
    assert_eq!(l.metadata.as_deref(), Some("MKNOD=/dev/null"));
}

#[rstest]
#[case::errno_on_allow(
    json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}]}),
    "linux.seccomp.syscalls[0].errnoRet: SCMP_ACT_ALLOW takes no errno")]
#[case::default_errno_on_kill(
    json!({"defaultAction": "SCMP_ACT_KILL", "defaultErrnoRet": 1}),
    "linux.seccomp.defaultErrnoRet: SCMP_ACT_KILL takes no errno")]
#[case::errno_too_big(
    json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}),
    "linux.seccomp.defaultErrnoRet: 70000 does not fit")]
#[case::index_out_of_range(
    json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["lseek"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}),
    "linux.seccomp.syscalls[1].args[0].index: 6 is out of range")]
#[case::value_two_unused(
    json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["lseek"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 0, "valueTwo": 3, "op": "SCMP_CMP_EQ"}]}]}),
    "linux.seccomp.syscalls[0].args[0].valueTwo: 3 given, but SCMP_CMP_EQ does not use valueTwo")]
#[case::empty_names(
    json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]}),
    "linux.seccomp.syscalls[0].names: must contain at least one entry")]
#[case::empty_name(
    json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getcwd", ""], "action": "SCMP_ACT_ERRNO"}]}),
    "linux.seccomp.syscalls[0].names[1]: empty syscall name")]
#[case::notify_without_listener(
    json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mknod"], "action": "SCMP_ACT_NOTIFY"}]}),
    "linux.seccomp.listenerPath: required because linux.seccomp.syscalls[0] uses SCMP_ACT_NOTIFY")]
#[case::metadata_without_listener(
    json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "x"}),
    "linux.seccomp.listenerMetadata: set without linux.seccomp.listenerPath")]
#[case::notify_default(
    json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/run/a.sock"}),
    "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default action")]
#[case::notify_sendmsg(
    json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/a.sock",
           "syscalls": [{"names": ["sendmsg"], "action": "SCMP_ACT_NOTIFY"}]}),
    "linux.seccomp.syscalls[0].action: SCMP_ACT_NOTIFY cannot be used for sendmsg")]
#[case::wait_killable_without_notify(
    json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}),
    "linux.seccomp.flags[0]: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV needs a rule with SCMP_ACT_NOTIFY")]
#[case::unsupported_arch(
    json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_MIPS"]}),
    "linux.seccomp.architectures[1]: SCMP_ARCH_MIPS is not supported by palisade-runtime")]
fn invalid_profiles_name_the_field(#[case] profile: Value, #[case] want: &str) {
    let err = plan_err(profile);
    assert!(
        err.starts_with(want),
        "{err:?} does not start with {want:?}"
    );
}

/// Docker's default profile for x86_64, written from its documented rules.
pub fn docker_default() -> LinuxSeccomp {
    serde_json::from_str(palisade_common::profiles::DOCKER_DEFAULT_X86_64).expect("fixture parses")
}

#[test]
fn docker_default_profile() {
    let p = plan(&docker_default()).expect("compiles");
    let x86 = |nr| Data {
        arch: AUDIT_I386,
        nr,
        args: [0; 6],
    };
    assert_eq!(eval(&p, x86_64(GETCWD)), ALLOW);
    assert_eq!(eval(&p, x86_64(MKDIR)), ALLOW);
    assert_eq!(eval(&p, x86_64(UNSHARE)), errno(1));
    assert_eq!(eval(&p, x86_64(CLONE3)), errno(38), "clone3 gets ENOSYS");
    let clone = |flags| with_args(x86_64(CLONE), &[(0, flags)]);
    assert_eq!(eval(&p, clone(0x0001_1200 | 17)), ALLOW, "fork-like clone");
    assert_eq!(eval(&p, clone(0x1000_0000)), errno(1), "CLONE_NEWUSER");
    let persona = |v| with_args(x86_64(PERSONALITY), &[(0, v)]);
    assert_eq!(eval(&p, persona(0xffff_ffff)), ALLOW);
    assert_eq!(eval(&p, persona(1)), errno(1));
    assert_eq!(eval(&p, x86(X86_SOCKETCALL)), ALLOW);
    assert_eq!(eval(&p, x86(X86_GETCWD)), ALLOW);
    assert_eq!(eval(&p, x86_64(X32_SYSCALL_BIT | GETCWD)), ALLOW);
    let aarch64 = Data {
        arch: AUDIT_AARCH64,
        nr: 17,
        args: [0; 6],
    };
    assert_eq!(eval(&p, aarch64), 0, "an architecture not listed is killed");
}

/// How cheap compiling a real profile is: container start latency matters.
#[test]
fn docker_default_profile_cost() {
    let profile = docker_default();
    plan(&profile).expect("compiles"); // builds the syscall tables once
    let runs = 50;
    let start = std::time::Instant::now();
    for _ in 0..runs {
        std::hint::black_box(plan(std::hint::black_box(&profile)).expect("compiles"));
    }
    let per_run = start.elapsed() / runs;
    let start = std::time::Instant::now();
    let entries = std::hint::black_box(super::arch::build_x86_tables());
    let tables = start.elapsed();
    let p = plan(&profile).expect("compiles");
    eprintln!(
        "docker default profile: {} BPF instructions, {} µs per compile, plus {} µs once per \
         process for the x86_64/x86/x32 tables ({entries} entries) ({} skipped names: {:?})",
        p.instructions().len(),
        per_run.as_micros(),
        tables.as_micros(),
        p.skipped_syscalls().len(),
        p.skipped_syscalls(),
    );
    assert!(p.instructions().len() < bpf::MAX_INSNS);
    // Generous, for a loaded debug build; the report quotes the measured figure.
    assert!(
        per_run < std::time::Duration::from_millis(50),
        "{per_run:?}"
    );
}
