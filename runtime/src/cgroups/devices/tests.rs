//! Device rules: the v1 controller's semantics, and the BPF program run by a small interpreter
//! of the instructions it uses, against those semantics for every interesting device and access.

use rstest::rstest;

use super::*;

fn rule(text: &str) -> DeviceRule {
    // "allow c 1:3 rwm" / "deny a *:* rwm"
    let parts: Vec<&str> = text.split_whitespace().collect();
    let kind = match parts[1] {
        "a" => DevKind::All,
        "c" => DevKind::Char,
        _ => DevKind::Block,
    };
    let (major, minor) = parts[2].split_once(':').expect("major:minor");
    let number = |n: &str| (n != "*").then(|| n.parse().expect("a number"));
    DeviceRule {
        allow: parts[0] == "allow",
        kind,
        major: number(major),
        minor: number(minor),
        access: DeviceRule::parse_access(parts[3]).expect("access"),
    }
}

fn rules(texts: &[&str]) -> DeviceRules {
    DeviceRules::with_defaults(texts.iter().map(|t| rule(t)))
}

const R: u8 = ACC_READ;
const W: u8 = ACC_WRITE;
const M: u8 = ACC_MKNOD;
const RW: u8 = ACC_READ | ACC_WRITE;

#[test]
fn no_rules_deny_everything_but_the_defaults() {
    let r = DeviceRules::default();
    assert!(!r.default_allow);
    assert_eq!(
        r.v1_writes(),
        [
            ("devices.deny", "a".to_owned()),
            ("devices.allow", "c *:* m".to_owned()),
            ("devices.allow", "b *:* m".to_owned()),
            ("devices.allow", "c 1:3 rwm".to_owned()),
            ("devices.allow", "c 1:5 rwm".to_owned()),
            ("devices.allow", "c 1:7 rwm".to_owned()),
            ("devices.allow", "c 1:8 rwm".to_owned()),
            ("devices.allow", "c 1:9 rwm".to_owned()),
            ("devices.allow", "c 5:0 rwm".to_owned()),
            ("devices.allow", "c 5:1 rwm".to_owned()),
            ("devices.allow", "c 5:2 rwm".to_owned()),
            ("devices.allow", "c 136:* rwm".to_owned()),
        ]
    );
}

#[rstest]
// Nothing configured: the defaults, mknod of anything, nothing else.
#[case::null_rw(&[], DevKind::Char, 1, 3, RW, true)]
#[case::pty_slave(&[], DevKind::Char, 136, 7, RW, true)]
#[case::ptmx(&[], DevKind::Char, 5, 2, RW, true)]
#[case::console(&[], DevKind::Char, 5, 1, W, true)]
#[case::loop_control_open(&[], DevKind::Char, 10, 237, R, false)]
#[case::loop_control_mknod(&[], DevKind::Char, 10, 237, M, true)]
#[case::disk_read(&[], DevKind::Block, 8, 0, R, false)]
#[case::block_null_is_not_char_null(&[], DevKind::Block, 1, 3, R, false)]
// The spec's usual first rule, deny all: the defaults come after it and survive.
#[case::deny_all_keeps_defaults(&["deny a *:* rwm"], DevKind::Char, 1, 3, RW, true)]
#[case::deny_all_denies_the_rest(&["deny a *:* rwm"], DevKind::Char, 10, 237, R, false)]
#[case::allowed_by_rule(&["deny a *:* rwm", "allow c 10:237 rw"], DevKind::Char, 10, 237, RW, true)]
#[case::allowed_read_only(&["allow c 10:237 r"], DevKind::Char, 10, 237, RW, false)]
#[case::allowed_read_only_reads(&["allow c 10:237 r"], DevKind::Char, 10, 237, R, true)]
#[case::wildcard_minor(&["allow c 10:* rw"], DevKind::Char, 10, 200, W, true)]
#[case::wildcard_major(&["allow b *:0 r"], DevKind::Block, 8, 0, R, true)]
#[case::allow_then_deny_removes(&["allow c 10:237 rwm", "deny c 10:237 w"], DevKind::Char, 10, 237, W, false)]
#[case::allow_then_deny_keeps_the_rest(&["allow c 10:237 rwm", "deny c 10:237 w"], DevKind::Char, 10, 237, R, true)]
// An exact-match semantics, as the kernel: a deny cannot punch a hole into a wildcard allow.
#[case::no_hole_in_a_wildcard(&["allow c 10:* rw", "deny c 10:237 rw"], DevKind::Char, 10, 237, R, true)]
// Allow all: everything, except what later rules deny (the defaults change nothing then).
#[case::allow_all(&["allow a *:* rwm"], DevKind::Block, 8, 0, RW, true)]
#[case::allow_all_then_deny(&["allow a *:* rwm", "deny c 10:237 r"], DevKind::Char, 10, 237, RW, false)]
#[case::allow_all_then_deny_other_access(&["allow a *:* rwm", "deny c 10:237 r"], DevKind::Char, 10, 237, W, true)]
#[case::deny_all_after_allow_all(&["allow a *:* rwm", "deny a *:* rwm"], DevKind::Block, 8, 0, R, false)]
// The defaults come last, so a config cannot take the default devices away.
#[case::defaults_win(&["deny c 1:3 rwm"], DevKind::Char, 1, 3, RW, true)]
fn permits(
    #[case] config: &[&str],
    #[case] kind: DevKind,
    #[case] major: u32,
    #[case] minor: u32,
    #[case] access: u8,
    #[case] expected: bool,
) {
    let r = rules(config);
    assert_eq!(r.permits(kind, major, minor, access), expected, "{r:?}");
    assert_eq!(run(&r.program(), kind, major, minor, access), expected);
}

#[test]
fn allow_all_then_deny_writes_allow_then_the_deny() {
    let r = rules(&["allow a *:* rwm", "deny c 10:237 r"]);
    assert_eq!(
        r.v1_writes(),
        [
            ("devices.allow", "a".to_owned()),
            ("devices.deny", "c 10:237 r".to_owned()),
        ]
    );
}

#[test]
fn access_is_parsed_strictly() {
    assert_eq!(DeviceRule::parse_access("rwm"), Some(RW | M));
    assert_eq!(DeviceRule::parse_access("mr"), Some(R | M));
    assert_eq!(DeviceRule::parse_access(""), None);
    assert_eq!(DeviceRule::parse_access("rx"), None);
}

/// Every combination of the devices and accesses the rules could care about gives the same
/// verdict from the program as from the v1 semantics.
#[rstest]
#[case::none(&[])]
#[case::deny_all_allow_one(&["deny a *:* rwm", "allow c 10:237 rw", "allow b 8:* r"])]
#[case::allow_all_deny_some(&["allow a *:* rwm", "deny c 10:237 r", "deny b *:* w", "deny c 1:3 m"])]
#[case::merges(&["allow c 10:237 r", "allow c 10:237 w", "deny c 10:237 r"])]
fn the_program_agrees_with_the_rules_everywhere(#[case] config: &[&str]) {
    let r = rules(config);
    let prog = r.program();
    for kind in [DevKind::Char, DevKind::Block] {
        for (major, minor) in [
            (1, 3),
            (1, 4),
            (5, 2),
            (136, 0),
            (10, 237),
            (10, 200),
            (8, 0),
            (8, 1),
            (4095, 1_048_575),
        ] {
            for access in 1..=7 {
                assert_eq!(
                    run(&prog, kind, major, minor, access),
                    r.permits(kind, major, minor, access),
                    "{kind:?} {major}:{minor} access {access} under {config:?}"
                );
            }
        }
    }
}

#[test]
fn instructions_encode_as_the_kernel_reads_them() {
    // r2 = *(u32 *)(r1 + 4)
    assert_eq!(
        Insn::ldx_w(2, 1, 4).encode(),
        [0x61, 0x12, 4, 0, 0, 0, 0, 0]
    );
    // if r4 != 237 goto +3
    let mut j = Insn::jne_imm(4, 237);
    j.off = 3;
    assert_eq!(j.encode(), [0x55, 0x04, 3, 0, 237, 0, 0, 0]);
    assert_eq!(Insn::exit().encode(), [0x95, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(encode(&[Insn::exit(), Insn::exit()]).len(), 16);
}

/// Runs `prog` on a cgroup-device context; true if it returns 1 (allow).
fn run(prog: &[Insn], kind: DevKind, major: u32, minor: u32, access: u8) -> bool {
    let dev = match kind {
        DevKind::Block => DEV_BLOCK as u32,
        _ => DEV_CHAR as u32,
    };
    let ctx = [(u32::from(access) << 16) | dev, major, minor];
    let mut reg = [0u64; 11];
    let mut pc = 0usize;
    // A loaded context pointer: the interpreter only knows one memory, the context.
    const CTX: u64 = 0x1000;
    reg[1] = CTX;
    for _ in 0..10_000 {
        let i = prog[pc];
        let (d, s) = (usize::from(i.dst), usize::from(i.src));
        pc += 1;
        match i.code {
            LDX_W_MEM => {
                assert_eq!(reg[s], CTX, "loads only from the context");
                let at = usize::try_from(i.off).expect("offset") / 4;
                reg[d] = u64::from(ctx[at]);
            }
            ALU32_MOV_X => reg[d] = reg[s] & 0xffff_ffff,
            ALU32_RSH_K => reg[d] = ((reg[d] as u32) >> i.imm) as u64,
            ALU32_AND_K => reg[d] = ((reg[d] as u32) & (i.imm as u32)) as u64,
            ALU64_MOV_K => reg[d] = i.imm as i64 as u64,
            JMP_JEQ_K | JMP_JNE_K => {
                let equal = reg[d] == i.imm as i64 as u64;
                if equal == (i.code == JMP_JEQ_K) {
                    pc = (pc as i64 + i64::from(i.off)) as usize;
                }
            }
            JMP_EXIT => return reg[0] == 1,
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
    panic!("the program did not exit");
}
