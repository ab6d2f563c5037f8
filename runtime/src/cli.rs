//! Command line, shaped like runc's so that harnesses written for runc drive this runtime unchanged.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "palisade-runtime",
    about = "Palisade's reference OCI runtime (runc-compatible command line)",
    disable_version_flag = true
)]
pub struct Cli {
    /// Directory holding the state of containers.
    #[arg(long, global = true, default_value = "/run/palisade-runtime")]
    pub root: PathBuf,
    /// Also write errors to this file.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Format of the --log file.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Use MS_MOVE + chroot(2) instead of pivot_root(2). Deliberately escapable: for negative
    /// controls in tests only. Global, so `create --no-pivot` / `run --no-pivot` work as in runc.
    #[arg(long, global = true)]
    pub no_pivot: bool,
    /// Accepted for runc compatibility; has no effect.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Print the version.
    #[arg(short = 'v', long)]
    pub version: bool,

    // runc flags this runtime deliberately does not implement: accepted by the parser only so they
    // can be refused with a clear message instead of a generic parse error.
    #[arg(long, global = true, hide = true)]
    pub systemd_cgroup: bool,
    #[arg(long, global = true, hide = true)]
    pub rootless: Option<String>,
    #[arg(long, global = true, hide = true)]
    pub criu: Option<String>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Options shared by `create` and `run`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Bundle directory (holding config.json).
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    /// File to write the container init's host pid to.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Accepted for runc compatibility: this runtime never creates a session keyring.
    #[arg(long)]
    pub no_new_keyring: bool,
    #[arg(long, hide = true)]
    pub console_socket: Option<String>,
    /// Pass N more file descriptors to the container (3 up to 3+N-1), besides stdio.
    #[arg(long, value_name = "N")]
    pub preserve_fds: Option<u32>,
    /// Container id.
    pub id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PsFormat {
    Table,
    Json,
}

/// `exec`'s options, as runc's: `exec [options] <id> <command>...`, or `exec -p process.json <id>`.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The whole process as a process.json (then no other process option, and no command).
    #[arg(short = 'p', long)]
    pub process: Option<PathBuf>,
    /// Return once the process has started instead of waiting for it.
    #[arg(short, long)]
    pub detach: bool,
    /// File to write the process's host pid to.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Working directory in the container (absolute).
    #[arg(long)]
    pub cwd: Option<String>,
    /// Add an environment variable (KEY=VALUE); repeatable.
    #[arg(short, long)]
    pub env: Vec<String>,
    /// The user to run as: UID[:GID], numeric.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Add a supplementary group (numeric); repeatable.
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    /// Add a capability (CAP_…) to the bounding, effective and permitted sets; repeatable.
    #[arg(short = 'c', long = "cap")]
    pub caps: Vec<String>,
    /// Set no_new_privs for the process.
    #[arg(long)]
    pub no_new_privs: bool,
    /// Pass file descriptors 3 to 3+N-1 on to the process (all others are closed).
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    // runc options this runtime does not implement, refused by name.
    #[arg(short = 't', long, hide = true)]
    pub tty: bool,
    #[arg(long, hide = true)]
    pub console_socket: Option<String>,
    #[arg(long, hide = true)]
    pub process_label: Option<String>,
    #[arg(long, hide = true)]
    pub apparmor: Option<String>,
    #[arg(long, hide = true)]
    pub cgroup: Option<String>,
    #[arg(long, hide = true)]
    pub ignore_paused: bool,
    /// The container id, then the command and its arguments (everything after the id is the
    /// command's, as in runc).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ID> <COMMAND"
    )]
    pub args: Vec<String>,
}

impl ExecArgs {
    pub fn id(&self) -> &str {
        self.args.first().map(String::as_str).unwrap_or_default()
    }

    pub fn command(&self) -> &[String] {
        self.args.get(1..).unwrap_or_default()
    }

    /// runc options of `exec` that are parsed but not implemented.
    pub fn unsupported_flag(&self) -> Option<&'static str> {
        [
            (self.tty, "--tty"),
            (self.console_socket.is_some(), "--console-socket"),
            (self.process_label.is_some(), "--process-label"),
            (self.apparmor.is_some(), "--apparmor"),
            (self.cgroup.is_some(), "--cgroup"),
            (self.ignore_paused, "--ignore-paused"),
        ]
        .into_iter()
        .find_map(|(set, name)| set.then_some(name))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container; its process waits for `start`.
    Create(CreateArgs),
    /// Let a created container's process run.
    Start { id: String },
    /// Print the state of a container as OCI state JSON.
    State { id: String },
    /// Send a signal (default SIGTERM) to the container's init.
    Kill {
        /// Signal every process in the container's cgroup.
        #[arg(short, long)]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// Delete a container's resources.
    Delete {
        /// Kill a running container first.
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Run a process in a running container; exits with its exit code (unless --detach).
    Exec(ExecArgs),
    /// List the processes of a container (its cgroup's).
    Ps {
        /// table (the host's ps(1) output, filtered) or json (an array of host pids).
        #[arg(short, long, value_enum, default_value_t = PsFormat::Table)]
        format: PsFormat,
        id: String,
        /// Options for ps(1) (table format; default -ef).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        options: Vec<String>,
    },
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Print the runtime's features document (runtime-spec features.md) as JSON.
    Features,
    /// Create, start and wait for a container, then delete it; exits with its exit code.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return right after start instead of waiting.
        #[arg(short, long)]
        detach: bool,
    },
}

impl Cli {
    /// runc flags that are parsed but not implemented.
    pub fn unsupported_flag(&self) -> Option<&'static str> {
        if self.systemd_cgroup {
            return Some("--systemd-cgroup");
        }
        if self.rootless.is_some() {
            return Some("--rootless");
        }
        if self.criu.is_some() {
            return Some("--criu");
        }
        let create = match &self.command {
            Some(Command::Create(c)) => c,
            Some(Command::Run { create, .. }) => create,
            Some(Command::Exec(e)) => return e.unsupported_flag(),
            _ => return None,
        };
        if create.console_socket.is_some() {
            return Some("--console-socket");
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rstest::rstest;

    use super::*;

    fn parse(args: &[&str]) -> Cli {
        let mut argv = vec!["palisade-runtime"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("parses")
    }

    fn create_args(cli: &Cli) -> &CreateArgs {
        match &cli.command {
            Some(Command::Create(c)) => c,
            Some(Command::Run { create, .. }) => create,
            other => panic!("not create/run: {other:?}"),
        }
    }

    #[rstest]
    #[case::bundle_first(&["create", "--bundle", "/b", "c1"])]
    #[case::id_first(&["create", "c1", "--bundle", "/b"])]
    #[case::short_flag_last(&["create", "c1", "-b", "/b"])]
    #[case::equals(&["create", "--bundle=/b", "c1"])]
    fn create_takes_the_id_and_bundle_in_either_order(#[case] args: &[&str]) {
        let cli = parse(args);
        let c = create_args(&cli);
        assert_eq!(c.id, "c1");
        assert_eq!(c.bundle, Path::new("/b"));
        assert_eq!(cli.unsupported_flag(), None);
    }

    #[test]
    fn what_containerd_and_conmon_pass_parses() {
        // go-runc (containerd's shim) and conmon put global flags first, create flags after.
        let cli = parse(&[
            "--root",
            "/run/r",
            "--log",
            "/tmp/log.json",
            "--log-format",
            "json",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/b/pid",
            "--no-new-keyring",
            "--no-pivot",
            "c1",
        ]);
        assert_eq!(cli.root, Path::new("/run/r"));
        assert_eq!(cli.log.as_deref(), Some(Path::new("/tmp/log.json")));
        assert_eq!(cli.log_format, LogFormat::Json);
        assert!(cli.no_pivot);
        let c = create_args(&cli);
        assert!(c.no_new_keyring);
        assert_eq!(c.pid_file.as_deref(), Some(Path::new("/b/pid")));
        assert_eq!(cli.unsupported_flag(), None);
    }

    #[rstest]
    #[case::create(&["create", "--preserve-fds", "2", "c1"], Some(2))]
    #[case::run(&["run", "--preserve-fds=1", "-b", "/b", "c1"], Some(1))]
    #[case::absent(&["create", "c1"], None)]
    fn preserve_fds_is_accepted(#[case] args: &[&str], #[case] n: Option<u32>) {
        let cli = parse(args);
        assert_eq!(create_args(&cli).preserve_fds, n);
        assert_eq!(cli.unsupported_flag(), None);
    }

    #[rstest]
    #[case::systemd_cgroup(&["--systemd-cgroup", "create", "c1"], "--systemd-cgroup")]
    #[case::systemd_cgroup_after(&["create", "c1", "--systemd-cgroup"], "--systemd-cgroup")]
    #[case::console_socket(&["create", "--console-socket", "/s", "c1"], "--console-socket")]
    #[case::rootless(&["--rootless", "true", "state", "c1"], "--rootless")]
    fn unimplemented_runc_flags_are_named(#[case] args: &[&str], #[case] flag: &str) {
        assert_eq!(parse(args).unsupported_flag(), Some(flag));
    }

    #[test]
    fn features_is_a_verb() {
        assert!(matches!(
            parse(&["features"]).command,
            Some(Command::Features)
        ));
    }
}
