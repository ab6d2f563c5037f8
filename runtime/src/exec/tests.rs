//! `exec` without root: its command line, the process it builds, and what it refuses.

use clap::Parser;
use rstest::rstest;
use serde_json::{Value, json};

use super::*;
use crate::cli::{Cli, Command, PsFormat};

fn cli(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("palisade-runtime").chain(args.iter().copied()))
}

fn exec_args(args: &[&str]) -> ExecArgs {
    let mut full = vec!["exec"];
    full.extend_from_slice(args);
    match cli(&full).expect("parses").command {
        Some(Command::Exec(e)) => e,
        other => panic!("not exec: {other:?}"),
    }
}

// --- the command line -------------------------------------------------------------------------

#[test]
fn everything_after_the_id_is_the_command_s() {
    let e = exec_args(&[
        "-d",
        "--pid-file",
        "/run/p",
        "c1",
        "sh",
        "-c",
        "echo -e hi",
        "--cwd",
    ]);
    assert!(e.detach);
    assert_eq!(e.pid_file.as_deref(), Some(Path::new("/run/p")));
    assert_eq!(e.id(), "c1");
    // `-c` and `--cwd` belong to the command, not to exec (runc's behaviour too).
    assert_eq!(e.command(), ["sh", "-c", "echo -e hi", "--cwd"]);
    assert!(e.caps.is_empty() && e.cwd.is_none());
}

#[test]
fn every_runc_exec_option_parses() {
    let e = exec_args(&[
        "--cwd",
        "/tmp",
        "-e",
        "A=1",
        "--env",
        "B=2",
        "-u",
        "1000:100",
        "-g",
        "5",
        "-g",
        "6",
        "-c",
        "CAP_NET_ADMIN",
        "--cap",
        "CAP_SYS_TIME",
        "--no-new-privs",
        "--preserve-fds",
        "2",
        "c1",
        "id",
    ]);
    assert_eq!(e.cwd.as_deref(), Some("/tmp"));
    assert_eq!(e.env, ["A=1", "B=2"]);
    assert_eq!(e.user.as_deref(), Some("1000:100"));
    assert_eq!(e.additional_gids, [5, 6]);
    assert_eq!(e.caps, ["CAP_NET_ADMIN", "CAP_SYS_TIME"]);
    assert!(e.no_new_privs);
    assert_eq!(e.preserve_fds, 2);
    assert_eq!(e.command(), ["id"]);
    let e = exec_args(&["-p", "/p.json", "c1"]);
    assert_eq!(e.process.as_deref(), Some(Path::new("/p.json")));
    assert!(e.command().is_empty());
}

#[rstest]
#[case::tty(&["-t", "c1", "sh"], "--tty")]
#[case::console_socket(&["--console-socket", "/s", "c1", "sh"], "--console-socket")]
#[case::process_label(&["--process-label", "x", "c1", "sh"], "--process-label")]
#[case::apparmor(&["--apparmor", "x", "c1", "sh"], "--apparmor")]
#[case::cgroup(&["--cgroup", "x", "c1", "sh"], "--cgroup")]
#[case::ignore_paused(&["--ignore-paused", "c1", "sh"], "--ignore-paused")]
fn runc_exec_options_without_an_implementation_are_refused_by_name(
    #[case] args: &[&str],
    #[case] flag: &str,
) {
    let mut full = vec!["exec"];
    full.extend_from_slice(args);
    assert_eq!(cli(&full).expect("parses").unsupported_flag(), Some(flag));
}

#[rstest]
#[case::no_id(&["exec"])]
#[case::gid_not_a_number(&["exec", "-g", "x", "c1", "id"])]
#[case::preserve_fds_negative(&["exec", "--preserve-fds", "-1", "c1", "id"])]
#[case::ps_unknown_format(&["ps", "--format", "yaml", "c1"])]
#[case::pause_without_id(&["pause"])]
#[case::resume_two_ids(&["resume", "a", "b"])]
fn malformed_command_lines_are_refused(#[case] args: &[&str]) {
    assert!(cli(args).is_err(), "{args:?} parsed");
}

#[test]
fn ps_pause_and_resume_parse_as_runc_s() {
    match cli(&["ps", "-f", "json", "c1"]).expect("parses").command {
        Some(Command::Ps {
            format,
            id,
            options,
        }) => {
            assert_eq!(format, PsFormat::Json);
            assert_eq!(id, "c1");
            assert!(options.is_empty());
        }
        other => panic!("{other:?}"),
    }
    match cli(&["ps", "c1", "-o", "pid,comm"])
        .expect("parses")
        .command
    {
        Some(Command::Ps {
            format, options, ..
        }) => {
            assert_eq!(format, PsFormat::Table);
            assert_eq!(options, ["-o", "pid,comm"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        cli(&["pause", "c1"]).expect("parses").command,
        Some(Command::Pause { id }) if id == "c1"
    ));
    assert!(matches!(
        cli(&["resume", "c1"]).expect("parses").command,
        Some(Command::Resume { id }) if id == "c1"
    ));
}

// --- the process ------------------------------------------------------------------------------

/// The process section of a bundle's config.json.
fn base() -> Process {
    serde_json::from_value(json!({
        "terminal": false,
        "user": {"uid": 0, "gid": 0, "additionalGids": [1]},
        "args": ["sleep", "100"],
        "env": ["PATH=/bin"],
        "cwd": "/",
        "capabilities": {
            "bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]
        },
        "noNewPrivileges": false
    }))
    .expect("a process")
}

fn names(set: &Option<HashSet<Capability>>) -> Vec<String> {
    let mut v: Vec<String> = set.iter().flatten().map(|c| c.to_string()).collect();
    v.sort();
    v
}

#[test]
fn the_bundle_s_process_with_runc_s_options_applied() {
    let e = exec_args(&[
        "--cwd",
        "/tmp",
        "-e",
        "A=1",
        "-u",
        "1000:100",
        "-g",
        "5",
        "-c",
        "CAP_NET_ADMIN",
        "--no-new-privs",
        "c1",
        "id",
        "-u",
    ]);
    let p = process_from_flags(base(), &e).expect("valid");
    assert_eq!(
        p.args().as_deref(),
        Some(&["id".to_owned(), "-u".to_owned()][..])
    );
    assert_eq!(p.cwd(), Path::new("/tmp"));
    assert_eq!(
        p.env().as_deref(),
        Some(&["PATH=/bin".to_owned(), "A=1".to_owned()][..])
    );
    assert_eq!((p.user().uid(), p.user().gid()), (1000, 100));
    assert_eq!(p.user().additional_gids().as_deref(), Some(&[1, 5][..]));
    let c = p.capabilities().clone().expect("capabilities");
    for set in [c.bounding(), c.effective(), c.permitted()] {
        assert_eq!(names(set), ["KILL", "NET_ADMIN"]);
    }
    // Without inheritable capabilities in the config, none becomes ambient (as runc).
    assert!(c.ambient().is_none());
    assert_eq!(p.no_new_privileges(), Some(true));
    // And the plan the init's code applies.
    let plan = spec::process(&p).expect("a plan");
    assert_eq!(plan.uid, 1000);
    assert!(
        plan.caps
            .bounding
            .contains(&caps::Capability::CAP_NET_ADMIN)
    );
}

#[test]
fn a_cap_is_ambient_too_when_the_config_has_inheritable_ones() {
    let mut b = base();
    let mut c = b.capabilities().clone().expect("capabilities");
    c.set_inheritable(Some(HashSet::new()));
    b.set_capabilities(Some(c));
    let p = process_from_flags(b, &exec_args(&["-c", "NET_ADMIN", "c1", "id"])).expect("valid");
    let c = p.capabilities().clone().expect("capabilities");
    assert_eq!(names(c.ambient()), ["NET_ADMIN"]);
}

#[test]
fn without_options_only_the_command_changes() {
    let p = process_from_flags(base(), &exec_args(&["c1", "true"])).expect("valid");
    let mut expected = base();
    expected.set_args(Some(vec!["true".into()]));
    assert_eq!(p, expected);
}

#[rstest]
#[case::no_command(&["c1"], "exec needs a command after the container id (or --process)")]
#[case::relative_cwd(&["--cwd", "tmp", "c1", "id"], "--cwd tmp: must be absolute")]
#[case::user_name(&["-u", "root", "c1", "id"], "--user root: invalid uid \"root\"")]
#[case::bad_gid(&["-u", "0:wheel", "c1", "id"], "--user 0:wheel: invalid gid \"wheel\"")]
#[case::unknown_cap(&["-c", "CAP_BOGUS", "c1", "id"], "--cap CAP_BOGUS: unknown capability")]
fn bad_options_are_refused(#[case] args: &[&str], #[case] error: &str) {
    let err = process_from_flags(base(), &exec_args(args)).expect_err("invalid");
    assert_eq!(err.to_string(), error);
}

#[rstest]
#[case::cwd(&["-p", "p.json", "--cwd", "/", "c1"], "--cwd cannot be combined with --process (the process.json holds the whole process)")]
#[case::env(&["-p", "p.json", "-e", "A=1", "c1"], "--env cannot be combined with --process (the process.json holds the whole process)")]
#[case::user(&["-p", "p.json", "-u", "1", "c1"], "--user cannot be combined with --process (the process.json holds the whole process)")]
#[case::gids(&["-p", "p.json", "-g", "1", "c1"], "--additional-gids cannot be combined with --process (the process.json holds the whole process)")]
#[case::cap(&["-p", "p.json", "-c", "KILL", "c1"], "--cap cannot be combined with --process (the process.json holds the whole process)")]
#[case::nnp(&["-p", "p.json", "--no-new-privs", "c1"], "--no-new-privs cannot be combined with --process (the process.json holds the whole process)")]
#[case::command(&["-p", "p.json", "c1", "id"], "a command cannot be given with --process (the process.json holds its args)")]
fn process_json_is_the_whole_process(#[case] args: &[&str], #[case] error: &str) {
    let err = flags_absent_with_process(&exec_args(args)).expect_err("refused");
    assert_eq!(err.to_string(), error);
}

#[test]
fn a_process_json_is_read_whole() {
    let p = parse_process(
        br#"{"args": ["id"], "cwd": "/srv", "user": {"uid": 7, "gid": 8},
             "env": ["A=1"], "noNewPrivileges": true,
             "capabilities": {"bounding": ["CAP_CHOWN"]}}"#,
    )
    .expect("valid");
    assert_eq!(p.cwd(), Path::new("/srv"));
    assert_eq!(p.user().uid(), 7);
    let plan = spec::process(&p).expect("a plan");
    assert_eq!(plan.caps.bounding, [caps::Capability::CAP_CHOWN].into());
    assert!(plan.caps.effective.is_empty());
    assert!(plan.no_new_privileges);
}

#[rstest]
#[case::not_json(b"{" as &[u8], "process", "EOF while parsing an object")]
#[case::uid_not_a_number(
    br#"{"args": ["id"], "cwd": "/", "user": {"uid": "x", "gid": 0}}"#,
    "process.user.uid",
    "invalid type: string \"x\", expected u32"
)]
#[case::args_not_a_list(
    br#"{"args": "id", "cwd": "/", "user": {"uid": 0, "gid": 0}}"#,
    "process.args",
    "invalid type: string \"id\", expected a sequence"
)]
#[case::unknown_capability(br#"{"args": ["id"], "cwd": "/", "user": {"uid": 0, "gid": 0}, "capabilities": {"bounding": ["CAP_BOGUS"]}}"#, "process.capabilities.bounding[0]", "no variant for CAP_BOGUS")]
#[case::rlimit_type(br#"{"args": ["id"], "cwd": "/", "user": {"uid": 0, "gid": 0}, "rlimits": [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]}"#, "process.rlimits[0].type", "")]
fn a_bad_process_json_names_the_field(
    #[case] text: &[u8],
    #[case] field: &str,
    #[case] message: &str,
) {
    let (f, m) = parse_process(text).expect_err("invalid");
    assert_eq!(f, field, "{m}");
    assert!(m.contains(message), "{m}");
}

#[rstest]
#[case::empty_args(json!({"args": [], "cwd": "/", "user": {"uid": 0, "gid": 0}}), "process.args must not be empty")]
#[case::relative_cwd(json!({"args": ["id"], "cwd": "tmp", "user": {"uid": 0, "gid": 0}}), "invalid config: process.cwd: must be absolute")]
#[case::terminal(json!({"args": ["id"], "cwd": "/", "terminal": true, "user": {"uid": 0, "gid": 0}}), "process.terminal (no --console-socket: run without a terminal) is not supported by palisade-runtime")]
fn a_process_json_the_runtime_cannot_apply_is_refused(#[case] process: Value, #[case] error: &str) {
    let p = parse_process(process.to_string().as_bytes()).expect("well-formed");
    assert_eq!(spec::process(&p).expect_err("refused").to_string(), error);
}

#[rstest]
#[case::uid("5", 5, None)]
#[case::uid_and_gid("5:6", 5, Some(6))]
fn user_option(#[case] user: &str, #[case] uid: u32, #[case] gid: Option<u32>) {
    assert_eq!(parse_user(user).expect("valid"), (uid, gid));
}

#[test]
fn too_many_preserved_descriptors_are_refused() {
    assert_eq!(
        prepare_fds(u32::MAX).expect_err("too many").to_string(),
        "--preserve-fds 4294967295: too many"
    );
}
