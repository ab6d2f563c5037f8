//! config.json → validated [`Plan`]. Everything that can be checked without side effects is checked
//! here, so that a bad bundle fails before the runtime touches the kernel.

use std::collections::{BTreeMap, HashSet};
use std::ffi::CString;
use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::resource::Resource;
use oci_spec::runtime::{LinuxCapabilities, LinuxDeviceType, Spec};
use palisade_common::annotations;

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
    #[error("invalid config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone)]
pub struct NamespacePlan {
    pub flag: CloneFlags,
    /// Join this namespace instead of creating one.
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct MountPlan {
    /// Absolute path inside the container.
    pub destination: PathBuf,
    pub fstype: String,
    pub source: Option<PathBuf>,
    pub bind: bool,
    pub flags: MsFlags,
    /// Propagation changes, applied by separate mount(2) calls after the mount itself.
    pub propagation: Vec<MsFlags>,
    pub data: String,
}

#[derive(Debug, Clone)]
pub struct DevicePlan {
    pub path: PathBuf,
    pub kind: nix::sys::stat::SFlag,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, Default)]
pub struct CapsPlan {
    pub bounding: HashSet<caps::Capability>,
    pub effective: HashSet<caps::Capability>,
    pub permitted: HashSet<caps::Capability>,
    pub inheritable: HashSet<caps::Capability>,
    pub ambient: HashSet<caps::Capability>,
}

#[derive(Debug, Clone)]
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
}

/// Cgroup resources this runtime applies.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub memory_limit: Option<i64>,
    pub memory_swap: Option<i64>,
    pub pids_limit: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub readonly_root: bool,
    pub no_pivot: bool,
    /// Test-only, escapable: see [`annotations::CHROOT_ONLY`].
    pub chroot_only: bool,
    pub namespaces: Vec<NamespacePlan>,
    pub hostname: Option<String>,
    pub mounts: Vec<MountPlan>,
    pub devices: Vec<DevicePlan>,
    pub masked_paths: Vec<PathBuf>,
    pub readonly_paths: Vec<PathBuf>,
    pub rootfs_propagation: MsFlags,
    /// What `/` of the new mount namespace becomes before anything is mounted: rslave unless the
    /// config names a rootfsPropagation, as runc does (so `rshared` volumes can propagate back).
    pub parent_propagation: MsFlags,
    pub sysctl: Vec<(String, String)>,
    pub process: ProcessPlan,
    /// Cgroup path relative to each hierarchy's root (always absolute-looking, e.g. `/a/b`).
    pub cgroup_path: PathBuf,
    pub resources: Resources,
    pub annotations: BTreeMap<String, String>,
    pub oci_version: String,
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
    let value: serde_json::Value =
        serde_json::from_slice(&text).map_err(|source| SpecError::InvalidJson {
            path: path.clone(),
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
    let spec: Spec = serde_json::from_value(value)
        .map_err(|source| SpecError::InvalidConfig { path, source })?;
    plan(spec, bundle, id, no_pivot_flag)
}

fn plan(spec: Spec, bundle: PathBuf, id: &str, no_pivot_flag: bool) -> Result<Plan, SpecError> {
    let root = spec.root().as_ref().ok_or(SpecError::MissingRoot)?;
    let rootfs = bundle.join(root.path());
    let rootfs = match rootfs.canonicalize() {
        Ok(p) if p.is_dir() => p,
        _ => return Err(SpecError::MissingRootfs(rootfs)),
    };
    let annotations: BTreeMap<String, String> = spec
        .annotations()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let annotated = |key: &str| annotations.get(key).map(String::as_str) == Some("true");
    let no_pivot = no_pivot_flag || annotated(annotations::NO_PIVOT);
    let chroot_only = annotated(annotations::CHROOT_ONLY);

    let linux = spec.linux().clone().unwrap_or_default();
    let mut namespaces = Vec::new();
    for ns in linux.namespaces().clone().unwrap_or_default() {
        let flag = CloneFlags::from_bits_retain(ns.typ() as i32);
        if flag == CloneFlags::CLONE_NEWUSER {
            return Err(SpecError::Unsupported("the user namespace".into()));
        }
        if namespaces.iter().any(|n: &NamespacePlan| n.flag == flag) {
            return Err(SpecError::Invalid(format!(
                "namespace {} listed twice",
                ns.typ()
            )));
        }
        namespaces.push(NamespacePlan {
            flag,
            path: ns.path().clone(),
        });
    }
    // All mount work must happen in a mount namespace of the container's, never on the host's.
    if !namespaces.iter().any(|n| n.flag == CloneFlags::CLONE_NEWNS) {
        return Err(SpecError::Invalid("a mount namespace is required".into()));
    }
    if linux.seccomp().is_some() {
        // Failing closed: silently running without the requested filter would overstate isolation.
        return Err(SpecError::Unsupported("linux.seccomp".into()));
    }

    let process = spec.process().as_ref().ok_or(SpecError::MissingProcess)?;
    if process.terminal() == Some(true) {
        return Err(SpecError::Unsupported("process.terminal".into()));
    }
    let args = process.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(SpecError::EmptyArgs);
    }
    let cstrings = |v: Vec<String>, what: &str| -> Result<Vec<CString>, SpecError> {
        v.into_iter()
            .map(|s| CString::new(s).map_err(|_| SpecError::Invalid(format!("NUL byte in {what}"))))
            .collect()
    };
    let env = process.env().clone().unwrap_or_default();
    let path_env = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
        .to_owned();
    let user = process.user();
    let caps = match process.capabilities() {
        Some(c) => caps_plan(c)?,
        None => CapsPlan::default(),
    };
    let mut rlimits = Vec::new();
    for rl in process.rlimits().clone().unwrap_or_default() {
        rlimits.push((
            rlimit_resource(&rl.typ().to_string())?,
            rl.soft(),
            rl.hard(),
        ));
    }
    let cwd = process.cwd().clone();
    if !cwd.is_absolute() {
        return Err(SpecError::Invalid("process.cwd must be absolute".into()));
    }
    let process_plan = ProcessPlan {
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
    };

    let hostname = spec.hostname().clone().filter(|h| !h.is_empty());
    if hostname.is_some() && !has_new_namespace(&namespaces, CloneFlags::CLONE_NEWUTS) {
        return Err(SpecError::Invalid(
            "hostname requires a new uts namespace".into(),
        ));
    }

    let mut mounts = Vec::new();
    for m in spec.mounts().clone().unwrap_or_default() {
        let destination = m.destination().clone();
        if !destination.is_absolute() || destination.components().any(|c| c == Component::ParentDir)
        {
            return Err(SpecError::Invalid(format!(
                "mount destination {} must be absolute without ..",
                destination.display()
            )));
        }
        let (flags, propagation, data, bind) =
            parse_mount_options(&m.options().clone().unwrap_or_default());
        let fstype = m
            .typ()
            .clone()
            .unwrap_or_else(|| if bind { "bind".into() } else { "none".into() });
        let bind = bind || fstype == "bind";
        let source = m.source().clone().map(|s| {
            // Relative bind sources are relative to the bundle, as in runc.
            if bind && s.is_relative() {
                bundle.join(s)
            } else {
                s
            }
        });
        if bind && source.as_ref().is_none_or(|s| !s.exists()) {
            return Err(SpecError::Invalid(format!(
                "bind mount source {} of {} does not exist",
                source.unwrap_or_default().display(),
                destination.display()
            )));
        }
        mounts.push(MountPlan {
            destination,
            fstype,
            source,
            bind,
            flags,
            propagation,
            data,
        });
    }

    let mut devices = Vec::new();
    for d in linux.devices().clone().unwrap_or_default() {
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => nix::sys::stat::SFlag::S_IFCHR,
            LinuxDeviceType::B => nix::sys::stat::SFlag::S_IFBLK,
            LinuxDeviceType::P => nix::sys::stat::SFlag::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(SpecError::Invalid(
                    "device type 'a' cannot be created".into(),
                ));
            }
        };
        devices.push(DevicePlan {
            path: d.path().clone(),
            kind,
            major: u64::try_from(d.major()).unwrap_or(0),
            minor: u64::try_from(d.minor()).unwrap_or(0),
            mode: d.file_mode().unwrap_or(0o666),
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        });
    }

    let parent_propagation = match linux.rootfs_propagation().as_deref() {
        None | Some("") => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        Some(_) => MsFlags::empty(),
    };
    let rootfs_propagation = match linux.rootfs_propagation().as_deref() {
        None | Some("") | Some("private") | Some("rprivate") => {
            MsFlags::MS_PRIVATE | MsFlags::MS_REC
        }
        Some("shared") | Some("rshared") => MsFlags::MS_SHARED | MsFlags::MS_REC,
        Some("slave") | Some("rslave") => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        Some("unbindable") | Some("runbindable") => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        Some(other) => {
            return Err(SpecError::Invalid(format!(
                "unknown rootfsPropagation {other:?}"
            )));
        }
    };

    let cgroup_path = match linux.cgroups_path() {
        // Relative paths are taken relative to the hierarchy root.
        Some(p) if !p.as_os_str().is_empty() => Path::new("/").join(p),
        _ => PathBuf::from(format!("/palisade-runtime/{id}")),
    };
    if cgroup_path.components().any(|c| c == Component::ParentDir) {
        return Err(SpecError::Invalid("cgroupsPath must not contain ..".into()));
    }
    let mut resources = Resources::default();
    if let Some(r) = linux.resources() {
        if let Some(cpu) = r.cpu() {
            resources.cpu_shares = cpu.shares();
            resources.cpu_quota = cpu.quota();
            resources.cpu_period = cpu.period();
            resources.cpuset_cpus = cpu.cpus().clone().filter(|s| !s.is_empty());
            resources.cpuset_mems = cpu.mems().clone().filter(|s| !s.is_empty());
        }
        if let Some(mem) = r.memory() {
            resources.memory_limit = mem.limit();
            resources.memory_swap = mem.swap();
        }
        if let Some(pids) = r.pids() {
            resources.pids_limit = Some(pids.limit());
        }
    }

    Ok(Plan {
        id: id.to_owned(),
        bundle,
        rootfs,
        readonly_root: root.readonly().unwrap_or(false),
        no_pivot,
        chroot_only,
        namespaces,
        hostname,
        mounts,
        devices,
        masked_paths: linux
            .masked_paths()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        readonly_paths: linux
            .readonly_paths()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        rootfs_propagation,
        parent_propagation: if parent_propagation.is_empty() {
            rootfs_propagation
        } else {
            parent_propagation
        },
        sysctl: linux
            .sysctl()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        process: process_plan,
        cgroup_path,
        resources,
        annotations,
        oci_version: spec.version().clone(),
    })
}

fn caps_plan(c: &LinuxCapabilities) -> Result<CapsPlan, SpecError> {
    let conv = |set: &Option<oci_spec::runtime::Capabilities>| -> Result<HashSet<caps::Capability>, SpecError> {
        set.iter()
            .flatten()
            .map(|cap| {
                palisade_common::capabilities::to_kernel(*cap)
                    .ok_or_else(|| SpecError::Invalid(format!("unknown capability CAP_{cap}")))
            })
            .collect()
    };
    Ok(CapsPlan {
        bounding: conv(c.bounding())?,
        effective: conv(c.effective())?,
        permitted: conv(c.permitted())?,
        inheritable: conv(c.inheritable())?,
        ambient: conv(c.ambient())?,
    })
}

fn rlimit_resource(name: &str) -> Result<Resource, SpecError> {
    Ok(match name {
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
        other => return Err(SpecError::Invalid(format!("unknown rlimit {other}"))),
    })
}

/// Splits mount options into flags, propagation changes, filesystem data and whether it is a bind.
fn parse_mount_options(options: &[String]) -> (MsFlags, Vec<MsFlags>, String, bool) {
    let mut flags = MsFlags::empty();
    let mut propagation = Vec::new();
    let mut data: Vec<&str> = Vec::new();
    let mut bind = false;
    for opt in options {
        let (set, flag) = match opt.as_str() {
            "ro" => (true, MsFlags::MS_RDONLY),
            "rw" => (false, MsFlags::MS_RDONLY),
            "nosuid" => (true, MsFlags::MS_NOSUID),
            "suid" => (false, MsFlags::MS_NOSUID),
            "nodev" => (true, MsFlags::MS_NODEV),
            "dev" => (false, MsFlags::MS_NODEV),
            "noexec" => (true, MsFlags::MS_NOEXEC),
            "exec" => (false, MsFlags::MS_NOEXEC),
            "sync" => (true, MsFlags::MS_SYNCHRONOUS),
            "async" => (false, MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (true, MsFlags::MS_DIRSYNC),
            "remount" => (true, MsFlags::MS_REMOUNT),
            "mand" => (true, MsFlags::MS_MANDLOCK),
            "nomand" => (false, MsFlags::MS_MANDLOCK),
            "noatime" => (true, MsFlags::MS_NOATIME),
            "atime" => (false, MsFlags::MS_NOATIME),
            "nodiratime" => (true, MsFlags::MS_NODIRATIME),
            "diratime" => (false, MsFlags::MS_NODIRATIME),
            "relatime" => (true, MsFlags::MS_RELATIME),
            "norelatime" => (false, MsFlags::MS_RELATIME),
            "strictatime" => (true, MsFlags::MS_STRICTATIME),
            "nostrictatime" => (false, MsFlags::MS_STRICTATIME),
            "bind" => {
                bind = true;
                continue;
            }
            "rbind" => {
                bind = true;
                flags |= MsFlags::MS_REC;
                continue;
            }
            p @ ("private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
            | "unbindable" | "runbindable") => {
                let base = match p.trim_start_matches('r') {
                    "private" => MsFlags::MS_PRIVATE,
                    "shared" => MsFlags::MS_SHARED,
                    "slave" => MsFlags::MS_SLAVE,
                    _ => MsFlags::MS_UNBINDABLE,
                };
                let rec = if p.starts_with('r') && p != "rw" {
                    MsFlags::MS_REC
                } else {
                    MsFlags::empty()
                };
                propagation.push(base | rec);
                continue;
            }
            other => {
                data.push(other);
                continue;
            }
        };
        if set {
            flags |= flag;
        } else {
            flags.remove(flag);
        }
    }
    (flags, propagation, data.join(","), bind)
}
