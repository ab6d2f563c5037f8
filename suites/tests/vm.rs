//! One end-to-end run of `palisade vm`: a small filter in a throwaway guest with cgroup v2, and a
//! run that must fail inside and say so through the exit code. Skipped, with the reason printed,
//! where QEMU or a guest kernel is missing.

use std::process::Command;

use palisade_harness::vm::kernel::find_kernel;

fn vm_unavailable() -> Option<String> {
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        return Some(
            "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)".into(),
        );
    }
    find_kernel(None).err().map(|e| e.to_string())
}

fn palisade_vm(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .arg("vm")
        .args(args)
        .output()
        .expect("palisade runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn a_scenario_passes_in_a_cgroup_v2_guest_and_a_broken_runtime_fails() {
    if let Some(reason) = vm_unavailable() {
        eprintln!("skipped: palisade vm end-to-end test: {reason}");
        return;
    }
    let (code, text) = palisade_vm(&[
        "--cgroup",
        "v2",
        "--with",
        "runc",
        "--",
        "run",
        "--runtime",
        "runc",
        "--exact",
        "pid::init_is_pid_1",
    ]);
    println!("{text}");
    assert_eq!(code, 0, "the guest run must pass");
    assert!(
        text.contains("test [runc] pid::init_is_pid_1"),
        "no result line"
    );
    assert!(text.contains("boot to first scenario"), "no timing line");
    assert!(
        text.contains("cgroup v2"),
        "the guest must report cgroup v2"
    );

    // A runtime that does not exist: the suite fails inside, and the exit code says so outside.
    let (code, text) = palisade_vm(&[
        "--with",
        "",
        "--",
        "run",
        "--runtime",
        "/nonexistent",
        "pid::init_is_pid_1",
    ]);
    println!("{text}");
    assert_ne!(code, 0, "a failing suite inside must fail `palisade vm`");
    assert_ne!(code, 3, "the guest must report the suite's own exit code");
}
