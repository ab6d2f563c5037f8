//! Palisade's bundled reference OCI runtime.
//!
//! Layout follows youki/crun: one module per lifecycle verb, `container::init` for the code that
//! runs inside the new container, `cgroups` behind one trait, and all `unsafe` in `sys`.
//! Every verb first loads and validates its input (spec → plan), then performs side effects.

use std::process::ExitCode;

use clap::Parser;

mod cgroups;
mod cli;
mod container;
mod create;
mod delete;
mod exec;
mod features;
mod hooks;
mod kill;
mod logging;
mod mountinfo;
mod pause;
mod ps;
mod run;
mod seccomp;
mod spec;
mod start;
mod state;
mod sys;
mod syscall;

/// Version of the OCI runtime spec this runtime implements.
pub const OCI_SPEC_VERSION: &str = "1.0.2";

/// Entry point of the `palisade-runtime` binary.
pub fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if cli.version {
        println!(
            "palisade-runtime version {}\nspec: {OCI_SPEC_VERSION}",
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    match dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            logging::error(cli.log.as_deref(), cli.log_format, &e.to_string());
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: &cli::Cli) -> anyhow::Result<ExitCode> {
    use cli::Command;
    if let Some(flag) = cli.unsupported_flag() {
        anyhow::bail!("{flag} is not supported by palisade-runtime");
    }
    let root = cli.root.as_path();
    // Failures the spec has logged rather than fatal (poststart and poststop hooks).
    let warn = |msg: &str| logging::warn(cli.log.as_deref(), cli.log_format, msg);
    match &cli.command {
        None => anyhow::bail!("no command given (try --help)"),
        Some(Command::Create(args)) => {
            create::create(root, args, cli.no_pivot, &warn)?;
        }
        Some(Command::Start { id }) => start::start(root, id, &warn)?,
        Some(Command::State { id }) => {
            let json = state::state(root, id)?;
            println!("{json}");
        }
        Some(Command::Kill { all, id, signal }) => kill::kill(root, id, signal.as_deref(), *all)?,
        Some(Command::Delete { force, id }) => delete::delete(root, id, *force, &warn)?,
        Some(Command::Features) => println!("{}", features::json()),
        Some(Command::Exec(args)) => {
            let code = exec::exec(root, args)?;
            return Ok(ExitCode::from(code));
        }
        Some(Command::Ps {
            format,
            id,
            options,
        }) => ps::ps(root, id, *format, options)?,
        Some(Command::Pause { id }) => pause::pause(root, id)?,
        Some(Command::Resume { id }) => pause::resume(root, id)?,
        Some(Command::Run { create, detach }) => {
            let code = run::run(root, create, cli.no_pivot, *detach, &warn)?;
            return Ok(ExitCode::from(code));
        }
    }
    Ok(ExitCode::SUCCESS)
}
