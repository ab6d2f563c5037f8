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
    #[arg(long, hide = true)]
    pub preserve_fds: Option<u32>,
    /// Container id.
    pub id: String,
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
            _ => return None,
        };
        if create.console_socket.is_some() {
            return Some("--console-socket");
        }
        if create.preserve_fds.is_some_and(|n| n > 0) {
            return Some("--preserve-fds");
        }
        None
    }
}
