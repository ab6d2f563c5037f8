//! The container a scenario describes ([`ContainerSpec`], an OCI config edited through named
//! helpers) and its OCI bundle on disk: a rootfs holding the probe, and config.json.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder,
    LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxResources,
    LinuxResourcesBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
    get_default_mounts, get_default_namespaces,
};
use palisade_probe::Request;

/// The lowest spec version that covers every scenario: crun 1.8 rejects newer ones.
pub const OCI_VERSION: &str = "1.0.2";
/// Where the probe lives inside every rootfs.
pub const PROBE_PATH: &str = "/palisade-probe";

/// Marks a rootfs as Palisade's, so "this is not the host's /etc/os-release" is testable.
pub fn os_release(run_id: &str) -> String {
    format!(
        "ID=palisade\nNAME=\"Palisade probe rootfs\"\nPRETTY_NAME=\"Palisade probe rootfs ({run_id})\"\n"
    )
}

/// The capabilities the OCI reference config (`runc spec`) grants: the baseline for every container.
pub fn default_capabilities() -> Capabilities {
    [
        Capability::AuditWrite,
        Capability::Kill,
        Capability::NetBindService,
    ]
    .into_iter()
    .collect()
}

/// A capability set as the bit mask `/proc/<pid>/status` shows (unknown names are left out).
pub fn capability_mask(set: &Capabilities) -> u64 {
    palisade_common::capabilities::mask(set)
}

/// A container as a scenario wants it: an OCI spec, edited through named helpers.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub name: String,
    pub spec: Spec,
    /// Who owns the rootfs on the host (uid, gid): a user namespace's mapped root must be able
    /// to write it. `None`: the host's root.
    pub rootfs_owner: Option<(u32, u32)>,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("building the OCI config for `{name}`: {source}")]
    Config {
        name: String,
        source: oci_spec::OciSpecError,
    },
    #[error("writing the bundle at {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
}

impl ContainerSpec {
    /// The reference configuration: the OCI default namespaces (pid, net, ipc, uts, mnt, cgroup),
    /// mounts and capabilities, running the probe in request/reply mode on stdin/stdout
    /// ([`ContainerSpec::one_shot`] gives it a single request instead).
    pub fn new(name: &str) -> Result<ContainerSpec, BundleError> {
        let config_err = |source| BundleError::Config {
            name: name.to_owned(),
            source,
        };
        let caps = default_capabilities();
        let capabilities = LinuxCapabilitiesBuilder::default()
            .bounding(caps.clone())
            .effective(caps.clone())
            .permitted(caps)
            .inheritable(Capabilities::new())
            .ambient(Capabilities::new())
            .build()
            .map_err(config_err)?;
        let process = ProcessBuilder::default()
            .terminal(false)
            .user(
                UserBuilder::default()
                    .uid(0u32)
                    .gid(0u32)
                    .build()
                    .map_err(config_err)?,
            )
            .args(vec![
                PROBE_PATH.to_owned(),
                palisade_probe::protocol::SERVE.to_owned(),
            ])
            .env(vec!["PATH=/".to_owned()])
            .cwd("/")
            .capabilities(capabilities)
            .no_new_privileges(true)
            .build()
            .map_err(config_err)?;
        let linux = LinuxBuilder::default()
            .namespaces(get_default_namespaces())
            .masked_paths(oci_spec::runtime::get_default_maskedpaths())
            .readonly_paths(oci_spec::runtime::get_default_readonly_paths())
            .build()
            .map_err(config_err)?;
        let spec = SpecBuilder::default()
            .version(OCI_VERSION)
            .root(
                RootBuilder::default()
                    .path("rootfs")
                    .readonly(false)
                    .build()
                    .map_err(config_err)?,
            )
            .process(process)
            .hostname(name)
            .mounts(get_default_mounts())
            .linux(linux)
            .build()
            .map_err(config_err)?;
        Ok(ContainerSpec {
            name: name.to_owned(),
            spec,
            rootfs_owner: None,
        })
    }

    /// Runs the probe with `request` as its only argument: it answers once and exits.
    pub fn one_shot(mut self, request: &Request) -> Self {
        if let Some(process) = self.spec.process_mut() {
            process.set_args(Some(vec![PROBE_PATH.to_owned(), request.to_arg()]));
        }
        self
    }

    pub fn namespaces(&self) -> Vec<LinuxNamespace> {
        self.spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default()
    }

    fn set_namespaces(&mut self, namespaces: Vec<LinuxNamespace>) {
        if let Some(linux) = self.spec.linux_mut() {
            linux.set_namespaces(Some(namespaces));
        }
    }

    /// Exactly these namespace types, each new.
    pub fn only_namespaces(mut self, kinds: &[LinuxNamespaceType]) -> Self {
        let namespaces = kinds
            .iter()
            .map(|&kind| new_namespace(kind, None))
            .collect();
        self.set_namespaces(namespaces);
        if !kinds.contains(&LinuxNamespaceType::Uts) {
            // A hostname without a UTS namespace of its own is a config error for every runtime.
            self.spec.set_hostname(None);
        }
        self
    }

    /// A user namespace of its own, root inside mapped to `host_id` on the host (uids and gids,
    /// `size` ids from there), with the rootfs owned by that mapped root.
    pub fn user_namespace(self, host_id: u32, size: u32) -> Self {
        let mapping = |_| {
            oci_spec::runtime::LinuxIdMappingBuilder::default()
                .container_id(0u32)
                .host_id(host_id)
                .size(size)
                .build()
                .unwrap_or_default()
        };
        let mut spec = self.add_namespace(LinuxNamespaceType::User).edit(|s| {
            if let Some(linux) = s.linux_mut() {
                linux.set_uid_mappings(Some(vec![mapping(())]));
                linux.set_gid_mappings(Some(vec![mapping(())]));
            }
        });
        spec.rootfs_owner = Some((host_id, host_id));
        spec
    }

    /// The process to start in this container with `exec`: its own process, running the probe in
    /// request/reply mode.
    pub fn exec_process(&self) -> oci_spec::runtime::Process {
        let mut process = self.spec.process().clone().unwrap_or_default();
        process.set_args(Some(vec![
            PROBE_PATH.to_owned(),
            palisade_probe::protocol::SERVE.to_owned(),
        ]));
        process
    }

    /// Shares the runtime's namespace of this type instead of getting a new one.
    pub fn without_namespace(mut self, kind: LinuxNamespaceType) -> Self {
        let namespaces = self
            .namespaces()
            .into_iter()
            .filter(|ns| ns.typ() != kind)
            .collect();
        self.set_namespaces(namespaces);
        if kind == LinuxNamespaceType::Uts {
            // A hostname without a UTS namespace of its own is a config error for every runtime.
            self.spec.set_hostname(None);
        }
        if kind == LinuxNamespaceType::User
            && let Some(linux) = self.spec.linux_mut()
        {
            // Id mappings without a user namespace of its own are a config error too.
            linux.set_uid_mappings(None);
            linux.set_gid_mappings(None);
        }
        self
    }

    /// Joins an existing namespace (OCI `path`) instead of creating one.
    pub fn join_namespace(mut self, kind: LinuxNamespaceType, path: &Path) -> Self {
        let mut namespaces: Vec<_> = self
            .namespaces()
            .into_iter()
            .filter(|ns| ns.typ() != kind)
            .collect();
        namespaces.push(new_namespace(kind, Some(path)));
        self.set_namespaces(namespaces);
        self
    }

    /// Adds a new namespace of this type (no path), replacing any entry of that type.
    pub fn add_namespace(mut self, kind: LinuxNamespaceType) -> Self {
        let mut namespaces: Vec<_> = self
            .namespaces()
            .into_iter()
            .filter(|ns| ns.typ() != kind)
            .collect();
        namespaces.push(new_namespace(kind, None));
        self.set_namespaces(namespaces);
        self
    }

    /// Adds a mount after the config's others.
    pub fn mount(self, mount: oci_spec::runtime::Mount) -> Self {
        self.edit(|s| s.mounts_mut().get_or_insert_with(Vec::new).push(mount))
    }

    /// `linux.seccomp`.
    pub fn seccomp(self, profile: oci_spec::runtime::LinuxSeccomp) -> Self {
        self.edit(|s| {
            if let Some(linux) = s.linux_mut() {
                linux.set_seccomp(Some(profile));
            }
        })
    }

    /// `linux.rootfsPropagation`.
    pub fn rootfs_propagation(self, mode: &str) -> Self {
        self.edit(|s| {
            if let Some(linux) = s.linux_mut() {
                linux.set_rootfs_propagation(Some(mode.to_owned()));
            }
        })
    }

    pub fn hostname(mut self, hostname: &str) -> Self {
        self.spec.set_hostname(Some(hostname.to_owned()));
        self
    }

    /// Grants `extra` on top of the baseline in the bounding, effective and permitted sets.
    pub fn grant(mut self, extra: &[Capability]) -> Self {
        if let Some(process) = self.spec.process_mut() {
            let mut caps = process.capabilities().clone().unwrap_or_default();
            let add = |set: &Option<Capabilities>| {
                let mut set = set.clone().unwrap_or_default();
                set.extend(extra.iter().copied());
                Some(set)
            };
            let (bounding, effective, permitted) = (
                add(caps.bounding()),
                add(caps.effective()),
                add(caps.permitted()),
            );
            caps.set_bounding(bounding)
                .set_effective(effective)
                .set_permitted(permitted);
            process.set_capabilities(Some(caps));
        }
        self
    }

    /// Applies any other change to the OCI config.
    pub fn edit(mut self, change: impl FnOnce(&mut Spec)) -> Self {
        change(&mut self.spec);
        self
    }
}

/// Resource limits for a container's config.
impl ContainerSpec {
    /// CFS bandwidth: at most `quota` µs of CPU per `period` µs.
    pub fn cpu_quota(self, quota: i64, period: u64) -> Self {
        self.resources(|r| {
            let cpu = LinuxCpuBuilder::default()
                .quota(quota)
                .period(period)
                .build()
                .unwrap_or_default();
            r.set_cpu(Some(cpu));
        })
    }

    /// At most `limit` tasks (processes and threads) in the container's cgroup.
    pub fn pids_limit(self, limit: i64) -> Self {
        self.resources(|r| {
            let pids = LinuxPidsBuilder::default()
                .limit(limit)
                .build()
                .unwrap_or_default();
            r.set_pids(Some(pids));
        })
    }

    /// Places the container in cgroup `path` (instead of the run's default).
    pub fn cgroups_path(self, path: &str) -> Self {
        self.edit(|spec| {
            if let Some(linux) = spec.linux_mut() {
                linux.set_cgroups_path(Some(path.into()));
            }
        })
    }

    fn resources(self, change: impl FnOnce(&mut LinuxResources)) -> Self {
        self.edit(|spec| {
            if let Some(linux) = spec.linux_mut() {
                let mut resources = linux.resources().clone().unwrap_or_else(|| {
                    LinuxResourcesBuilder::default().build().unwrap_or_default()
                });
                change(&mut resources);
                linux.set_resources(Some(resources));
            }
        })
    }
}

fn new_namespace(kind: LinuxNamespaceType, path: Option<&Path>) -> LinuxNamespace {
    let builder = LinuxNamespaceBuilder::default().typ(kind);
    let builder = match path {
        Some(path) => builder.path(path),
        None => builder,
    };
    // Both fields are set, so building cannot fail; fall back to a plain new namespace regardless.
    builder.build().unwrap_or_default()
}

/// A bundle on disk.
#[derive(Debug)]
pub struct Bundle {
    pub dir: PathBuf,
}

impl Bundle {
    /// Writes `spec` and a rootfs (probe, os-release, mount points) under `dir`.
    /// `probe` is hard-linked from the run's shared copy when it can be, copied otherwise.
    pub fn write(
        dir: &Path,
        spec: &ContainerSpec,
        probe: &Path,
        os_release: &str,
    ) -> Result<Bundle, BundleError> {
        let write_err = |path: &Path| {
            let path = path.to_owned();
            move |source| BundleError::Write { path, source }
        };
        let rootfs = dir.join("rootfs");
        for sub in ["proc", "dev", "sys", "tmp", "etc"] {
            let path = rootfs.join(sub);
            fs::create_dir_all(&path).map_err(write_err(&path))?;
        }
        let tmp = rootfs.join("tmp");
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).map_err(write_err(&tmp))?;
        let os_release_path = rootfs.join("etc/os-release");
        fs::write(&os_release_path, os_release).map_err(write_err(&os_release_path))?;
        let probe_dst = rootfs.join(PROBE_PATH.trim_start_matches('/'));
        let linked = match spec.rootfs_owner {
            // A copy of its own: chowning a hard link would chown the run's shared probe.
            Some(_) => Err(io::Error::from(io::ErrorKind::Unsupported)),
            None => fs::hard_link(probe, &probe_dst),
        };
        match linked {
            Ok(()) => {}
            // Never copy over an existing file: it may be a hard link to the run's shared probe,
            // which `copy` would truncate for every container. Bundles are always fresh.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(write_err(&probe_dst)(e));
            }
            Err(_) => {
                fs::copy(probe, &probe_dst).map_err(write_err(&probe_dst))?;
            }
        }
        if let Some((uid, gid)) = spec.rootfs_owner {
            chown_tree(&rootfs, uid, gid).map_err(write_err(&rootfs))?;
        }
        let config = dir.join("config.json");
        spec.spec.save(&config).map_err(|e| BundleError::Write {
            path: config.clone(),
            source: io::Error::other(e.to_string()),
        })?;
        Ok(Bundle {
            dir: dir.to_owned(),
        })
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
}

/// chown -R, without following symlinks.
fn chown_tree(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if fs::symlink_metadata(path)?.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ContainerSpec {
        ContainerSpec::new("c").expect("reference spec builds")
    }

    fn kinds(spec: &ContainerSpec) -> Vec<LinuxNamespaceType> {
        spec.namespaces().iter().map(|ns| ns.typ()).collect()
    }

    #[test]
    fn reference_config_is_oci_1_0_2_with_the_default_namespaces() {
        let spec = spec();
        assert_eq!(spec.spec.version(), OCI_VERSION);
        assert_eq!(kinds(&spec).len(), 6);
        assert_eq!(
            spec.spec.process().as_ref().and_then(|p| p.args().clone()),
            Some(vec![PROBE_PATH.to_owned(), "serve".to_owned()])
        );
        let once = spec.one_shot(&Request::Facts);
        assert_eq!(
            once.spec.process().as_ref().and_then(|p| p.args().clone()),
            Some(vec![PROBE_PATH.to_owned(), r#"{"op":"facts"}"#.to_owned()])
        );
    }

    #[test]
    fn the_baseline_mask_is_audit_write_kill_net_bind_service() {
        assert_eq!(
            capability_mask(&default_capabilities()),
            (1 << 29) | (1 << 5) | (1 << 10)
        );
    }

    #[test]
    fn removing_uts_also_drops_the_hostname() {
        let spec = spec().without_namespace(LinuxNamespaceType::Uts);
        assert!(!kinds(&spec).contains(&LinuxNamespaceType::Uts));
        assert_eq!(spec.spec.hostname(), &None);
    }

    #[test]
    fn joining_replaces_the_new_namespace() {
        let spec = spec().join_namespace(LinuxNamespaceType::Network, Path::new("/proc/1/ns/net"));
        let net: Vec<_> = spec
            .namespaces()
            .into_iter()
            .filter(|ns| ns.typ() == LinuxNamespaceType::Network)
            .collect();
        assert_eq!(net.len(), 1);
        assert_eq!(net[0].path().as_deref(), Some(Path::new("/proc/1/ns/net")));
    }

    #[test]
    fn grant_adds_to_three_sets_only() {
        let spec = spec().grant(&[Capability::SysAdmin]);
        let caps = spec
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.capabilities().clone())
            .expect("caps");
        for set in [caps.bounding(), caps.effective(), caps.permitted()] {
            assert!(
                set.as_ref()
                    .is_some_and(|s| s.contains(&Capability::SysAdmin))
            );
        }
        assert!(caps.inheritable().as_ref().is_some_and(|s| s.is_empty()));
    }

    #[test]
    fn bundle_holds_probe_os_release_and_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let probe = dir.path().join("probe-src");
        fs::write(&probe, b"probe").expect("write probe");
        let bundle =
            Bundle::write(&dir.path().join("b"), &spec(), &probe, "ID=palisade\n").expect("bundle");
        assert!(bundle.rootfs().join("palisade-probe").is_file());
        assert_eq!(
            fs::read_to_string(bundle.rootfs().join("etc/os-release")).expect("os-release"),
            "ID=palisade\n"
        );
        let config: serde_json::Value = serde_json::from_str(
            &fs::read_to_string(bundle.dir.join("config.json")).expect("config"),
        )
        .expect("json");
        assert_eq!(config["ociVersion"], OCI_VERSION);
    }
}
