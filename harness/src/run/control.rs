//! Negative controls, declared: each scenario names the runtime mistake under which it must FAIL
//! as a value, and the harness applies it. The scenario's body is the same in both modes, and the
//! README's "negative control" column is this declaration's own description.
//!
//! A control models a *runtime's* mistake: a config the runtime got wrong ([`Control::Config`]),
//! or a defect switched on in the runtime ([`Control::Defect`]). A change to Palisade's own lab
//! ([`Control::Lab`]) is used only where no config edit can express the mistake.

use std::fmt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Capability, LinuxNamespaceType, MountBuilder};
use palisade_common::namespaces::proc_name;

use crate::driver::bundle::ContainerSpec;

/// A scenario's negative control.
#[derive(Debug, Clone, Copy)]
pub enum Control {
    /// Every container the scenario makes whose label matches gets this config change, after the
    /// scenario's own edits.
    Config { edit: Edit, to: Target },
    /// The runtime under test, with this defect switched on.
    Defect(Defect),
    /// Palisade's lab changes: only where no config edit can express the mistake.
    Lab(LabChange),
}

impl Control {
    /// The edit applied to every container of the scenario.
    pub const fn config(edit: Edit) -> Control {
        Control::Config {
            edit,
            to: Target::All,
        }
    }

    /// The edit applied to the container(s) labelled `label` only.
    pub const fn config_of(label: &'static str, edit: Edit) -> Control {
        Control::Config {
            edit,
            to: Target::Label(label),
        }
    }

    /// The config edit this control makes to a container labelled `label`, if any.
    pub fn edit_for(&self, label: &str) -> Option<Edit> {
        match *self {
            Control::Config { edit, to } if to.matches(label) => Some(edit),
            _ => None,
        }
    }
}

impl fmt::Display for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Control::Config {
                edit,
                to: Target::All,
            } => write!(f, "{edit}"),
            Control::Config {
                edit,
                to: Target::Label(label),
            } => write!(f, "container `{label}`: {edit}"),
            Control::Defect(defect) => write!(f, "{defect}"),
            Control::Lab(change) => write!(f, "{change}"),
        }
    }
}

/// Which containers a config edit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    All,
    /// The containers whose spec carries this label (the first argument of `Ctx::spec`).
    Label(&'static str),
}

impl Target {
    fn matches(&self, label: &str) -> bool {
        match self {
            Target::All => true,
            Target::Label(wanted) => *wanted == label,
        }
    }
}

/// Where a bind mount of a control comes from on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPath {
    /// A fixed host path.
    Fixed(&'static str),
    /// The run's own directory (it holds the host markers scenarios look for).
    RunDir,
}

/// A config change that models a runtime's mistake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    /// The namespace type is left out: the container shares the runtime's.
    WithoutNamespace(LinuxNamespaceType),
    /// The namespace entry joins the host's (the calling thread's) namespace of that type.
    JoinHostNamespace(LinuxNamespaceType),
    /// The namespace entry joins that of the container labelled `of`.
    JoinNamespaceOf {
        kind: LinuxNamespaceType,
        of: &'static str,
    },
    /// The namespace entry loses its `path`: a runtime that ignores it makes a new, empty one.
    NamespaceWithoutPath(LinuxNamespaceType),
    /// The network entry joins the lab host's network namespace.
    JoinLabHostNetwork,
    NoHostname,
    /// One path dropped from `linux.maskedPaths`.
    DropMaskedPath(&'static str),
    /// `linux.readonlyPaths` narrowed: `from` replaced by `to`, a path below it.
    NarrowReadonlyPath {
        from: &'static str,
        to: &'static str,
    },
    /// A bind mount the scenario did not configure: the host's `source` at `destination`, as a
    /// runtime that adds mounts of its own would make.
    ExtraBind {
        source: &'static str,
        destination: &'static str,
    },
    /// A device node the scenario did not configure, in `linux.devices`.
    ExtraDevice {
        path: &'static str,
        major: i64,
        minor: i64,
    },
    /// `/sys` and `/sys/fs/cgroup` mounted without `ro`.
    SysReadWrite,
    /// No `linux.seccomp`: the container runs unconfined.
    NoSeccomp,
    /// The mount at `destination` gets the option `to` instead of `from`.
    MountOption {
        destination: &'static str,
        from: &'static str,
        to: &'static str,
    },
    /// An allow-all rule appended to `linux.resources.devices`.
    AllowAllDevices,
    /// This `process.rlimits` entry set to other values.
    Rlimit {
        name: &'static str,
        soft: u64,
        hard: u64,
    },
    Grant(Capability),
    NoNewPrivileges(bool),
    RootReadonly(bool),
    /// A host path bind-mounted into the container at its own host path, read-only.
    BindHost(HostPath),
    /// A host file bind-mounted over the same path inside, read-only.
    BindHostFile(&'static str),
    /// A small tmpfs over this path inside the container.
    Tmpfs(&'static str),
    RootfsPropagation(&'static str),
    /// `rootfsPropagation: shared`, and the bind mount at this destination made `rshared`.
    Bidirectional(&'static str),
    NoCpuQuota,
    CpuQuota(i64),
    NoPidsLimit,
    /// The cgroupsPath names a sibling: the configured path with this suffix.
    CgroupsPathSuffix(&'static str),
    /// The container is put on the trial's engine network `role` instead (engines only).
    OnNetwork(&'static str),
    /// One named volume at this path, shared by every container of the trial: a writable layer
    /// they all share instead of one each (engines only).
    SharedVolume(&'static str),
    /// The image's own layer holding this directory, bound read-write at it: the container
    /// writes into the image (engines only).
    BindImageLayer(&'static str),
}

/// What an edit needs to know about the run and the scenario so far.
pub trait EditEnv {
    fn run_dir(&self) -> &Path;
    /// The init's host pid of the container labelled `label`, if one was made.
    fn pid_of(&self, label: &str) -> Option<i32>;
    fn lab_host_network(&self) -> Option<PathBuf>;
    /// The host's namespace of this kind (`ipc`), as a path a config can join: the namespace
    /// the runtime itself runs in (for an engine, its host's).
    fn host_namespace_path(&self, kind: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/{kind}", std::process::id()))
    }
    /// A name of this trial's own (an engine network or volume): `palisade-<run>-<trial>-<what>`.
    fn trial_name(&self, what: &str) -> String {
        format!("palisade-{what}")
    }
    /// The image layer (a host directory) that holds `path` of the image, for an engine.
    fn image_layer_holding(&self, path: &Path) -> Option<PathBuf> {
        let _ = path;
        None
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("the control needs {0}, which the scenario has not made yet")]
    Missing(String),
    #[error("the host cannot grant {0} (not in its bounding set)")]
    CannotGrant(String),
}

impl Edit {
    /// Applies the edit to `spec`.
    pub fn apply(
        &self,
        spec: ContainerSpec,
        env: &dyn EditEnv,
    ) -> Result<ContainerSpec, EditError> {
        use oci_spec::runtime::LinuxNamespaceType::{Network, Uts};
        Ok(match *self {
            Edit::WithoutNamespace(kind) => spec.without_namespace(kind),
            Edit::JoinHostNamespace(kind) => {
                let path = env.host_namespace_path(proc_name(kind));
                spec.join_namespace(kind, &path)
            }
            Edit::JoinNamespaceOf { kind, of } => {
                let pid = env
                    .pid_of(of)
                    .ok_or_else(|| EditError::Missing(format!("the container `{of}`")))?;
                let path = format!("/proc/{pid}/ns/{}", proc_name(kind));
                let spec = spec.join_namespace(kind, Path::new(&path));
                if kind == Uts {
                    // A hostname in a joined UTS namespace would rename the other container.
                    spec.edit(|s| {
                        s.set_hostname(None);
                    })
                } else {
                    spec
                }
            }
            Edit::NamespaceWithoutPath(kind) => spec.without_namespace(kind).add_namespace(kind),
            Edit::JoinLabHostNetwork => {
                let path = env
                    .lab_host_network()
                    .ok_or_else(|| EditError::Missing("a network lab".into()))?;
                spec.join_namespace(Network, &path)
            }
            Edit::NoHostname => spec.edit(|s| {
                s.set_hostname(None);
            }),
            Edit::DropMaskedPath(path) => spec.edit(|s| {
                if let Some(linux) = s.linux_mut() {
                    let kept: Vec<String> = linux
                        .masked_paths()
                        .iter()
                        .flatten()
                        .filter(|p| p.as_str() != path)
                        .cloned()
                        .collect();
                    linux.set_masked_paths(Some(kept));
                }
            }),
            Edit::NarrowReadonlyPath { from, to } => spec.edit(|s| {
                if let Some(linux) = s.linux_mut() {
                    let narrowed: Vec<String> = linux
                        .readonly_paths()
                        .iter()
                        .flatten()
                        .map(|p| if p == from { to.to_owned() } else { p.clone() })
                        .collect();
                    linux.set_readonly_paths(Some(narrowed));
                }
            }),
            Edit::ExtraBind {
                source,
                destination,
            } => spec.mount(bind(
                Path::new(source),
                Path::new(destination),
                &["rbind", "ro"],
            )),
            Edit::ExtraDevice { path, major, minor } => spec.edit(|s| {
                let device = oci_spec::runtime::LinuxDeviceBuilder::default()
                    .path(path)
                    .typ(oci_spec::runtime::LinuxDeviceType::C)
                    .major(major)
                    .minor(minor)
                    .file_mode(0o600u32)
                    .build()
                    .unwrap_or_default();
                if let Some(linux) = s.linux_mut() {
                    linux
                        .devices_mut()
                        .get_or_insert_with(Vec::new)
                        .push(device);
                }
            }),
            Edit::SysReadWrite => {
                let spec = edit_mount_options(spec, "/sys", |o| o.retain(|o| o != "ro"));
                edit_mount_options(spec, "/sys/fs/cgroup", |o| o.retain(|o| o != "ro"))
            }
            Edit::NoSeccomp => spec.edit(|s| {
                if let Some(linux) = s.linux_mut() {
                    linux.set_seccomp(None);
                }
            }),
            Edit::MountOption {
                destination,
                from,
                to,
            } => edit_mount_options(spec, destination, |options| {
                for option in options.iter_mut().filter(|o| o.as_str() == from) {
                    to.clone_into(option);
                }
            }),
            Edit::AllowAllDevices => spec.edit(|s| {
                let allow_all = oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
                    .allow(true)
                    .access("rwm")
                    .build()
                    .unwrap_or_default();
                if let Some(resources) = s.linux_mut().as_mut().map(|l| {
                    l.resources_mut().get_or_insert_with(|| {
                        oci_spec::runtime::LinuxResourcesBuilder::default()
                            .build()
                            .unwrap_or_default()
                    })
                }) {
                    resources
                        .devices_mut()
                        .get_or_insert_with(Vec::new)
                        .push(allow_all);
                }
            }),
            Edit::Rlimit { name, soft, hard } => spec.edit(|s| {
                if let Some(process) = s.process_mut() {
                    let mut rlimits = process.rlimits().clone().unwrap_or_default();
                    for rlimit in rlimits.iter_mut() {
                        if rlimit.typ().to_string() == name {
                            *rlimit = oci_spec::runtime::PosixRlimitBuilder::default()
                                .typ(rlimit.typ())
                                .soft(soft)
                                .hard(hard)
                                .build()
                                .unwrap_or(*rlimit);
                        }
                    }
                    process.set_rlimits(Some(rlimits));
                }
            }),
            Edit::Grant(cap) => {
                let grantable = palisade_common::capabilities::to_kernel(cap).is_some_and(|c| {
                    caps::has_cap(None, caps::CapSet::Bounding, c).unwrap_or(false)
                });
                if !grantable {
                    return Err(EditError::CannotGrant(format!("CAP_{cap}")));
                }
                spec.grant(&[cap])
            }
            Edit::NoNewPrivileges(on) => spec.edit(|s| {
                if let Some(process) = s.process_mut() {
                    process.set_no_new_privileges(Some(on));
                }
            }),
            Edit::RootReadonly(on) => spec.edit(|s| {
                if let Some(root) = s.root_mut() {
                    root.set_readonly(Some(on));
                }
            }),
            Edit::BindHost(host) => {
                let dir = match host {
                    HostPath::Fixed(path) => PathBuf::from(path),
                    HostPath::RunDir => env.run_dir().to_owned(),
                };
                spec.mount(bind(&dir, &dir, &["rbind", "ro"]))
            }
            Edit::BindHostFile(path) => {
                spec.mount(bind(Path::new(path), Path::new(path), &["bind", "ro"]))
            }
            Edit::Tmpfs(destination) => spec.mount(
                MountBuilder::default()
                    .destination(destination)
                    .typ("tmpfs")
                    .source("tmpfs")
                    .options(vec!["size=64k".to_owned()])
                    .build()
                    .unwrap_or_default(),
            ),
            Edit::RootfsPropagation(mode) => spec.rootfs_propagation(mode),
            Edit::Bidirectional(destination) => {
                edit_mount_options(spec.rootfs_propagation("shared"), destination, |options| {
                    options.push("rshared".to_owned());
                })
            }
            Edit::NoCpuQuota => edit_resources(spec, |r| {
                r.set_cpu(None);
            }),
            Edit::CpuQuota(quota) => {
                let period = spec
                    .spec
                    .linux()
                    .as_ref()
                    .and_then(|l| l.resources().as_ref())
                    .and_then(|r| r.cpu().as_ref())
                    .and_then(|c| c.period())
                    .unwrap_or(100_000);
                spec.cpu_quota(quota, period)
            }
            Edit::NoPidsLimit => edit_resources(spec, |r| {
                r.set_pids(None);
            }),
            Edit::CgroupsPathSuffix(suffix) => {
                let path = spec
                    .spec
                    .linux()
                    .as_ref()
                    .and_then(|l| l.cgroups_path().clone())
                    .ok_or_else(|| EditError::Missing("a configured cgroupsPath".into()))?;
                let sibling = format!("{}{suffix}", path.display());
                spec.cgroups_path(&sibling)
            }
            Edit::OnNetwork(role) => {
                let name = env.trial_name(role);
                spec.edit(|s| {
                    let mut map = s.annotations().clone().unwrap_or_default();
                    map.insert(
                        crate::engine::translate::NETWORK_ANNOTATION.to_owned(),
                        name,
                    );
                    s.set_annotations(Some(map));
                })
            }
            Edit::SharedVolume(destination) => spec.mount(
                MountBuilder::default()
                    .destination(destination)
                    .typ(crate::engine::translate::VOLUME_TYPE)
                    .source(env.trial_name("shared"))
                    .build()
                    .unwrap_or_default(),
            ),
            Edit::BindImageLayer(destination) => {
                let layer = env
                    .image_layer_holding(Path::new(destination))
                    .ok_or_else(|| {
                        EditError::Missing(format!("an image layer holding {destination}"))
                    })?;
                let source = layer.join(destination.trim_start_matches('/'));
                spec.mount(bind(&source, Path::new(destination), &["rbind"]))
            }
        })
    }
}

/// Edits the options of every configured mount at `destination`.
fn edit_mount_options(
    spec: ContainerSpec,
    destination: &str,
    edit: impl Fn(&mut Vec<String>),
) -> ContainerSpec {
    spec.edit(|s| {
        for mount in s.mounts_mut().iter_mut().flatten() {
            if mount.destination() == Path::new(destination) {
                let mut options = mount.options().clone().unwrap_or_default();
                edit(&mut options);
                mount.set_options(Some(options));
            }
        }
    })
}

/// Edits `linux.resources`, where the config has them.
fn edit_resources(
    spec: ContainerSpec,
    edit: impl FnOnce(&mut oci_spec::runtime::LinuxResources),
) -> ContainerSpec {
    spec.edit(|s| {
        if let Some(resources) = s
            .linux_mut()
            .as_mut()
            .and_then(|l| l.resources_mut().as_mut())
        {
            edit(resources);
        }
    })
}

fn bind(source: &Path, destination: &Path, options: &[&str]) -> oci_spec::runtime::Mount {
    MountBuilder::default()
        .destination(destination)
        .typ("bind")
        .source(source)
        .options(options.iter().map(|o| (*o).to_owned()).collect::<Vec<_>>())
        .build()
        .unwrap_or_default()
}

impl fmt::Display for Edit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = |kind: &LinuxNamespaceType| proc_name(*kind);
        match self {
            Edit::WithoutNamespace(kind) => write!(f, "no {} namespace in the config", ns(kind)),
            Edit::JoinHostNamespace(kind) => write!(
                f,
                "the {0} entry joins the host's {0} namespace (a runtime that did not unshare it)",
                ns(kind)
            ),
            Edit::JoinNamespaceOf { kind, of } => {
                write!(f, "joins the {} namespace of container `{of}`", ns(kind))
            }
            Edit::NamespaceWithoutPath(kind) => write!(
                f,
                "the {} entry loses its path (a runtime that ignores it makes an empty namespace)",
                ns(kind)
            ),
            Edit::JoinLabHostNetwork => {
                write!(f, "the container joins the lab host's network namespace")
            }
            Edit::NoHostname => write!(
                f,
                "the config sets no hostname (the container keeps a copy of the host's)"
            ),
            Edit::DropMaskedPath(path) => write!(f, "{path} dropped from maskedPaths"),
            Edit::NarrowReadonlyPath { from, to } => {
                write!(f, "readonlyPaths narrowed: {from} replaced by {to}")
            }
            Edit::ExtraBind {
                source,
                destination,
            } => write!(
                f,
                "a mount the scenario did not configure: the host's {source} bound read-only at {destination}"
            ),
            Edit::ExtraDevice { path, major, minor } => write!(
                f,
                "a device node the scenario did not configure: {path} (c {major}:{minor})"
            ),
            Edit::SysReadWrite => write!(f, "/sys and /sys/fs/cgroup mounted without `ro`"),
            Edit::AllowAllDevices => write!(f, "an allow-all device rule (`a *:* rwm`)"),
            Edit::NoSeccomp => write!(f, "no `linux.seccomp`: the container runs unconfined"),
            Edit::MountOption {
                destination,
                from,
                to,
            } => write!(
                f,
                "the mount at {destination} gets `{to}` instead of `{from}`"
            ),
            Edit::Rlimit { name, soft, hard } => {
                write!(f, "{name} set to {soft}/{hard} instead")
            }
            Edit::Grant(cap) => write!(f, "the config also grants CAP_{cap}"),
            Edit::NoNewPrivileges(on) => write!(f, "`noNewPrivileges: {on}`"),
            Edit::RootReadonly(on) => write!(f, "`root.readonly: {on}`"),
            Edit::BindHost(HostPath::RunDir) => write!(
                f,
                "the run directory is bind-mounted into the container at its host path"
            ),
            Edit::BindHost(HostPath::Fixed(path)) => write!(
                f,
                "the host's {path} is bind-mounted into the container at the same path"
            ),
            Edit::BindHostFile(path) => {
                write!(f, "the host's {path} is bind-mounted into the container")
            }
            Edit::Tmpfs(path) => write!(
                f,
                "a tmpfs is mounted at {path}, so what the container writes there never reaches the bundle"
            ),
            Edit::RootfsPropagation(mode) => write!(f, "`linux.rootfsPropagation: {mode}`"),
            Edit::Bidirectional(path) => write!(
                f,
                "`rootfsPropagation: shared` and the volume at {path} bound `rshared` (mounts propagate back to the host)"
            ),
            Edit::NoCpuQuota => write!(f, "no CPU quota in the config"),
            Edit::CpuQuota(quota) => write!(f, "a CPU quota of {quota} µs per period instead"),
            Edit::NoPidsLimit => write!(f, "no pids limit in the config"),
            Edit::CgroupsPathSuffix(suffix) => write!(
                f,
                "cgroupsPath names a sibling (`…{suffix}`), as a runtime that ignores or rewrites it would"
            ),
            Edit::OnNetwork(role) => write!(
                f,
                "the container is put on another engine network (`--network <{role}>`)"
            ),
            Edit::SharedVolume(path) => write!(
                f,
                "one volume at {path} shared by the scenario's containers (`-v <volume>:{path}`): a writable layer they share"
            ),
            Edit::BindImageLayer(path) => write!(
                f,
                "the image's own layer bound read-write at {path} (`-v <image layer>{path}:{path}`): writes go into the image"
            ),
        }
    }
}

/// A runtime defect a negative control switches on in the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defect {
    /// The runtime jails with chroot only and leaks a host directory fd into the container: the
    /// bundled runtime through its test-only chroot mode, others with `--no-pivot` and a leaked
    /// fd 3 (`--preserve-fds 1`), as in CVE-2024-21626.
    EscapableJail,
    /// `exec` leaves one namespace of the init out.
    ExecMissesNamespace(LinuxNamespaceType),
    /// `exec` leaves the new process in the caller's cgroup.
    ExecOutsideCgroup,
    /// `exec` passes a host directory to the new process as an open fd.
    ExecLeaksHostDir,
    /// `exec` ignores the process spec: the new process keeps the caller's user and capabilities.
    ExecIgnoresProcess,
    /// `state` reports a pid that is not the container's init.
    StateReportsWrongPid,
    /// `pause` exits 0 and freezes nothing.
    PauseDoesNothing,
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Defect::EscapableJail => write!(
                f,
                "the runtime jails with chroot only (`--no-pivot`, bundled runtime: annotation) and leaks a host directory fd (`--preserve-fds`, as in CVE-2024-21626)"
            ),
            Defect::ExecMissesNamespace(kind) => write!(
                f,
                "a runtime whose `exec` leaves the {} namespace out (simulated: the process enters the others by itself)",
                proc_name(*kind)
            ),
            Defect::ExecOutsideCgroup => write!(
                f,
                "a runtime whose `exec` leaves the process in the caller's cgroup (simulated with nsenter)"
            ),
            Defect::ExecLeaksHostDir => write!(
                f,
                "a runtime whose `exec` passes a host directory as fd 3 (`--preserve-fds`, as in CVE-2024-21626)"
            ),
            Defect::ExecIgnoresProcess => write!(
                f,
                "a runtime whose `exec` ignores the process spec (simulated with nsenter: the caller's user and capabilities)"
            ),
            Defect::StateReportsWrongPid => write!(
                f,
                "a runtime whose `state` reports a pid that is not the container's init"
            ),
            Defect::PauseDoesNothing => write!(
                f,
                "a runtime whose `pause` exits 0 and freezes nothing (simulated: the runtime is not called)"
            ),
        }
    }
}

/// A change to Palisade's own network lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabChange {
    /// The lab host's bridge keeps its address when the scenario takes it away.
    BridgeKeepsAddress,
    /// `ip_forward=0` in the engine daemon's network namespace (the lab host's).
    NoForwarding,
}

impl fmt::Display for LabChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabChange::BridgeKeepsAddress => {
                write!(f, "lab: the bridge keeps its address throughout")
            }
            LabChange::NoForwarding => write!(
                f,
                "lab: `ip_forward=0` in the engine daemon's network namespace"
            ),
        }
    }
}
