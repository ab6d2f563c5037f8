//! Podman with storage, state and configuration of its own, run inside a lab host.
//!
//! Podman has no daemon: every `podman` call runs in the lab host (its namespaces and cgroup),
//! and the `conmon` of each container stays there. It is pointed away from every machine-wide
//! file:
//!
//! | setting | why |
//! |---|---|
//! | `--root`, `--runroot`, `--tmpdir` in the lab directory | own images, containers and state; never `/var/lib/containers` or `/run/containers` |
//! | `CONTAINERS_CONF` (our `containers.conf`) | never the machine's `containers.conf`/`libpod.conf` (this one's says `cgroup_manager = "systemd"`) |
//! | `CONTAINERS_STORAGE_CONF`, `CONTAINERS_REGISTRIES_CONF` | own storage settings; no registry is ever searched for a short name |
//! | `--cgroup-manager cgroupfs` | no systemd units: plain cgroup directories Palisade finds by name |
//! | `--cgroup-parent /palisade-<id>-engN/podman` on each run | podman has no daemon-wide cgroup parent |
//! | `--events-backend file` (in the lab directory) | no journald |
//! | `network_config_dir` (CNI or netavark configs) in the lab directory, `default_subnet = 10.203.0.0/24` | never `/etc/cni/net.d`; 10.x only |
//! | `--runtime <name or path>` | picks crun, runc or the bundled runtime per run |
//! | `default_ulimits` — only where root lacks CAP_SYS_RESOURCE | see [`ulimits_needed`] |

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use super::labhost::LabHost;
use super::{Engine, EngineError, cli, io_err};
use crate::exec;

/// The subnet of podman's default network in the lab host.
pub const DEFAULT_SUBNET: &str = "10.203.0.0/24";

/// Podman 4 lowers its own RLIMIT_NPROC hard limit to this before it starts conmon (seen with
/// strace: `setrlimit(RLIMIT_NPROC, {32768, 32768})`), so a container cannot be given more.
const PODMAN_NPROC_CAP: u64 = 32768;

const CALL_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct PodmanConfig {
    pub podman: PathBuf,
    /// OCI runtimes registered by name in `containers.conf` (`[engine.runtimes]`).
    pub runtimes: Vec<(String, PathBuf)>,
}

impl PodmanConfig {
    /// `podman` from PATH.
    pub fn detect() -> Result<PodmanConfig, EngineError> {
        Ok(PodmanConfig {
            podman: exec::find_program("podman")
                .ok_or_else(|| EngineError::Missing("podman".into()))?,
            runtimes: Vec::new(),
        })
    }

    pub fn with_runtime(mut self, name: &str, path: &Path) -> PodmanConfig {
        self.runtimes.push((name.to_owned(), path.to_owned()));
        self
    }
}

/// Podman set up in one lab host. Dropping it removes its containers, images, mounts and files.
pub struct Podman {
    lab: Arc<LabHost>,
    program: PathBuf,
    dir: PathBuf,
    cgroup_parent: String,
    closed: bool,
}

/// The container rlimits to give podman where root cannot raise a hard limit: podman asks for
/// RLIMIT_NOFILE and RLIMIT_NPROC of 1048576 by default, which the OCI runtime can only set
/// with CAP_SYS_RESOURCE. `None` where podman's defaults work (the way people run it).
pub fn ulimits_needed() -> Option<(u64, u64)> {
    let can_raise = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_RESOURCE,
    )
    .unwrap_or(false);
    if can_raise {
        return None;
    }
    let hard = |resource| {
        nix::sys::resource::getrlimit(resource)
            .map(|(_, hard)| hard)
            .unwrap_or(1024)
    };
    let nofile = hard(nix::sys::resource::Resource::RLIMIT_NOFILE);
    let nproc = hard(nix::sys::resource::Resource::RLIMIT_NPROC).min(PODMAN_NPROC_CAP);
    Some((nofile, nproc))
}

/// The `containers.conf` of a podman whose files are all in `dir`, knowing `runtimes` by name.
pub fn containers_conf(
    dir: &Path,
    ulimits: Option<(u64, u64)>,
    runtimes: &[(String, PathBuf)],
) -> String {
    let mut conf = String::from("[containers]\n");
    if let Some((nofile, nproc)) = ulimits {
        conf.push_str(&format!(
            "default_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]\n"
        ));
    }
    conf.push_str(&format!(
        "\n[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
         events_logfile_path = \"{events}\"\ntmp_dir = \"{tmp}\"\n\
         \n[network]\nnetwork_config_dir = \"{net}\"\ndefault_subnet = \"{DEFAULT_SUBNET}\"\n",
        events = dir.join("events.log").display(),
        tmp = dir.join("tmp").display(),
        net = dir.join("networks").display(),
    ));
    if !runtimes.is_empty() {
        conf.push_str("\n[engine.runtimes]\n");
        for (name, path) in runtimes {
            conf.push_str(&format!("{name:?} = [{:?}]\n", path.display().to_string()));
        }
    }
    conf
}

impl Podman {
    /// Writes podman's configuration and directories in `<lab dir>/podman`.
    pub fn new(lab: Arc<LabHost>, config: PodmanConfig) -> Result<Podman, EngineError> {
        let dir = lab.dir().join("podman");
        for sub in ["root", "runroot", "tmp", "networks"] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).map_err(io_err(format!("creating {}", path.display())))?;
        }
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            fs::write(&path, text).map_err(io_err(format!("writing {}", path.display())))
        };
        write(
            "containers.conf",
            containers_conf(&dir, ulimits_needed(), &config.runtimes),
        )?;
        write(
            "storage.conf",
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                dir.join("root").display(),
                dir.join("runroot").display()
            ),
        )?;
        write(
            "registries.conf",
            "unqualified-search-registries = []\n".into(),
        )?;
        let cgroup_parent = lab.cgroup_parent("podman");
        Ok(Podman {
            lab,
            program: config.podman,
            dir,
            cgroup_parent,
            closed: false,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Removes every container (killed at once) and image, then podman's mounts in the lab host
    /// and its files.
    pub fn close(mut self) -> Result<(), EngineError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), EngineError> {
        if std::mem::replace(&mut self.closed, true) {
            return Ok(());
        }
        let mut problems = Vec::new();
        for args in [
            &["rm", "--all", "--force", "--time", "0"][..],
            &["image", "rm", "--all", "--force"][..],
        ] {
            if let Err(e) = cli(self, args, CALL_TIMEOUT) {
                problems.push(e.to_string());
            }
        }
        // A conmon left by a container podman could not remove names podman's directories.
        self.lab.kill_naming(&self.dir);
        // Podman's overlay driver keeps its storage directory bind-mounted (private).
        if let Err(e) = self.lab.unmount_below(&self.dir) {
            problems.push(e.to_string());
        }
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => problems.push(format!("removing {}: {e}", self.dir.display())),
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Lab(format!(
                "cleaning podman up: {}",
                problems.join("; ")
            )))
        }
    }
}

impl Engine for Podman {
    fn name(&self) -> &'static str {
        "podman"
    }

    fn cli(&self) -> Command {
        let mut command = self.lab.command(&self.program);
        command
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            // A clean environment: podman also reads DOCKER_CONFIG, CONTAINER_HOST and
            // REGISTRY_AUTH_FILE, and none of the caller's may leak in.
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env(
                "HOME",
                std::env::var_os("HOME").unwrap_or_else(|| "/".into()),
            )
            .env("TMPDIR", self.dir.join("tmp"))
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .env(
                "CONTAINERS_REGISTRIES_CONF",
                self.dir.join("registries.conf"),
            );
        command
    }

    fn endpoint(&self) -> String {
        self.dir.join("root").display().to_string()
    }

    fn run_options(&self) -> Vec<String> {
        vec!["--cgroup-parent".into(), self.cgroup_parent.clone()]
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_conf_keeps_everything_in_the_lab_directory() {
        let conf = containers_conf(
            Path::new("/tmp/palisade-0a1b2c/eng0/podman"),
            None,
            &[("palisade-runtime".into(), "/bin/rt".into())],
        );
        assert!(
            conf.contains("[engine.runtimes]\n\"palisade-runtime\" = [\"/bin/rt\"]"),
            "{conf}"
        );
        assert!(conf.contains("cgroup_manager = \"cgroupfs\""), "{conf}");
        assert!(
            conf.contains("default_subnet = \"10.203.0.0/24\""),
            "{conf}"
        );
        assert!(
            conf.contains("network_config_dir = \"/tmp/palisade-0a1b2c/eng0/podman/networks\""),
            "{conf}"
        );
        assert!(!conf.contains("default_ulimits"), "{conf}");
        let limited = containers_conf(Path::new("/x"), Some((20000, 32768)), &[]);
        assert!(
            limited.contains(r#"default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]"#),
            "{limited}"
        );
    }
}
