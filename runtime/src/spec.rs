//! config.json → validated [`Plan`]. Everything that can be checked without side effects is checked
//! here, so that a bad bundle fails before the runtime touches the kernel.
//!
//! [`plan`] assembles the plan one section at a time; each section has its own function that
//! returns its part of the plan or a [`SpecError`] naming the field, and its own tests.

use std::collections::{BTreeMap, HashSet};
use std::ffi::CString;
use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::resource::Resource;
use nix::sys::stat::SFlag;
use oci_spec::runtime::{
    Capabilities, Linux, LinuxCapabilities, LinuxDevice, LinuxDeviceType, Mount, Process, Spec,
};
use palisade_common::annotations;

mod attrs;
#[cfg(test)]
mod fields;
mod hooks;
pub mod idmap;
mod options;
mod refused;
mod resources;
#[cfg(test)]
mod tests;

pub use attrs::{CpuAffinity, Lsm, SchedAttr, TimeOffset};
pub use idmap::IdMaps;
pub use options::{RecursiveAttr, parse_mount_options};
pub use resources::{Cpu, HostLimits, Rdma, Resources, ThrottleDevice};

use crate::hooks::HooksPlan;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Namespace types of the OCI spec (as spelled in config.json).
const NAMESPACE_TYPES: &[&str] = &[
    "pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time",
];

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("invalid container id {0:?}: must be non-empty and only contain [A-Za-z0-9_.+-]")]
    InvalidId(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid JSON in {path}: {source}")]
    InvalidJson {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("invalid config {path}: {source}")]
    InvalidConfig {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("unknown namespace type {0:?} (expected one of {types})", types = NAMESPACE_TYPES.join(", "))]
    UnknownNamespace(String),
    #[error("config has no root.path")]
    MissingRoot,
    #[error("rootfs {0} does not exist or is not a directory")]
    MissingRootfs(PathBuf),
    #[error("config has no process")]
    MissingProcess,
    #[error("process.args must not be empty")]
    EmptyArgs,
    #[error("{0} is not supported by palisade-runtime")]
    Unsupported(String),
    /// A field whose value this runtime cannot apply; `field` is its path in config.json.
    #[error("invalid config: {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// `linux.seccomp` that cannot be compiled (the error names the field).
    #[error("invalid config: {0}")]
    Seccomp(#[from] crate::seccomp::SeccompError),
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespacePlan {
    pub flag: CloneFlags,
    /// Join this namespace instead of creating one.
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlan {
    /// Absolute path inside the container.
    pub destination: PathBuf,
    pub fstype: String,
    pub source: Option<PathBuf>,
    pub bind: bool,
    pub flags: MsFlags,
    /// Propagation changes, applied by separate mount(2) calls after the mount itself.
    pub propagation: Vec<MsFlags>,
    /// Recursive attributes (`rro`, …), set on the whole tree by mount_setattr(2) at the end.
    pub recursive: Option<RecursiveAttr>,
    pub data: String,
    /// `tmpcopyup`: the tmpfs starts with a copy of the directory it is mounted on.
    pub copy_up: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePlan {
    pub path: PathBuf,
    pub kind: SFlag,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapsPlan {
    pub bounding: HashSet<caps::Capability>,
    pub effective: HashSet<caps::Capability>,
    pub permitted: HashSet<caps::Capability>,
    pub inheritable: HashSet<caps::Capability>,
    pub ambient: HashSet<caps::Capability>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessPlan {
    pub args: Vec<CString>,
    pub env: Vec<CString>,
    /// PATH used to look up args[0] inside the container.
    pub path_env: String,
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub caps: CapsPlan,
    pub rlimits: Vec<(Resource, u64, u64)>,
    pub no_new_privileges: bool,
    pub oom_score_adj: Option<i32>,
    /// `process.user.umask`.
    pub umask: Option<u32>,
    /// `process.scheduler`.
    pub scheduler: Option<SchedAttr>,
    /// `process.ioPriority`, as the ioprio_set(2) value.
    pub io_priority: Option<u16>,
    /// `process.execCPUAffinity`: for `exec`'s processes, not the init (the spec says so).
    pub exec_cpu_affinity: Option<CpuAffinity>,
    /// `process.apparmorProfile` (only on a host with AppArmor).
    pub apparmor_profile: Option<String>,
    /// `process.selinuxLabel` (only on a host with SELinux).
    pub selinux_label: Option<String>,
}

/// Mount propagation of the container's mount namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Propagation {
    /// What `/` of the container becomes after the pivot (`linux.rootfsPropagation`).
    pub rootfs: MsFlags,
    /// What `/` of the new mount namespace becomes before anything is mounted: rslave unless the
    /// config names a rootfsPropagation, as runc does (so `rshared` volumes can propagate back).
    pub parent: MsFlags,
}

/// The test-only pivot modes (see [`annotations`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PivotMode {
    pub no_pivot: bool,
    /// Test-only, escapable: see [`annotations::CHROOT_ONLY`].
    pub chroot_only: bool,
}

#[derive(Debug, Clone)]
pub struct Plan {
    /// The compiled `linux.seccomp` filter.
    pub seccomp: Option<crate::seccomp::SeccompPlan>,
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub readonly_root: bool,
    pub no_pivot: bool,
    /// Test-only, escapable: see [`annotations::CHROOT_ONLY`].
    pub chroot_only: bool,
    pub namespaces: Vec<NamespacePlan>,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub hooks: HooksPlan,
    /// `linux.timeOffsets`, written before the new time namespace's first process exists.
    pub time_offsets: Vec<TimeOffset>,
    /// `linux.personality`: the execution domain for personality(2).
    pub personality: Option<u32>,
    pub mounts: Vec<MountPlan>,
    pub devices: Vec<DevicePlan>,
    pub masked_paths: Vec<PathBuf>,
    pub readonly_paths: Vec<PathBuf>,
    pub rootfs_propagation: MsFlags,
    /// See [`Propagation::parent`].
    pub parent_propagation: MsFlags,
    pub sysctl: Vec<(String, String)>,
    pub process: ProcessPlan,
    /// Cgroup path relative to each hierarchy's root (always absolute-looking, e.g. `/a/b`).
    pub cgroup_path: PathBuf,
    pub resources: Resources,
    pub annotations: BTreeMap<String, String>,
    pub oci_version: String,
    /// The id maps of the user namespace: those to write for a new one, those to expect of one
    /// joined by path; `None` without a user namespace, or for one joined without mappings.
    pub id_maps: Option<IdMaps>,
}

impl Plan {
    /// Whether the container gets a new namespace of this type (not one joined by path).
    pub fn has_new_namespace(&self, flag: CloneFlags) -> bool {
        has_new_namespace(&self.namespaces, flag)
    }

    /// The container's user namespace (new, or joined by path), if it has one.
    pub fn user_namespace(&self) -> Option<&NamespacePlan> {
        self.namespaces
            .iter()
            .find(|n| n.flag == CloneFlags::CLONE_NEWUSER)
    }

    /// Whether the container has a mount namespace of its own (new or joined). Without one
    /// nothing is mounted (that would be on the host) and the root is changed with chroot(2).
    pub fn has_mount_namespace(&self) -> bool {
        self.namespaces
            .iter()
            .any(|n| n.flag == CloneFlags::CLONE_NEWNS)
    }
}

fn has_new_namespace(namespaces: &[NamespacePlan], flag: CloneFlags) -> bool {
    namespaces
        .iter()
        .any(|n| n.flag == flag && n.path.is_none())
}

pub fn validate_id(id: &str) -> Result<(), SpecError> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-'));
    if ok {
        Ok(())
    } else {
        Err(SpecError::InvalidId(id.to_owned()))
    }
}

/// Loads `<bundle>/config.json` and turns it into a plan.
pub fn load(bundle: &Path, id: &str, no_pivot_flag: bool) -> Result<Plan, SpecError> {
    validate_id(id)?;
    let bundle = std::path::absolute(bundle).map_err(|source| SpecError::Read {
        path: bundle.to_owned(),
        source,
    })?;
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|source| SpecError::Read {
        path: path.clone(),
        source,
    })?;
    let spec = parse(&text, &path)?;
    let plan = plan(&spec, bundle, id, no_pivot_flag, Lsm::detect())?;
    subordinate_ids(&plan, Path::new("/etc"))?;
    Ok(plan)
}

/// An exec'd process, planned as the init's (its labels checked against this host's LSMs).
pub fn exec_process(process: &Process) -> Result<ProcessPlan, SpecError> {
    let mut plan = self::process(process)?;
    (plan.apparmor_profile, plan.selinux_label) = attrs::process_labels(process, Lsm::detect())?;
    Ok(plan)
}

/// The `process` of `<bundle>/config.json`, for `exec` without `--process` (as runc, which reads
/// the bundle's config again).
pub fn load_process(bundle: &Path) -> Result<Process, SpecError> {
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|source| SpecError::Read {
        path: path.clone(),
        source,
    })?;
    parse(&text, &path)?
        .process()
        .clone()
        .ok_or(SpecError::MissingProcess)
}

/// config.json's text → [`Spec`]; `path` is only named in errors.
fn parse(text: &[u8], path: &Path) -> Result<Spec, SpecError> {
    let value: serde_json::Value =
        serde_json::from_slice(text).map_err(|source| SpecError::InvalidJson {
            path: path.to_owned(),
            source,
        })?;
    // Checked on the raw JSON so the message names the offending type instead of a serde variant error.
    if let Some(nss) = value
        .pointer("/linux/namespaces")
        .and_then(|v| v.as_array())
    {
        for ns in nss {
            let t = ns.get("type").and_then(|t| t.as_str()).unwrap_or("");
            if !NAMESPACE_TYPES.contains(&t) {
                return Err(SpecError::UnknownNamespace(t.to_owned()));
            }
        }
    }
    serde_json::from_value(value).map_err(|source| SpecError::InvalidConfig {
        path: path.to_owned(),
        source,
    })
}

/// The whole plan, section by section, in the order the sections are validated.
fn plan(
    spec: &Spec,
    bundle: PathBuf,
    id: &str,
    no_pivot_flag: bool,
    lsm: Lsm,
) -> Result<Plan, SpecError> {
    refused::other_platforms(spec)?;
    let (rootfs, readonly_root) = root(spec, &bundle)?;
    let annotations = annotations(spec);
    let mode = pivot_mode(&annotations, no_pivot_flag);
    // A config without `linux` gets oci-spec's defaults (namespaces, masked and read-only paths).
    let linux = spec.linux().clone().unwrap_or_default();
    let namespaces = namespaces(&linux)?;
    let seccomp = seccomp(&linux)?;
    refused::linux(&linux)?;
    let process_spec = spec.process().as_ref().ok_or(SpecError::MissingProcess)?;
    let mut process = process(process_spec)?;
    (process.apparmor_profile, process.selinux_label) = attrs::process_labels(process_spec, lsm)?;
    let hostname = hostname(spec, &namespaces)?;
    let domainname = attrs::domainname(spec, &namespaces)?;
    let mut mounts = mounts(spec, &bundle)?;
    // `linux.mountLabel` goes into the mounts' data (`context=`).
    attrs::mount_label(&linux, lsm, &mut mounts)?;
    let devices = devices(&linux)?;
    let propagation = propagation(&linux)?;
    let cgroup_path = cgroup_path(&linux, id)?;
    let hooks = hooks::hooks(spec)?;
    let time_offsets = attrs::time_offsets(&linux, &namespaces)?;
    let personality = attrs::personality(&linux)?;
    let masked_paths = paths(linux.masked_paths());
    let readonly_paths = paths(linux.readonly_paths());
    if !namespaces.iter().any(|n| n.flag == CloneFlags::CLONE_NEWNS) {
        without_mount_namespace(&WithoutMountNs {
            mounts: &mounts,
            devices: &devices,
            masked_paths: &masked_paths,
            readonly_paths: &readonly_paths,
            readonly_root,
            rootfs_propagation: linux.rootfs_propagation().is_some(),
            no_pivot: mode.no_pivot,
        })?;
    }
    let sysctl = sysctl(&linux, &namespaces)?;
    let resources = resources::resources(&linux, &HostLimits::detect())?;
    let id_maps = user_namespace(&linux, &namespaces, &process, &mounts)?;
    user_namespace_devices(&linux, &namespaces, id_maps.as_ref())?;
    Ok(Plan {
        seccomp,
        id: id.to_owned(),
        bundle,
        rootfs,
        readonly_root,
        no_pivot: mode.no_pivot,
        chroot_only: mode.chroot_only,
        namespaces,
        hostname,
        domainname,
        hooks,
        time_offsets,
        personality,
        mounts,
        devices,
        masked_paths,
        readonly_paths,
        rootfs_propagation: propagation.rootfs,
        parent_propagation: propagation.parent,
        sysctl,
        process,
        cgroup_path,
        resources,
        annotations,
        oci_version: spec.version().clone(),
        id_maps,
    })
}

/// `root`: the rootfs (relative to the bundle, resolved on the host) and whether it is read-only.
fn root(spec: &Spec, bundle: &Path) -> Result<(PathBuf, bool), SpecError> {
    let root = spec.root().as_ref().ok_or(SpecError::MissingRoot)?;
    let rootfs = bundle.join(root.path());
    match rootfs.canonicalize() {
        Ok(p) if p.is_dir() => Ok((p, root.readonly().unwrap_or(false))),
        _ => Err(SpecError::MissingRootfs(rootfs)),
    }
}

/// `annotations`, sorted.
fn annotations(spec: &Spec) -> BTreeMap<String, String> {
    spec.annotations()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// The test-only pivot modes, from `--no-pivot` and the annotations.
fn pivot_mode(annotations: &BTreeMap<String, String>, no_pivot_flag: bool) -> PivotMode {
    let annotated = |key: &str| annotations.get(key).map(String::as_str) == Some("true");
    PivotMode {
        no_pivot: no_pivot_flag || annotated(annotations::NO_PIVOT),
        chroot_only: annotated(annotations::CHROOT_ONLY),
    }
}

/// `linux.namespaces`: new or joined (by path), each type at most once, a mount namespace always.
fn namespaces(linux: &Linux) -> Result<Vec<NamespacePlan>, SpecError> {
    let mut namespaces: Vec<NamespacePlan> = Vec::new();
    for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
        let flag = CloneFlags::from_bits_retain(ns.typ() as i32);
        if namespaces.iter().any(|n| n.flag == flag) {
            return Err(invalid(
                format!("linux.namespaces[{i}]"),
                format!("namespace {} listed twice", ns.typ()),
            ));
        }
        namespaces.push(NamespacePlan {
            flag,
            path: ns.path().clone(),
        });
    }
    Ok(namespaces)
}

/// What a config without a mount namespace must not ask for.
struct WithoutMountNs<'a> {
    mounts: &'a [MountPlan],
    devices: &'a [DevicePlan],
    masked_paths: &'a [PathBuf],
    readonly_paths: &'a [PathBuf],
    readonly_root: bool,
    rootfs_propagation: bool,
    no_pivot: bool,
}

/// Without a mount namespace of its own (as runc allows), the container only gets its root
/// changed with chroot(2): everything that would mount something is refused, since it would be
/// mounted on the host (runc does mount it there; this runtime never touches the host's mounts).
fn without_mount_namespace(c: &WithoutMountNs<'_>) -> Result<(), SpecError> {
    let needs = |field: &str, set: bool| {
        if set {
            Err(invalid(
                field,
                "requires a mount namespace (linux.namespaces has none)",
            ))
        } else {
            Ok(())
        }
    };
    needs("mounts", !c.mounts.is_empty())?;
    needs("linux.devices", !c.devices.is_empty())?;
    needs("linux.maskedPaths", !c.masked_paths.is_empty())?;
    needs("linux.readonlyPaths", !c.readonly_paths.is_empty())?;
    needs("root.readonly", c.readonly_root)?;
    needs("linux.rootfsPropagation", c.rootfs_propagation)?;
    needs("--no-pivot", c.no_pivot)
}

/// `linux.seccomp`: refused. Failing closed: silently running without the requested filter would
/// overstate isolation.
/// `linux.seccomp`: validated and compiled to a BPF filter now, loaded by the init.
fn seccomp(linux: &Linux) -> Result<Option<crate::seccomp::SeccompPlan>, SpecError> {
    linux
        .seccomp()
        .as_ref()
        .map(|profile| crate::seccomp::plan(profile).map_err(SpecError::from))
        .transpose()
}

/// `process`: what the init execs, as whom, with which capabilities and limits. `exec` plans its
/// process with this too.
pub(crate) fn process(process: &Process) -> Result<ProcessPlan, SpecError> {
    refused::process(process)?;
    let args = process.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(SpecError::EmptyArgs);
    }
    let env = process.env().clone().unwrap_or_default();
    let path_env = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
        .to_owned();
    let caps = match process.capabilities() {
        Some(c) => capabilities(c)?,
        None => CapsPlan::default(),
    };
    let rlimits = rlimits(process)?;
    let cwd = process.cwd().clone();
    if !cwd.is_absolute() {
        return Err(invalid("process.cwd", "must be absolute"));
    }
    let user = process.user();
    Ok(ProcessPlan {
        args: cstrings(args, "process.args")?,
        env: cstrings(env, "process.env")?,
        path_env,
        cwd,
        uid: user.uid(),
        gid: user.gid(),
        additional_gids: user.additional_gids().clone().unwrap_or_default(),
        caps,
        rlimits,
        no_new_privileges: process.no_new_privileges().unwrap_or(false),
        oom_score_adj: process.oom_score_adj(),
        umask: attrs::umask(process)?,
        scheduler: attrs::scheduler(process)?,
        io_priority: attrs::io_priority(process)?,
        exec_cpu_affinity: attrs::exec_cpu_affinity(process)?,
        // Filled in by `plan`, which knows the host's LSMs.
        apparmor_profile: None,
        selinux_label: None,
    })
}

fn cstrings(v: Vec<String>, field: &str) -> Result<Vec<CString>, SpecError> {
    v.into_iter()
        .map(|s| CString::new(s).map_err(|_| invalid(field, "contains a NUL byte")))
        .collect()
}

/// `process.capabilities`: the five sets, as the kernel names them.
fn capabilities(c: &LinuxCapabilities) -> Result<CapsPlan, SpecError> {
    let set =
        |set: &Option<Capabilities>, field: &str| -> Result<HashSet<caps::Capability>, SpecError> {
            set.iter()
                .flatten()
                .map(|cap| {
                    palisade_common::capabilities::to_kernel(*cap).ok_or_else(|| {
                        invalid(
                            format!("process.capabilities.{field}"),
                            format!("unknown capability CAP_{cap}"),
                        )
                    })
                })
                .collect()
        };
    Ok(CapsPlan {
        bounding: set(c.bounding(), "bounding")?,
        effective: set(c.effective(), "effective")?,
        permitted: set(c.permitted(), "permitted")?,
        inheritable: set(c.inheritable(), "inheritable")?,
        ambient: set(c.ambient(), "ambient")?,
    })
}

/// `process.rlimits`: (resource, soft, hard), in config order.
fn rlimits(process: &Process) -> Result<Vec<(Resource, u64, u64)>, SpecError> {
    process
        .rlimits()
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, rl)| {
            let name = rl.typ().to_string();
            let resource = rlimit_resource(&name).ok_or_else(|| {
                invalid(
                    format!("process.rlimits[{i}].type"),
                    format!("unknown rlimit {name}"),
                )
            })?;
            Ok((resource, rl.soft(), rl.hard()))
        })
        .collect()
}

fn rlimit_resource(name: &str) -> Option<Resource> {
    Some(match name {
        "RLIMIT_AS" => Resource::RLIMIT_AS,
        "RLIMIT_CORE" => Resource::RLIMIT_CORE,
        "RLIMIT_CPU" => Resource::RLIMIT_CPU,
        "RLIMIT_DATA" => Resource::RLIMIT_DATA,
        "RLIMIT_FSIZE" => Resource::RLIMIT_FSIZE,
        "RLIMIT_LOCKS" => Resource::RLIMIT_LOCKS,
        "RLIMIT_MEMLOCK" => Resource::RLIMIT_MEMLOCK,
        "RLIMIT_MSGQUEUE" => Resource::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => Resource::RLIMIT_NICE,
        "RLIMIT_NOFILE" => Resource::RLIMIT_NOFILE,
        "RLIMIT_NPROC" => Resource::RLIMIT_NPROC,
        "RLIMIT_RSS" => Resource::RLIMIT_RSS,
        "RLIMIT_RTPRIO" => Resource::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => Resource::RLIMIT_RTTIME,
        "RLIMIT_SIGPENDING" => Resource::RLIMIT_SIGPENDING,
        "RLIMIT_STACK" => Resource::RLIMIT_STACK,
        _ => return None,
    })
}

/// `hostname`: only in a uts namespace of the container's, new or joined (as runc: it is set
/// inside the joined namespace); without one it would rename the host.
fn hostname(spec: &Spec, namespaces: &[NamespacePlan]) -> Result<Option<String>, SpecError> {
    let hostname = spec.hostname().clone().filter(|h| !h.is_empty());
    if hostname.is_some()
        && !namespaces
            .iter()
            .any(|n| n.flag == CloneFlags::CLONE_NEWUTS)
    {
        return Err(invalid("hostname", "requires a uts namespace"));
    }
    Ok(hostname)
}

/// `mounts`, in config order.
fn mounts(spec: &Spec, bundle: &Path) -> Result<Vec<MountPlan>, SpecError> {
    spec.mounts()
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, m)| mount(m, bundle, &format!("mounts[{i}]")))
        .collect()
}

/// One entry of `mounts`; `field` names it in errors.
fn mount(m: &Mount, bundle: &Path, field: &str) -> Result<MountPlan, SpecError> {
    let destination = m.destination().clone();
    if !destination.is_absolute() || destination.components().any(|c| c == Component::ParentDir) {
        return Err(invalid(
            format!("{field}.destination"),
            format!("{} must be absolute without ..", destination.display()),
        ));
    }
    let options = parse_mount_options(m.options().as_deref().unwrap_or_default())
        .map_err(|e| invalid(format!("{field}.options"), e.to_string()))?;
    // Id-mapped mounts are not implemented: refused, never ignored.
    for (name, mappings) in [
        ("uidMappings", m.uid_mappings()),
        ("gidMappings", m.gid_mappings()),
    ] {
        if mappings.is_some() {
            return Err(SpecError::Unsupported(format!(
                "{field}.{name} (id-mapped mounts)"
            )));
        }
    }
    let fstype = m.typ().clone().unwrap_or_else(|| {
        if options.bind {
            "bind".into()
        } else {
            "none".into()
        }
    });
    let bind = options.bind || fstype == "bind";
    let source = m.source().clone().map(|s| {
        // Relative bind sources are relative to the bundle, as in runc.
        if bind && s.is_relative() {
            bundle.join(s)
        } else {
            s
        }
    });
    if bind && source.as_ref().is_none_or(|s| !s.exists()) {
        return Err(invalid(
            format!("{field}.source"),
            format!(
                "bind mount source {} of {} does not exist",
                source.unwrap_or_default().display(),
                destination.display()
            ),
        ));
    }
    if options.copy_up && (bind || fstype != "tmpfs") {
        return Err(invalid(
            format!("{field}.options"),
            format!("tmpcopyup copies into a tmpfs, and this mount is of type {fstype}"),
        ));
    }
    Ok(MountPlan {
        destination,
        fstype,
        source,
        bind,
        flags: options.flags,
        propagation: options.propagation,
        recursive: options.recursive,
        data: options.data,
        copy_up: options.copy_up,
    })
}

/// `linux.devices`: nodes to create (type `a` is a cgroup rule, not a node).
fn devices(linux: &Linux) -> Result<Vec<DevicePlan>, SpecError> {
    linux
        .devices()
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, d)| device(d, &format!("linux.devices[{i}]")))
        .collect()
}

fn device(d: &LinuxDevice, field: &str) -> Result<DevicePlan, SpecError> {
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(invalid(
                format!("{field}.type"),
                "device type 'a' cannot be created",
            ));
        }
    };
    Ok(DevicePlan {
        path: d.path().clone(),
        kind,
        major: u64::try_from(d.major()).unwrap_or(0),
        minor: u64::try_from(d.minor()).unwrap_or(0),
        mode: d.file_mode().unwrap_or(0o666),
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
    })
}

/// `linux.rootfsPropagation` (recursive, whatever the spelling; private by default).
fn propagation(linux: &Linux) -> Result<Propagation, SpecError> {
    let named = linux.rootfs_propagation().as_deref().unwrap_or("");
    let rootfs = match named {
        "" | "private" | "rprivate" => MsFlags::MS_PRIVATE,
        "shared" | "rshared" => MsFlags::MS_SHARED,
        "slave" | "rslave" => MsFlags::MS_SLAVE,
        "unbindable" | "runbindable" => MsFlags::MS_UNBINDABLE,
        other => {
            return Err(invalid(
                "linux.rootfsPropagation",
                format!("unknown value {other:?}"),
            ));
        }
    } | MsFlags::MS_REC;
    let parent = if named.is_empty() {
        MsFlags::MS_SLAVE | MsFlags::MS_REC
    } else {
        rootfs
    };
    Ok(Propagation { rootfs, parent })
}

/// `linux.cgroupsPath`, relative to each hierarchy's root; `/<id>` by default, as runc, so that
/// no parent is made (and none is left behind).
fn cgroup_path(linux: &Linux, id: &str) -> Result<PathBuf, SpecError> {
    let path = match linux.cgroups_path() {
        Some(p) if !p.as_os_str().is_empty() => Path::new("/").join(p),
        _ => PathBuf::from(format!("/{id}")),
    };
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(invalid("linux.cgroupsPath", "must not contain .."));
    }
    Ok(path)
}

/// `linux.maskedPaths` / `linux.readonlyPaths`.
fn paths(paths: &Option<Vec<String>>) -> Vec<PathBuf> {
    paths.iter().flatten().map(PathBuf::from).collect()
}

/// IPC sysctls: they belong to the ipc namespace (runc's list).
const IPC_SYSCTLS: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// `linux.sysctl`, sorted by key. Only sysctls of a namespace the container has of its own are
/// accepted (as runc): IPC keys and `fs.mqueue.*` with an ipc namespace, `net.*` with a network
/// namespace, `kernel.hostname`/`kernel.domainname` with a uts namespace. Anything else would
/// change the host's setting.
fn sysctl(linux: &Linux, namespaces: &[NamespacePlan]) -> Result<Vec<(String, String)>, SpecError> {
    let mut sysctls: Vec<(String, String)> = linux
        .sysctl()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    sysctls.sort();
    for (key, value) in &sysctls {
        let field = format!("linux.sysctl.{key:?}");
        if key.is_empty() || key.contains('/') || key.split('.').any(str::is_empty) {
            return Err(invalid(
                field,
                "not a sysctl name (dot-separated, no empty parts, no /)",
            ));
        }
        if value.contains('\0') {
            return Err(invalid(field, "the value contains a NUL byte"));
        }
        let (flag, ns) = if IPC_SYSCTLS.contains(&key.as_str()) || key.starts_with("fs.mqueue.") {
            (CloneFlags::CLONE_NEWIPC, "ipc")
        } else if key.starts_with("net.") {
            (CloneFlags::CLONE_NEWNET, "net")
        } else if key == "kernel.hostname" || key == "kernel.domainname" {
            (CloneFlags::CLONE_NEWUTS, "uts")
        } else {
            return Err(invalid(
                field,
                "not a sysctl of a namespace the container can own: it would change the host",
            ));
        };
        match namespaces.iter().find(|n| n.flag == flag) {
            None => {
                return Err(invalid(
                    field,
                    format!("needs a {ns} namespace of the container's own, and it has none"),
                ));
            }
            Some(NamespacePlan { path: Some(p), .. }) if is_own_namespace(p, ns) => {
                return Err(invalid(
                    field,
                    format!(
                        "the {ns} namespace joined at {} is the runtime's own (the host's)",
                        p.display()
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(sysctls)
}

/// Whether `path` names the runtime's own namespace of type `ns` (`/proc/self/ns/<ns>`).
fn is_own_namespace(path: &Path, ns: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    match (id(path), id(&Path::new("/proc/self/ns").join(ns))) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// `linux.resources` alone, for the cgroup managers' tests.
#[cfg(test)]
pub fn resources_for_tests(linux: &Linux, host: &HostLimits) -> Result<Resources, SpecError> {
    resources::resources(linux, host)
}

/// `linux.uidMappings` / `linux.gidMappings`, and what a user namespace asks of the rest of the
/// config. A new user namespace needs both maps; one joined by path may name them, and is then
/// checked against them at `create`.
fn user_namespace(
    linux: &Linux,
    namespaces: &[NamespacePlan],
    process: &ProcessPlan,
    mounts: &[MountPlan],
) -> Result<Option<IdMaps>, SpecError> {
    let uid = idmap::from_spec(linux.uid_mappings().as_deref().unwrap_or_default());
    let gid = idmap::from_spec(linux.gid_mappings().as_deref().unwrap_or_default());
    let Some(user) = namespaces
        .iter()
        .find(|n| n.flag == CloneFlags::CLONE_NEWUSER)
    else {
        for (maps, field) in [(&uid, "linux.uidMappings"), (&gid, "linux.gidMappings")] {
            if !maps.is_empty() {
                return Err(invalid(
                    field,
                    "requires a user namespace in linux.namespaces",
                ));
            }
        }
        return Ok(None);
    };
    user_namespace_mounts(namespaces, mounts)?;
    if user.path.is_some() && uid.is_empty() && gid.is_empty() {
        return Ok(None);
    }
    for (maps, field) in [(&uid, "linux.uidMappings"), (&gid, "linux.gidMappings")] {
        if maps.is_empty() {
            let reason = if user.path.is_none() {
                "a new user namespace needs it (an unmapped namespace has no root to set it up)"
            } else {
                "must be given together with the other map, or neither"
            };
            return Err(invalid(field, reason));
        }
        idmap::validate(maps, field)?;
    }
    let maps = IdMaps { uid, gid };
    // The runtime sets the container up as root of its user namespace, as runc does; the
    // process then becomes its own user, which must exist there too.
    if maps.uid_to_host(0).is_none() {
        return Err(invalid(
            "linux.uidMappings",
            "container uid 0 is not mapped (the container is set up by root of its user namespace)",
        ));
    }
    if maps.gid_to_host(0).is_none() {
        return Err(invalid(
            "linux.gidMappings",
            "container gid 0 is not mapped (the container is set up by root of its user namespace)",
        ));
    }
    let unmapped = |field: String, id: u32, map: &str| {
        invalid(field, format!("{id} is not mapped by linux.{map}"))
    };
    if maps.uid_to_host(process.uid).is_none() {
        return Err(unmapped(
            "process.user.uid".into(),
            process.uid,
            "uidMappings",
        ));
    }
    if maps.gid_to_host(process.gid).is_none() {
        return Err(unmapped(
            "process.user.gid".into(),
            process.gid,
            "gidMappings",
        ));
    }
    for (i, g) in process.additional_gids.iter().enumerate() {
        if maps.gid_to_host(*g).is_none() {
            return Err(unmapped(
                format!("process.user.additionalGids[{i}]"),
                *g,
                "gidMappings",
            ));
        }
    }
    // devpts refuses (EINVAL) an owner that is not mapped in the mounting user namespace.
    for (i, m) in mounts.iter().enumerate() {
        if m.fstype != "devpts" {
            continue;
        }
        for option in m.data.split(',') {
            let (key, to_host): (_, &dyn Fn(u32) -> Option<u32>) = match option.split_once('=') {
                Some(("uid", _)) => ("uid", &|id| maps.uid_to_host(id)),
                Some(("gid", _)) => ("gid", &|id| maps.gid_to_host(id)),
                _ => continue,
            };
            let value = option.split_once('=').map(|(_, v)| v).unwrap_or_default();
            let mapped = value.parse().ok().and_then(to_host);
            if mapped.is_none() {
                return Err(invalid(
                    format!("mounts[{i}].options"),
                    format!("{key}={value}: not mapped in the container's user namespace"),
                ));
            }
        }
    }
    Ok(Some(maps))
}

/// Filesystems that only the owner of another namespace may mount: in a user namespace they need
/// that namespace to be the container's own, not the host's (which the host's user namespace owns).
fn user_namespace_mounts(
    namespaces: &[NamespacePlan],
    mounts: &[MountPlan],
) -> Result<(), SpecError> {
    let listed = |flag: CloneFlags| namespaces.iter().any(|n| n.flag == flag);
    for (i, m) in mounts.iter().enumerate() {
        let needs = match m.fstype.as_str() {
            "proc" => ("pid", CloneFlags::CLONE_NEWPID),
            "mqueue" => ("ipc", CloneFlags::CLONE_NEWIPC),
            // cgroup: the container's cgroup directories are bound instead (see rootfs).
            _ => continue,
        };
        if !listed(needs.1) {
            return Err(invalid(
                format!("mounts[{i}]"),
                format!(
                    "{} cannot be mounted in a user namespace that shares the host's {} \
                     namespace: add {{\"type\": \"{}\"}} to linux.namespaces",
                    m.fstype, needs.0, needs.0
                ),
            ));
        }
    }
    Ok(())
}

/// `linux.devices` in a user namespace: mknod is not allowed there, so each node is bind-mounted
/// from the host's node at the same path (as runc and crun do). That node must be the device the
/// config names, and a fileMode, uid or gid the config sets must be what the bind shows.
fn user_namespace_devices(
    linux: &Linux,
    namespaces: &[NamespacePlan],
    maps: Option<&IdMaps>,
) -> Result<(), SpecError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    if !namespaces
        .iter()
        .any(|n| n.flag == CloneFlags::CLONE_NEWUSER)
    {
        return Ok(());
    }
    for (i, d) in linux.devices().iter().flatten().enumerate() {
        let field = format!("linux.devices[{i}]");
        let path = d.path();
        let md = std::fs::metadata(path).map_err(|e| {
            invalid(
                &field,
                format!(
                    "in a user namespace devices are bind-mounted from the host, and {} cannot be \
                     read on the host: {e}",
                    path.display()
                ),
            )
        })?;
        let kind_ok = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => md.file_type().is_char_device(),
            LinuxDeviceType::B => md.file_type().is_block_device(),
            LinuxDeviceType::P => md.file_type().is_fifo(),
            LinuxDeviceType::A => false,
        };
        let rdev = nix::sys::stat::makedev(
            u64::try_from(d.major()).unwrap_or(u64::MAX),
            u64::try_from(d.minor()).unwrap_or(u64::MAX),
        );
        if !kind_ok || (d.typ() != LinuxDeviceType::P && md.rdev() != rdev) {
            return Err(invalid(
                &field,
                format!(
                    "in a user namespace devices are bind-mounted from the host, and the host's {} \
                     is not a {:?} device {}:{}",
                    path.display(),
                    d.typ(),
                    d.major(),
                    d.minor()
                ),
            ));
        }
        let shown = |what: &str, want: u32, have: String| {
            invalid(
                format!("{field}.{what}"),
                format!(
                    "{want} cannot be applied in a user namespace: the node is bind-mounted \
                     from the host, where {} has {what} {have}",
                    path.display()
                ),
            )
        };
        if let Some(mode) = d.file_mode()
            && mode & 0o7777 != md.mode() & 0o7777
        {
            return Err(shown("fileMode", mode, format!("{:o}", md.mode() & 0o7777)));
        }
        let seen_uid = maps.and_then(|m| m.host_uid_to_container(md.uid()));
        if let Some(uid) = d.uid()
            && seen_uid != Some(uid)
        {
            return Err(shown("uid", uid, format!("{} on the host", md.uid())));
        }
        let seen_gid = maps.and_then(|m| m.host_gid_to_container(md.gid()));
        if let Some(gid) = d.gid()
            && seen_gid != Some(gid)
        {
            return Err(shown("gid", gid, format!("{} on the host", md.gid())));
        }
    }
    Ok(())
}

/// When `<etc>/subuid` or `<etc>/subgid` grants subordinate ids to root, the maps of a new user
/// namespace must stay inside them, so that the container's ids cannot land on the host's own
/// users. Without such entries this runtime does as runc and crun running as root: the kernel
/// takes any mapping from root, and the config is trusted.
fn subordinate_ids(plan: &Plan, etc: &Path) -> Result<(), SpecError> {
    let Some(maps) = &plan.id_maps else {
        return Ok(());
    };
    if plan.user_namespace().is_some_and(|n| n.path.is_some()) {
        // A joined namespace's maps were written by whoever made it.
        return Ok(());
    }
    for (file, list, field) in [
        ("subuid", &maps.uid, "linux.uidMappings"),
        ("subgid", &maps.gid, "linux.gidMappings"),
    ] {
        let path = etc.join(file);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(SpecError::Read { path, source }),
        };
        let ranges = idmap::subordinate_ranges(&text, &["root", "0"]);
        if !ranges.is_empty() {
            idmap::check_subordinate(list, &ranges, field, &path)?;
        }
    }
    Ok(())
}
