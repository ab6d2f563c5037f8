//! `ps`: the processes of a container, i.e. of its cgroup, as runc lists them: a JSON array of
//! host pids, or the lines of the host's ps(1) that belong to them.

use std::path::Path;
use std::process::Command;

use crate::cgroups;
use crate::cli::PsFormat;
use crate::state::{ContainerState, StateError};

#[derive(Debug, thiserror::Error)]
pub enum PsError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("ps options are only accepted with --format table")]
    OptionsWithJson,
    #[error("cannot run ps: {0}")]
    Run(std::io::Error),
    #[error("ps failed: {0}")]
    Failed(String),
    #[error("ps printed no PID column: {0:?}")]
    NoPidColumn(String),
}

pub fn ps(root: &Path, id: &str, format: PsFormat, options: &[String]) -> Result<(), PsError> {
    let st = ContainerState::load(root, id)?;
    let pids = cgroups::pids(&st.cgroup);
    match format {
        PsFormat::Json => {
            if !options.is_empty() {
                return Err(PsError::OptionsWithJson);
            }
            println!("{}", serde_json::Value::from(pids));
        }
        PsFormat::Table => {
            let default = ["-ef".to_owned()];
            let options = if options.is_empty() {
                &default[..]
            } else {
                options
            };
            let out = Command::new("ps")
                .args(options)
                .output()
                .map_err(PsError::Run)?;
            if !out.status.success() {
                return Err(PsError::Failed(
                    String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                ));
            }
            let text = String::from_utf8_lossy(&out.stdout);
            for line in table(&text, &pids)? {
                println!("{line}");
            }
        }
    }
    Ok(())
}

/// The header of ps(1)'s output and the lines whose PID is one of `pids`.
fn table<'a>(text: &'a str, pids: &[i32]) -> Result<Vec<&'a str>, PsError> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let column = header
        .split_whitespace()
        .position(|c| c == "PID")
        .ok_or_else(|| PsError::NoPidColumn(header.to_owned()))?;
    let mut shown = vec![header];
    shown.extend(lines.filter(|l| {
        l.split_whitespace()
            .nth(column)
            .and_then(|p| p.parse::<i32>().ok())
            .is_some_and(|p| pids.contains(&p))
    }));
    Ok(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_keeps_the_header_and_the_container_s_lines() {
        let text = "UID          PID    PPID  C STIME TTY          TIME CMD\n\
                    root           1       0  0 10:00 ?        00:00:01 /sbin/init\n\
                    root        4242       1  0 10:01 ?        00:00:00 sleep 100\n\
                    root        4243    4242  0 10:01 ?        00:00:00 sh\n";
        assert_eq!(
            table(text, &[4242]).expect("a table"),
            [
                "UID          PID    PPID  C STIME TTY          TIME CMD",
                "root        4242       1  0 10:01 ?        00:00:00 sleep 100"
            ]
        );
        assert!(matches!(
            table("USER COMMAND\n", &[1]),
            Err(PsError::NoPidColumn(_))
        ));
    }
}
