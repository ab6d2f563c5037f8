//! Facts about the machine the suite runs on; they decide which scenarios can run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use nix::sys::statfs::{CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC, TMPFS_MAGIC, statfs};
use serde::Serialize;

/// How cgroups are mounted at `/sys/fs/cgroup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CgroupMode {
    /// Only cgroup v1 hierarchies.
    V1,
    /// v1 hierarchies plus a cgroup2 mount at `/sys/fs/cgroup/unified` (systemd's hybrid layout).
    Hybrid,
    /// Only the unified cgroup2 hierarchy.
    V2,
    /// Nothing recognisable is mounted there.
    Unknown,
}

impl std::fmt::Display for CgroupMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CgroupMode::V1 => "v1",
            CgroupMode::Hybrid => "hybrid (v1 + unified)",
            CgroupMode::V2 => "v2",
            CgroupMode::Unknown => "unknown",
        })
    }
}

/// What the suite knows about the host before any scenario runs.
#[derive(Debug, Clone, Serialize)]
pub struct HostFacts {
    pub euid: u32,
    /// CAP_SYS_ADMIN in the effective set: what "privileged" really means for these scenarios.
    pub has_sys_admin: bool,
    /// The capability bounding set: a capability outside it cannot be granted to any container.
    pub bounding_caps: u64,
    pub cgroup_mode: CgroupMode,
    /// Namespace types the kernel offers (`/proc/self/ns/*`).
    pub namespaces: BTreeSet<String>,
    pub kernel_release: String,
    /// The distribution, from os-release (`PRETTY_NAME`, else `ID VERSION_ID`); `None` when the
    /// machine has no os-release file (a bare guest, a scratch container).
    pub distribution: Option<String>,
    /// The CPU architecture, as Rust names it (`x86_64`, `aarch64`).
    pub architecture: String,
    pub hostname: String,
    pub in_vm: bool,
    pub in_ci: bool,
}

impl HostFacts {
    pub fn detect() -> HostFacts {
        let uname = nix::sys::utsname::uname().ok();
        HostFacts {
            euid: nix::unistd::geteuid().as_raw(),
            has_sys_admin: caps::has_cap(
                None,
                caps::CapSet::Effective,
                caps::Capability::CAP_SYS_ADMIN,
            )
            .unwrap_or(false),
            bounding_caps: caps::read(None, caps::CapSet::Bounding)
                .map(|set| caps_to_mask(&set))
                .unwrap_or(0),
            cgroup_mode: detect_cgroup_mode(Path::new("/sys/fs/cgroup")),
            namespaces: std::fs::read_dir("/proc/self/ns")
                .map(|dir| {
                    dir.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default(),
            kernel_release: uname
                .as_ref()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            distribution: detect_distribution(),
            architecture: std::env::consts::ARCH.to_owned(),
            hostname: current_hostname(),
            in_vm: detect_vm(),
            in_ci: std::env::var_os("CI").is_some() || std::env::var_os("GITHUB_ACTIONS").is_some(),
        }
    }

    pub fn is_privileged(&self) -> bool {
        self.euid == 0 && self.has_sys_admin
    }

    pub fn has_namespace(&self, kind: &str) -> bool {
        self.namespaces.contains(kind)
    }

    /// Whether `cap` is in the host's bounding set, i.e. whether any container can be granted it.
    pub fn can_grant(&self, cap: caps::Capability) -> bool {
        self.bounding_caps & cap.bitmask() != 0
    }
}

/// The namespaces of the calling thread, which the runtime commands it starts inherit: the "host"
/// side of every namespace comparison. (`/proc/thread-self`, because a thread may have unshared.)
pub fn thread_namespaces() -> Result<BTreeMap<String, u64>, std::io::Error> {
    namespaces_at(Path::new("/proc/thread-self/ns"))
}

/// The namespaces of process `pid`, as the host sees them in `/proc/<pid>/ns`.
pub fn process_namespaces(pid: i32) -> Result<BTreeMap<String, u64>, std::io::Error> {
    namespaces_at(&Path::new("/proc").join(pid.to_string()).join("ns"))
}

/// The pid namespace of process `pid`: the device and inode of its `/proc/<pid>/ns/pid`.
pub fn pid_namespace_of(pid: i32) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(format!("/proc/{pid}/ns/pid"))?;
    Ok((meta.dev(), meta.ino()))
}

/// The host pids of every process in the pid namespace of process `init` (a container's init),
/// from the host's /proc. A process that cannot be looked at is an error, except one that exited
/// meanwhile: a partial list would let "every process" checks pass on what they did not see.
pub fn pid_namespace_members(init: i32) -> std::io::Result<Vec<i32>> {
    Ok(pid_namespace_scan(init)?
        .into_iter()
        .map(|(pid, _)| pid)
        .collect())
}

/// The host pid of the process that is pid `inner` in the pid namespace of process `init` (a
/// container's init): for a process started in the container by a runtime or engine that does
/// not say its pid, or forked there. `None` if no such process lives there now.
pub fn host_pid_in_pid_namespace_of(init: i32, inner: i32) -> std::io::Result<Option<i32>> {
    // The last NSpid entry is the pid in the process's own (innermost) pid namespace.
    Ok(pid_namespace_scan(init)?
        .into_iter()
        .find(|(_, nspid)| nspid.last() == Some(&inner))
        .map(|(pid, _)| pid))
}

/// Every process in the pid namespace of `init`: its host pid and its NSpid (one pid per level).
fn pid_namespace_scan(init: i32) -> std::io::Result<Vec<(i32, Vec<i32>)>> {
    use procfs::process::Process;
    let failed =
        |what: String| move |e: procfs::ProcError| std::io::Error::other(format!("{what}: {e}"));
    let nspid_of = |process: &Process| process.status().map(|s| s.nspid.unwrap_or_default());
    let depth = Process::new(init)
        .and_then(|p| nspid_of(&p))
        .map_err(failed(format!("reading /proc/{init}/status")))?
        .len();
    let theirs = pid_namespace_of(init)
        .map_err(|e| std::io::Error::new(e.kind(), format!("reading /proc/{init}/ns/pid: {e}")))?;
    let mut members = Vec::new();
    for process in procfs::process::all_processes().map_err(failed("listing /proc".into()))? {
        let process = match process {
            Ok(process) => process,
            Err(procfs::ProcError::NotFound(_)) => continue,
            Err(e) => return Err(failed("listing /proc".into())(e)),
        };
        let pid = process.pid();
        // Only a process as deeply nested as the init can share its pid namespace (NSpid has one
        // entry per level). The others include processes of the machine's own that even root
        // may not look into (another user namespace's), and need no look.
        let nspid = match nspid_of(&process) {
            Ok(nspid) if nspid.len() == depth => nspid,
            Ok(_) | Err(procfs::ProcError::NotFound(_)) => continue,
            Err(e) => return Err(failed(format!("reading /proc/{pid}/status"))(e)),
        };
        match pid_namespace_of(pid) {
            Ok(ns) if ns == theirs => members.push((pid, nspid)),
            Ok(_) => {}
            // It exited (or is a zombie, which has no namespaces left) since /proc was listed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("reading /proc/{pid}/ns/pid: {e}"),
                ));
            }
        }
    }
    Ok(members)
}

/// Namespace name to nsfs inode for every entry of `dir`; any entry that cannot be read is an
/// error (a partial map would let a comparison pass on what it could not see).
fn namespaces_at(dir: &Path) -> Result<BTreeMap<String, u64>, std::io::Error> {
    use std::os::unix::fs::MetadataExt;
    let context = |what: String| {
        move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{what}: {e}"))
    };
    let mut map = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(context(format!("listing {}", dir.display())))? {
        let entry = entry.map_err(context(format!("listing {}", dir.display())))?;
        // stat follows the magic link to the nsfs inode that identifies the namespace.
        let inode = std::fs::metadata(entry.path())
            .map_err(context(format!("reading {}", entry.path().display())))?
            .ino();
        map.insert(entry.file_name().to_string_lossy().into_owned(), inode);
    }
    if map.is_empty() {
        return Err(std::io::Error::other(format!(
            "{} lists no namespace",
            dir.display()
        )));
    }
    Ok(map)
}

pub fn current_hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub fn caps_to_mask(set: &caps::CapsHashSet) -> u64 {
    set.iter().fold(0, |mask, cap| mask | cap.bitmask())
}

/// Reads the cgroup mode from the filesystem type at `root` (and at `root/unified` for hybrid).
pub fn detect_cgroup_mode(root: &Path) -> CgroupMode {
    let magic = |p: &Path| statfs(p).map(|s| s.filesystem_type()).ok();
    match magic(root) {
        Some(m) if m == CGROUP2_SUPER_MAGIC => CgroupMode::V2,
        Some(m) if m == TMPFS_MAGIC => {
            // A tmpfs is v1's only if it holds cgroup v1 hierarchies (a /tmp on tmpfs does not).
            let holds_v1 = std::fs::read_dir(root).is_ok_and(|entries| {
                entries
                    .flatten()
                    .any(|e| magic(&e.path()) == Some(CGROUP_SUPER_MAGIC))
            });
            if magic(&root.join("unified")) == Some(CGROUP2_SUPER_MAGIC) {
                CgroupMode::Hybrid
            } else if holds_v1 {
                CgroupMode::V1
            } else {
                CgroupMode::Unknown
            }
        }
        _ => CgroupMode::Unknown,
    }
}

/// The distribution of this machine, from `/etc/os-release` or, where that is missing,
/// `/usr/lib/os-release` (the order os-release(5) gives).
fn detect_distribution() -> Option<String> {
    ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .and_then(|text| distribution_from_os_release(&text))
}

/// `PRETTY_NAME`, else `ID VERSION_ID`, else `ID`, from the text of an os-release file.
pub fn distribution_from_os_release(text: &str) -> Option<String> {
    let mut fields = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            fields.insert(key.trim(), os_release_value(value.trim()));
        }
    }
    let field = |key: &str| fields.get(key).filter(|v| !v.is_empty()).cloned();
    field("PRETTY_NAME").or_else(|| {
        let id = field("ID")?;
        Some(match field("VERSION_ID") {
            Some(version) => format!("{id} {version}"),
            None => id,
        })
    })
}

/// An os-release value: shell-like, optionally in single or double quotes, with `\` escapes.
fn os_release_value(raw: &str) -> String {
    let quoted = |q: char| raw.len() >= 2 && raw.starts_with(q) && raw.ends_with(q);
    let inner = if quoted('"') || quoted('\'') {
        &raw[1..raw.len() - 1]
    } else {
        raw
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn detect_vm() -> bool {
    let cpu_flags_say_hypervisor = std::fs::read_to_string("/proc/cpuinfo")
        .map(|text| {
            text.lines()
                .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor"))
        })
        .unwrap_or(false);
    cpu_flags_say_hypervisor || Path::new("/sys/hypervisor/type").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_host_has_a_known_cgroup_mode() {
        let mode = detect_cgroup_mode(Path::new("/sys/fs/cgroup"));
        assert_ne!(mode, CgroupMode::Unknown);
    }

    #[test]
    fn a_plain_directory_is_not_a_cgroup_mount() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(detect_cgroup_mode(dir.path()), CgroupMode::Unknown);
    }

    #[test]
    fn a_tmpfs_without_hierarchies_is_not_cgroup_v1() {
        // /dev/shm is a tmpfs nearly everywhere; /tmp is one on many distributions.
        let dir = tempfile::tempdir_in("/dev/shm").expect("a directory in /dev/shm");
        assert_eq!(detect_cgroup_mode(dir.path()), CgroupMode::Unknown);
    }

    #[rstest::rstest]
    #[case::pretty_name(
        "NAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nID=ubuntu\nPRETTY_NAME=\"Ubuntu 24.04.1 LTS\"\n",
        Some("Ubuntu 24.04.1 LTS")
    )]
    #[case::id_and_version("ID=alpine\nVERSION_ID=3.20.3\n", Some("alpine 3.20.3"))]
    #[case::id_alone("ID='arch'\n# a comment\n", Some("arch"))]
    #[case::escapes(
        "PRETTY_NAME=\"A \\\"quoted\\\" \\$name\"\n",
        Some("A \"quoted\" $name")
    )]
    #[case::empty_pretty_name_falls_back(
        "PRETTY_NAME=\"\"\nID=debian\nVERSION_ID=\"12\"\n",
        Some("debian 12")
    )]
    #[case::nothing_usable("NAME=Linux\n", None)]
    #[case::empty("", None)]
    fn reads_the_distribution_from_os_release(#[case] text: &str, #[case] expected: Option<&str>) {
        assert_eq!(distribution_from_os_release(text).as_deref(), expected);
    }

    #[test]
    fn bounding_mask_round_trips_the_capability_bits() {
        let set: caps::CapsHashSet = [caps::Capability::CAP_CHOWN, caps::Capability::CAP_KILL]
            .into_iter()
            .collect();
        assert_eq!(caps_to_mask(&set), (1 << 0) | (1 << 5));
    }
}
