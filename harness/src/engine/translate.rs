//! A scenario's container ([`ContainerSpec`], an OCI config with any negative control's edit
//! applied) as the engine's own `create` flags: `--pid/--ipc/--uts/--network/--cgroupns` modes,
//! `--cap-drop ALL --cap-add …`, `--read-only`, `--security-opt no-new-privileges=…`,
//! `--cpu-quota`, `--pids-limit`, `--ulimit`, `--device`, `--device-cgroup-rule`, `--mount`.
//!
//! The translation is exact or refused: a field the engine's command line cannot express as the
//! config says is an [`Untranslatable`] naming it, and the scenario is skipped with that reason,
//! never run with something else. What the engine does by default and a config can change (its
//! masked and read-only paths, its seccomp profile) is part of the reference config under an
//! engine ([`EngineDefaults`]): a config without it asks for the engine's unsafe flag
//! (`systempaths=unconfined`, `seccomp=unconfined`), one with another asks for that one. What the
//! config leaves to the runtime, the engine fills in (podman's pids limit): that is the engine as
//! people run it.
//!
//! Against an operator's engine, the flags that would let a container change the real machine
//! (`--uts=host`, `--ipc=host`, `--network=host`) are refused too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Mount, Spec};

use crate::driver::bundle::{ContainerSpec, PROBE_PATH};

/// Annotation naming the engine network a container is put on (engine-network scenarios).
pub const NETWORK_ANNOTATION: &str = "io.palisade.engine.network";
/// The mount type Palisade uses for an engine's named volume (`source` is the volume's name).
pub const VOLUME_TYPE: &str = "volume";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Docker,
    Podman,
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Docker => "docker",
            EngineKind::Podman => "podman",
        }
    }
}

/// What the engine does when a config leaves something out, read from the OCI config it hands
/// its runtime for a container made with no flags at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineDefaults {
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    /// The ulimits it gives a container that names none (`default_ulimits`), by short name.
    /// Podman drops them all once one `--ulimit` is given, and then asks for limits the
    /// runtime may not be allowed to set: so a config that sets some gets the others
    /// explicitly, as the engine would have given them.
    pub ulimits: Vec<(String, u64, u64)>,
    /// Its default seccomp profile, as it hands it to the runtime (`None` if it could not be
    /// read: a config's lack of one then means the engine's default, not none).
    pub seccomp: Option<serde_json::Value>,
}

/// A namespace the config joins by path, as the engine can name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    /// The engine's host (the lab host, or the operator's machine).
    Host,
    /// Another container of this engine.
    Container(String),
}

/// What the translation needs to know beyond the config.
pub struct TranslateEnv<'a> {
    pub kind: EngineKind,
    /// An operator's engine: flags that would change the real machine are refused.
    pub operator: bool,
    pub defaults: &'a EngineDefaults,
    /// Resolves a namespace path of the config (`/proc/<pid>/ns/ipc`) to what the engine can join.
    pub joined: &'a dyn Fn(LinuxNamespaceType, &Path) -> Option<Joined>,
    /// A host device node of this type (`c`, `b`) and number, for `--device`.
    pub host_device: &'a dyn Fn(char, i64, i64) -> Option<PathBuf>,
}

/// The flags of `<engine> create`, and the probe's arguments after the image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Translation {
    pub flags: Vec<String>,
    pub command: Vec<String>,
    /// A seccomp profile (JSON) the driver writes to a file and passes as
    /// `--security-opt seccomp=<file>` (engines read the OCI profile's own field names).
    pub seccomp_profile: Option<String>,
}

/// A part of the config the engine's command line cannot express.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{engine} cannot express {what}")]
pub struct Untranslatable {
    pub engine: &'static str,
    pub what: String,
}

/// The engine's defaults for what a config does not say: the mounts every OCI config lists
/// (`runc spec`), which engines make themselves.
fn is_default_mount(mount: &Mount) -> bool {
    oci_spec::runtime::get_default_mounts().contains(mount)
}

fn is_default_destination(path: &Path) -> bool {
    oci_spec::runtime::get_default_mounts()
        .iter()
        .any(|m| m.destination() == path)
}

/// A process to start in a running container (`process`, inside the container created with
/// `container`'s process) as the flags of `<engine> exec` and the command after the container's
/// name. Exact or refused: the engine's `exec` sets the user, working directory and environment,
/// and otherwise gives the process what the container's init has; a process spec that differs
/// from the container's anywhere else (its own capabilities, rlimits, noNewPrivileges…) is
/// [`Untranslatable`].
pub fn exec_flags(
    kind: EngineKind,
    process: &oci_spec::runtime::Process,
    container: &oci_spec::runtime::Process,
) -> Result<(Vec<String>, Vec<String>), Untranslatable> {
    let refuse = |what: String| Untranslatable {
        engine: kind.name(),
        what,
    };
    let args = process.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(refuse("an exec process without arguments".into()));
    }
    let user = process.user();
    if user.umask().is_some()
        || user
            .additional_gids()
            .as_ref()
            .is_some_and(|g| !g.is_empty())
    {
        return Err(refuse(format!(
            "an exec process's own umask or supplementary groups (`{} exec` has only --user uid:gid)",
            kind.name()
        )));
    }
    // The environment the process gets is the container's plus --env: a variable of the
    // container's that the process spec leaves out cannot be taken away.
    let env = process.env().clone().unwrap_or_default();
    let names: BTreeSet<&str> = env
        .iter()
        .map(|e| e.split('=').next().unwrap_or(e))
        .collect();
    let dropped: Vec<&str> = container
        .env()
        .iter()
        .flatten()
        .map(|e| e.split('=').next().unwrap_or(e))
        .filter(|name| !names.contains(name))
        .collect();
    if !dropped.is_empty() {
        return Err(refuse(format!(
            "an exec process without the container's environment variables {dropped:?}"
        )));
    }
    // Everything else must be the container's: compare what is left, field by field.
    let rest = |p: &oci_spec::runtime::Process| {
        let mut value = serde_json::to_value(p).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            for key in ["args", "env", "cwd", "user", "terminal", "consoleSize"] {
                map.remove(key);
            }
        }
        value
    };
    let (own, theirs) = (rest(process), rest(container));
    let differing: Vec<String> = own
        .as_object()
        .into_iter()
        .flatten()
        .chain(theirs.as_object().into_iter().flatten())
        .filter(|(key, _)| own.get(key.as_str()) != theirs.get(key.as_str()))
        .map(|(key, _)| key.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !differing.is_empty() {
        return Err(refuse(format!(
            "an exec process with its own {} (`{} exec` gives it the container's)",
            differing.join(", "),
            kind.name()
        )));
    }
    if process.terminal() == Some(true) {
        return Err(refuse("an exec process on a terminal".into()));
    }
    let mut flags = vec![
        "--user".to_owned(),
        format!("{}:{}", user.uid(), user.gid()),
        "--workdir".to_owned(),
        process.cwd().display().to_string(),
    ];
    for var in env {
        flags.extend(["--env".to_owned(), var]);
    }
    Ok((flags, args))
}

pub fn translate(spec: &ContainerSpec, env: &TranslateEnv) -> Result<Translation, Untranslatable> {
    let mut t = Translator {
        env,
        flags: Vec::new(),
    };
    let command = t.process(&spec.spec)?;
    let seccomp_profile = t.seccomp(&spec.spec)?;
    t.root(&spec.spec)?;
    let namespaces = t.namespaces(&spec.spec)?;
    t.hostname(&spec.spec, &namespaces)?;
    t.mounts(&spec.spec)?;
    t.linux(&spec.spec)?;
    t.annotations(&spec.spec, &namespaces)?;
    if spec.spec.hooks().is_some() {
        return Err(t.refuse("OCI hooks"));
    }
    Ok(Translation {
        flags: t.flags,
        command,
        seccomp_profile,
    })
}

struct Translator<'a> {
    env: &'a TranslateEnv<'a>,
    flags: Vec<String>,
}

/// Each namespace type, as the config has it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ns {
    New,
    Shared,
    Joined(Joined),
}

impl Translator<'_> {
    fn refuse(&self, what: impl Into<String>) -> Untranslatable {
        Untranslatable {
            engine: self.env.kind.name(),
            what: what.into(),
        }
    }

    fn flag(&mut self, name: &str, value: impl Into<String>) {
        self.flags.push(name.to_owned());
        self.flags.push(value.into());
    }

    fn process(&mut self, spec: &Spec) -> Result<Vec<String>, Untranslatable> {
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| self.refuse("a config without a process"))?;
        if process.terminal() == Some(true) {
            return Err(self.refuse("a terminal (the probe talks over plain pipes)"));
        }
        let args = process.args().clone().unwrap_or_default();
        match args.split_first() {
            Some((first, rest)) if first == PROBE_PATH => {
                let user = process.user();
                self.flag("--user", format!("{}:{}", user.uid(), user.gid()));
                for gid in user.additional_gids().iter().flatten() {
                    self.flag("--group-add", gid.to_string());
                }
                if user.umask().is_some() {
                    return Err(self.refuse("a umask"));
                }
                for var in process.env().iter().flatten() {
                    self.flag("--env", var.clone());
                }
                self.flag("--workdir", process.cwd().display().to_string());
                self.capabilities(process)?;
                let nnp = process.no_new_privileges().unwrap_or(false);
                self.flag("--security-opt", format!("no-new-privileges={nnp}"));
                let mut named = Vec::new();
                for rlimit in process.rlimits().iter().flatten() {
                    let name = rlimit.typ().to_string();
                    let short = name.strip_prefix("RLIMIT_").unwrap_or(&name).to_lowercase();
                    self.flag(
                        "--ulimit",
                        format!("{short}={}:{}", rlimit.soft(), rlimit.hard()),
                    );
                    named.push(short);
                }
                if !named.is_empty() {
                    for (short, soft, hard) in &self.env.defaults.ulimits {
                        if !named.contains(short) {
                            self.flag("--ulimit", format!("{short}={soft}:{hard}"));
                        }
                    }
                }
                if let Some(adj) = process.oom_score_adj() {
                    self.flag("--oom-score-adj", adj.to_string());
                }
                if process.apparmor_profile().is_some() || process.selinux_label().is_some() {
                    return Err(self.refuse("an AppArmor profile or SELinux label of the config"));
                }
                if process.console_size().is_some() {
                    return Err(self.refuse("a console size"));
                }
                Ok(rest.to_vec())
            }
            _ => Err(self.refuse(format!(
                "a process other than the image's probe ({PROBE_PATH}): {args:?}"
            ))),
        }
    }

    /// Engines give the same set to bounding, effective and permitted, and none to inheritable
    /// and ambient: `--cap-drop ALL` and one `--cap-add` per capability says exactly that.
    fn capabilities(&mut self, process: &oci_spec::runtime::Process) -> Result<(), Untranslatable> {
        let caps = process.capabilities().clone().unwrap_or_default();
        let set = |s: &Option<oci_spec::runtime::Capabilities>| -> BTreeSet<String> {
            s.iter().flatten().map(ToString::to_string).collect()
        };
        let bounding = set(caps.bounding());
        if set(caps.effective()) != bounding || set(caps.permitted()) != bounding {
            return Err(self.refuse(
                "different bounding, effective and permitted capability sets (it gives one set to all three)",
            ));
        }
        if !set(caps.inheritable()).is_empty() || !set(caps.ambient()).is_empty() {
            return Err(self.refuse("inheritable or ambient capabilities"));
        }
        self.flag("--cap-drop", "ALL");
        for cap in bounding {
            self.flag("--cap-add", cap);
        }
        Ok(())
    }

    /// No profile: `seccomp=unconfined`; the engine's own: nothing; another: that one.
    fn seccomp(&mut self, spec: &Spec) -> Result<Option<String>, Untranslatable> {
        let wanted = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
        match (wanted, &self.env.defaults.seccomp) {
            (None, Some(_)) => {
                self.flag("--security-opt", "seccomp=unconfined");
                Ok(None)
            }
            // The engine's default could not be read: a config without a profile is taken as
            // the reference (the engine's default), as it was before one could tell them apart.
            (None, None) => Ok(None),
            (Some(profile), default) => {
                let value = serde_json::to_value(&profile)
                    .map_err(|e| self.refuse(format!("a seccomp profile it cannot encode: {e}")))?;
                if default.as_ref() == Some(&value) {
                    Ok(None)
                } else {
                    Ok(Some(value.to_string()))
                }
            }
        }
    }

    fn root(&mut self, spec: &Spec) -> Result<(), Untranslatable> {
        let root = spec.root().clone().unwrap_or_default();
        if root.readonly() == Some(true) {
            self.flags.push("--read-only".into());
        }
        Ok(())
    }

    fn namespaces(&mut self, spec: &Spec) -> Result<BTreeMap<String, Ns>, Untranslatable> {
        let listed = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default();
        let mut found = BTreeMap::new();
        for ns in &listed {
            let kind = ns.typ();
            let state = match ns.path() {
                None => Ns::New,
                Some(path) => match (self.env.joined)(kind, path) {
                    Some(joined) => Ns::Joined(joined),
                    None => {
                        return Err(self.refuse(format!(
                            "joining the {} namespace {} (it can share its host's or another of its containers', nothing else)",
                            palisade_common::namespaces::proc_name(kind),
                            path.display()
                        )));
                    }
                },
            };
            found.insert(
                palisade_common::namespaces::proc_name(kind).to_owned(),
                state,
            );
        }
        let state = |name: &str| found.get(name).cloned().unwrap_or(Ns::Shared);
        if state("mnt") != Ns::New {
            return Err(self.refuse("a container without a mount namespace of its own"));
        }
        match (found.get("user"), self.env.kind) {
            (None, _) => {}
            (Some(Ns::New), EngineKind::Podman) => {
                // `--uidmap`/`--gidmap` give the container a user namespace with these maps.
                let linux = spec.linux().clone().unwrap_or_default();
                for (flag, maps) in [
                    ("--uidmap", linux.uid_mappings().clone().unwrap_or_default()),
                    ("--gidmap", linux.gid_mappings().clone().unwrap_or_default()),
                ] {
                    if maps.is_empty() {
                        return Err(self.refuse("a user namespace without id mappings"));
                    }
                    for map in maps {
                        self.flag(
                            flag,
                            format!("{}:{}:{}", map.container_id(), map.host_id(), map.size()),
                        );
                    }
                }
            }
            (Some(_), EngineKind::Podman) => {
                return Err(self.refuse("joining an existing user namespace"));
            }
            (Some(_), EngineKind::Docker) => {
                return Err(self.refuse(
                    "a user namespace per container (dockerd remaps users daemon-wide, with --userns-remap)",
                ));
            }
        }
        if found.contains_key("time") {
            return Err(self.refuse("a time namespace (no flag for one)"));
        }
        // What a new namespace of each type is called, where the engine's default is not that
        // already: docker takes no `--pid private` or `--uts private` (a namespace of its own is
        // its default), a new network namespace is on the engine's network (or the one the
        // annotation names), an IPC namespace others may join is `shareable`.
        for (flag, name, new) in [
            ("--pid", "pid", None),
            ("--ipc", "ipc", Some("shareable")),
            ("--uts", "uts", None),
            ("--network", "net", None),
            ("--cgroupns", "cgroup", Some("private")),
        ] {
            let value = match state(name) {
                Ns::New => match new {
                    Some(value) => value.to_owned(),
                    None => continue,
                },
                Ns::Shared | Ns::Joined(Joined::Host) => {
                    if self.env.operator && matches!(name, "uts" | "ipc" | "net") {
                        return Err(self.refuse(format!(
                            "`{flag}=host` against the operator's engine: the container would share the real machine's {name} namespace (renaming it, creating IPC objects in it, binding its ports)"
                        )));
                    }
                    "host".to_owned()
                }
                Ns::Joined(Joined::Container(id)) => {
                    if name == "cgroup" || (name == "uts" && self.env.kind == EngineKind::Docker) {
                        return Err(self.refuse(format!(
                            "joining another container's {name} namespace (`{flag}` takes no `container:`)"
                        )));
                    }
                    format!("container:{id}")
                }
            };
            self.flag(flag, value);
        }
        Ok(found)
    }

    fn hostname(&mut self, spec: &Spec, ns: &BTreeMap<String, Ns>) -> Result<(), Untranslatable> {
        if spec.domainname().is_some() {
            return Err(self.refuse("a domain name"));
        }
        if let Some(hostname) = spec.hostname() {
            if ns.get("uts") != Some(&Ns::New) {
                return Err(self.refuse("a hostname without a UTS namespace of its own"));
            }
            self.flag("--hostname", hostname.clone());
        }
        Ok(())
    }

    fn mounts(&mut self, spec: &Spec) -> Result<(), Untranslatable> {
        let mounts = spec.mounts().clone().unwrap_or_default();
        for default in oci_spec::runtime::get_default_mounts() {
            if !mounts.contains(&default) {
                return Err(self.refuse(format!(
                    "a config without (or with another) {} mount: it makes its own",
                    default.destination().display()
                )));
            }
        }
        for mount in mounts.iter().filter(|m| !is_default_mount(m)) {
            let destination = mount.destination();
            if is_default_destination(destination) {
                return Err(self.refuse(format!(
                    "a second mount at {} (it makes its own there)",
                    destination.display()
                )));
            }
            let value = self.mount(mount)?;
            self.flag("--mount", value);
        }
        Ok(())
    }

    /// One `--mount` value: a bind, a tmpfs or a named volume.
    fn mount(&self, mount: &Mount) -> Result<String, Untranslatable> {
        let destination = mount.destination().display().to_string();
        let options = mount.options().clone().unwrap_or_default();
        let typ = mount.typ().clone().unwrap_or_default();
        let bind = typ == "bind" || options.iter().any(|o| o == "bind" || o == "rbind");
        let source = mount
            .source()
            .as_ref()
            .map(|s| s.display().to_string())
            .unwrap_or_default();
        if source.contains(',') || destination.contains(',') {
            return Err(self.refuse(format!("a mount path with a comma ({destination})")));
        }
        if bind {
            let mut value = format!("type=bind,source={source},destination={destination}");
            let mut recursive = false;
            for option in &options {
                match option.as_str() {
                    "bind" => {}
                    "rbind" => recursive = true,
                    "ro" => value.push_str(",readonly=true"),
                    "rw" => {}
                    p @ ("shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate") => {
                        value.push_str(&format!(",bind-propagation={p}"));
                    }
                    other => {
                        return Err(self.refuse(format!(
                            "the bind mount option `{other}` (at {destination})"
                        )));
                    }
                }
            }
            if !recursive {
                value.push_str(",bind-nonrecursive=true");
            }
            Ok(value)
        } else if typ == "tmpfs" {
            let mut value = format!("type=tmpfs,destination={destination}");
            for option in &options {
                match option.split_once('=') {
                    Some(("size", size)) => {
                        value.push_str(&format!(
                            ",tmpfs-size={}",
                            bytes(size)
                                .ok_or_else(|| self.refuse(format!("the tmpfs size `{size}`")),)?
                        ));
                    }
                    Some(("mode", mode)) => value.push_str(&format!(",tmpfs-mode={mode}")),
                    _ => {
                        return Err(
                            self.refuse(format!("the tmpfs option `{option}` (at {destination})"))
                        );
                    }
                }
            }
            Ok(value)
        } else if typ == VOLUME_TYPE {
            if !options.is_empty() {
                return Err(self.refuse(format!("volume options {options:?}")));
            }
            Ok(format!(
                "type=volume,source={source},destination={destination}"
            ))
        } else {
            Err(self.refuse(format!(
                "a `{typ}` mount at {destination} (only binds, tmpfs and volumes)"
            )))
        }
    }

    fn linux(&mut self, spec: &Spec) -> Result<(), Untranslatable> {
        let Some(linux) = spec.linux() else {
            return Err(self.refuse("a config without a `linux` section"));
        };
        let user_ns = linux
            .namespaces()
            .iter()
            .flatten()
            .any(|n| n.typ() == LinuxNamespaceType::User);
        if !user_ns
            && (linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
                || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty()))
        {
            return Err(self.refuse("uid/gid mappings without a user namespace"));
        }
        if linux.cgroups_path().is_some() {
            return Err(self.refuse(
                "a cgroup path: it places each container in its cgroup parent, under the container's id",
            ));
        }
        match linux.rootfs_propagation().as_deref() {
            None => {}
            Some("shared" | "rshared")
                if self.env.kind == EngineKind::Docker
                    && self.flags.iter().any(|f| {
                        f.contains("bind-propagation=rshared")
                            || f.contains("bind-propagation=shared")
                    }) =>
            {
                // docker makes the root shared itself when a bind mount is.
            }
            Some(other) => {
                return Err(self.refuse(format!(
                    "`rootfsPropagation: {other}` (no flag: it sets the root's propagation itself)"
                )));
            }
        }
        if linux.mount_label().is_some()
            || linux.intel_rdt().is_some()
            || linux.personality().is_some()
        {
            return Err(self.refuse("mountLabel, intelRdt or personality"));
        }
        for (key, value) in linux.sysctl().iter().flatten() {
            self.flag("--sysctl", format!("{key}={value}"));
        }
        for device in linux.devices().iter().flatten() {
            let kind = match device.typ() {
                oci_spec::runtime::LinuxDeviceType::C | oci_spec::runtime::LinuxDeviceType::U => {
                    'c'
                }
                oci_spec::runtime::LinuxDeviceType::B => 'b',
                other => {
                    return Err(self.refuse(format!("a device node of type {other:?}")));
                }
            };
            let host = (self.env.host_device)(kind, device.major(), device.minor()).ok_or_else(
                || {
                    self.refuse(format!(
                        "the device {} ({kind} {}:{}): `--device` copies a host node, and the host has none with that number",
                        device.path().display(),
                        device.major(),
                        device.minor()
                    ))
                },
            )?;
            self.flag(
                "--device",
                format!("{}:{}:rwm", host.display(), device.path().display()),
            );
        }
        self.resources(linux.resources().as_ref())?;
        self.paths(
            linux.masked_paths().clone().unwrap_or_default(),
            linux.readonly_paths().clone().unwrap_or_default(),
        )
    }

    fn resources(
        &mut self,
        resources: Option<&oci_spec::runtime::LinuxResources>,
    ) -> Result<(), Untranslatable> {
        let Some(resources) = resources else {
            return Ok(());
        };
        let rules = resources.devices().clone().unwrap_or_default();
        for (i, rule) in rules.iter().enumerate() {
            let all = rule
                .typ()
                .is_none_or(|t| t == oci_spec::runtime::LinuxDeviceType::A)
                && rule.major().is_none()
                && rule.minor().is_none();
            let access = rule.access().clone().unwrap_or_else(|| "rwm".into());
            if i == 0 && !rule.allow() && all && access == "rwm" {
                // Deny everything but the default devices: what engines do anyway.
                continue;
            }
            if !rule.allow() {
                return Err(self.refuse(
                    "a device rule that denies (after the first deny-all, it only adds allow rules)",
                ));
            }
            let typ = match rule.typ() {
                None | Some(oci_spec::runtime::LinuxDeviceType::A) => "a",
                Some(oci_spec::runtime::LinuxDeviceType::B) => "b",
                Some(_) => "c",
            };
            let number = |n: Option<i64>| n.map_or_else(|| "*".to_owned(), |n| n.to_string());
            self.flag(
                "--device-cgroup-rule",
                format!(
                    "{typ} {}:{} {access}",
                    number(rule.major()),
                    number(rule.minor())
                ),
            );
        }
        if let Some(pids) = resources.pids() {
            self.flag("--pids-limit", pids.limit().to_string());
        }
        if let Some(cpu) = resources.cpu() {
            if let Some(quota) = cpu.quota() {
                self.flag("--cpu-quota", quota.to_string());
            }
            if let Some(period) = cpu.period() {
                self.flag("--cpu-period", period.to_string());
            }
            if let Some(shares) = cpu.shares() {
                self.flag("--cpu-shares", shares.to_string());
            }
            if let Some(cpus) = cpu.cpus() {
                self.flag("--cpuset-cpus", cpus.clone());
            }
            if let Some(mems) = cpu.mems() {
                self.flag("--cpuset-mems", mems.clone());
            }
            if cpu.realtime_period().is_some() || cpu.realtime_runtime().is_some() {
                return Err(self.refuse("realtime CPU settings"));
            }
        }
        if let Some(memory) = resources.memory()
            && let Some(limit) = memory.limit()
        {
            self.flag("--memory", limit.to_string());
        }
        if resources
            .hugepage_limits()
            .as_ref()
            .is_some_and(|h| !h.is_empty())
            || resources.network().is_some()
            || resources.block_io().is_some()
            || resources.rdma().is_some()
            || resources.unified().as_ref().is_some_and(|u| !u.is_empty())
        {
            return Err(self.refuse("hugepage, network, block I/O, RDMA or unified resources"));
        }
        Ok(())
    }

    /// Masked and read-only paths: docker has one fixed list (or none, `systempaths=unconfined`);
    /// podman can mask and unmask single paths.
    fn paths(&mut self, masked: Vec<String>, readonly: Vec<String>) -> Result<(), Untranslatable> {
        let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();
        let (masked, readonly) = (set(&masked), set(&readonly));
        let default_masked = set(&self.env.defaults.masked_paths);
        let default_readonly = set(&self.env.defaults.readonly_paths);
        if masked == default_masked && readonly == default_readonly {
            return Ok(());
        }
        if masked.is_empty() && readonly.is_empty() {
            self.flag("--security-opt", "systempaths=unconfined");
            return Ok(());
        }
        // podman's `unmask` takes a path off either list, `mask` adds a masked one; nothing adds
        // a read-only one.
        if self.env.kind == EngineKind::Podman && readonly.is_subset(&default_readonly) {
            let unmasked = default_masked
                .difference(&masked)
                .chain(default_readonly.difference(&readonly));
            for path in unmasked {
                self.flag("--security-opt", format!("unmask={path}"));
            }
            for path in masked.difference(&default_masked) {
                self.flag("--security-opt", format!("mask={path}"));
            }
            return Ok(());
        }
        let diff = |wanted: &BTreeSet<String>, own: &BTreeSet<String>, what: &str| {
            let gone: Vec<&String> = own.difference(wanted).collect();
            let added: Vec<&String> = wanted.difference(own).collect();
            match (gone.is_empty(), added.is_empty()) {
                (true, true) => None,
                _ => Some(format!("{what} without {gone:?} and with {added:?}")),
            }
        };
        let changes: Vec<String> = [
            diff(&masked, &default_masked, "masked paths"),
            diff(&readonly, &default_readonly, "read-only paths"),
        ]
        .into_iter()
        .flatten()
        .collect();
        Err(self.refuse(format!(
            "{} (it has its own lists, or none: `systempaths=unconfined`)",
            changes.join(", ")
        )))
    }

    fn annotations(
        &mut self,
        spec: &Spec,
        ns: &BTreeMap<String, Ns>,
    ) -> Result<(), Untranslatable> {
        let annotations = spec.annotations().clone().unwrap_or_default();
        let network = annotations.get(NETWORK_ANNOTATION);
        match (ns.get("net"), network) {
            (Some(Ns::New), Some(name)) => self.flag("--network", name.clone()),
            (Some(Ns::New), None) => {}
            (_, Some(name)) => {
                return Err(self.refuse(format!(
                    "the network `{name}` for a container without a network namespace of its own"
                )));
            }
            (_, None) => {}
        }
        for (key, value) in annotations.iter().filter(|(k, _)| *k != NETWORK_ANNOTATION) {
            if self.env.kind == EngineKind::Docker {
                return Err(self.refuse(format!(
                    "the annotation `{key}` (docker 20.10 has no --annotation)"
                )));
            }
            self.flag("--annotation", format!("{key}={value}"));
        }
        Ok(())
    }
}

/// `64k` → 65536.
fn bytes(size: &str) -> Option<u64> {
    let (digits, unit) = size.split_at(
        size.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(size.len()),
    );
    let n: u64 = digits.parse().ok()?;
    let factor = match unit.to_ascii_lowercase().as_str() {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::Capability;
    use oci_spec::runtime::LinuxNamespaceType::{Ipc, Network, Pid, Time, Uts};
    use rstest::rstest;

    fn docker_defaults() -> EngineDefaults {
        EngineDefaults {
            masked_paths: oci_spec::runtime::get_default_maskedpaths(),
            readonly_paths: oci_spec::runtime::get_default_readonly_paths(),
            ulimits: Vec::new(),
            seccomp: None,
        }
    }

    fn run(
        spec: &ContainerSpec,
        kind: EngineKind,
        operator: bool,
    ) -> Result<Translation, Untranslatable> {
        let defaults = docker_defaults();
        let joined = |_: LinuxNamespaceType, path: &Path| -> Option<Joined> {
            match path.to_str()? {
                "/proc/10/ns/ipc" | "/proc/10/ns/uts" => Some(Joined::Container("first".into())),
                "/proc/1/ns/ipc" | "/proc/1/ns/net" => Some(Joined::Host),
                _ => None,
            }
        };
        let device = |kind: char, major: i64, minor: i64| {
            (kind == 'c' && (major, minor) == (1, 7)).then(|| PathBuf::from("/dev/full"))
        };
        translate(
            spec,
            &TranslateEnv {
                kind,
                operator,
                defaults: &defaults,
                joined: &joined,
                host_device: &device,
            },
        )
    }

    fn reference() -> ContainerSpec {
        ContainerSpec::new("c").expect("reference spec")
    }

    fn pairs(t: &Translation) -> Vec<(String, String)> {
        t.flags
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0].clone(), c[1].clone()))
            .collect()
    }

    fn has(t: &Translation, flag: &str, value: &str) -> bool {
        pairs(t).iter().any(|(f, v)| f == flag && v == value)
    }

    #[rstest]
    #[case::the_container_s_process(|_: &mut oci_spec::runtime::Process| {}, None)]
    #[case::another_user(|p: &mut oci_spec::runtime::Process| {
        p.set_user(oci_spec::runtime::UserBuilder::default().uid(1000u32).gid(1000u32).build().expect("user"));
    }, None)]
    #[case::own_capabilities(|p: &mut oci_spec::runtime::Process| {
        p.set_capabilities(None);
    }, Some("its own capabilities"))]
    #[case::own_no_new_privileges(|p: &mut oci_spec::runtime::Process| {
        p.set_no_new_privileges(Some(false));
    }, Some("noNewPrivileges"))]
    #[case::supplementary_groups(|p: &mut oci_spec::runtime::Process| {
        p.set_user(oci_spec::runtime::UserBuilder::default().additional_gids(vec![5u32]).build().expect("user"));
    }, Some("supplementary groups"))]
    #[case::a_dropped_variable(|p: &mut oci_spec::runtime::Process| {
        p.set_env(Some(Vec::new()));
    }, Some("without the container's environment variables"))]
    #[case::no_arguments(|p: &mut oci_spec::runtime::Process| {
        p.set_args(Some(Vec::new()));
    }, Some("without arguments"))]
    fn exec_is_exact_or_refused(
        #[case] change: fn(&mut oci_spec::runtime::Process),
        #[case] refused: Option<&str>,
    ) {
        let spec = reference();
        let container = spec.spec.process().clone().expect("a process");
        let mut process = spec.exec_process();
        change(&mut process);
        let result = exec_flags(EngineKind::Podman, &process, &container);
        match refused {
            None => {
                let (flags, args) = result.expect("expressible");
                let user = format!("{}:{}", process.user().uid(), process.user().gid());
                assert_eq!(flags[..4], ["--user", user.as_str(), "--workdir", "/"]);
                assert_eq!(Some(args), process.args().clone());
                let envs = flags.iter().filter(|f| *f == "--env").count();
                assert_eq!(envs, process.env().as_ref().map_or(0, Vec::len));
            }
            Some(text) => {
                let error = result.expect_err("refused").to_string();
                assert!(error.contains(text), "{error}");
                assert!(error.starts_with("podman cannot express"), "{error}");
            }
        }
    }

    #[test]
    fn the_reference_config_is_the_engines_defaults_plus_exact_capabilities() {
        let t = run(&reference(), EngineKind::Docker, false).expect("translates");
        assert_eq!(t.command, vec!["serve".to_owned()]);
        assert!(has(&t, "--cap-drop", "ALL"), "{t:?}");
        for cap in ["AUDIT_WRITE", "KILL", "NET_BIND_SERVICE"] {
            assert!(has(&t, "--cap-add", cap), "{cap}: {t:?}");
        }
        assert!(has(&t, "--security-opt", "no-new-privileges=true"), "{t:?}");
        assert!(has(&t, "--hostname", "c"), "{t:?}");
        assert!(has(&t, "--ipc", "shareable"), "{t:?}");
        assert!(has(&t, "--cgroupns", "private"), "{t:?}");
        assert!(
            !t.flags
                .iter()
                .any(|f| f == "--network" || f == "--uts" || f == "--pid"),
            "{t:?}"
        );
    }

    #[rstest]
    #[case::no_pid_namespace(reference().without_namespace(Pid), "--pid", "host")]
    #[case::no_uts_namespace(reference().without_namespace(Uts), "--uts", "host")]
    #[case::no_network_namespace(reference().without_namespace(Network), "--network", "host")]
    #[case::host_ipc(reference().join_namespace(Ipc, Path::new("/proc/1/ns/ipc")), "--ipc", "host")]
    #[case::other_ipc(reference().join_namespace(Ipc, Path::new("/proc/10/ns/ipc")), "--ipc", "container:first")]
    #[case::cap_add(reference().grant(&[Capability::SysAdmin]), "--cap-add", "SYS_ADMIN")]
    #[case::no_nnp(reference().edit(|s| { if let Some(p) = s.process_mut() { p.set_no_new_privileges(Some(false)); } }), "--security-opt", "no-new-privileges=false")]
    #[case::pids(reference().pids_limit(8), "--pids-limit", "8")]
    #[case::quota(reference().cpu_quota(30_000, 100_000), "--cpu-quota", "30000")]
    fn unsafe_configs_become_the_engines_unsafe_flags(
        #[case] spec: ContainerSpec,
        #[case] flag: &str,
        #[case] value: &str,
    ) {
        let t = run(&spec, EngineKind::Docker, false).expect("translates");
        assert!(has(&t, flag, value), "{flag} {value} missing: {t:?}");
    }

    #[rstest]
    #[case::time(reference().add_namespace(Time), "a time namespace")]
    #[case::uts_of_another(reference().join_namespace(Uts, Path::new("/proc/10/ns/uts")).edit(|s| { s.set_hostname(None); }), "joining another container's uts")]
    #[case::netns_of_a_lab(reference().join_namespace(Network, Path::new("/run/netns/x")), "joining the net namespace /run/netns/x")]
    #[case::cgroups_path(reference().cgroups_path("/a/b"), "a cgroup path")]
    #[case::one_unmasked(reference().edit(|s| { if let Some(l) = s.linux_mut() { l.set_masked_paths(Some(vec!["/proc/kcore".into()])); } }), "masked paths")]
    fn what_docker_cannot_say_is_refused(#[case] spec: ContainerSpec, #[case] what: &str) {
        let err = run(&spec, EngineKind::Docker, false).expect_err("refused");
        assert!(err.to_string().contains(what), "{err}");
        assert!(
            err.to_string().starts_with("docker cannot express "),
            "{err}"
        );
    }

    #[test]
    fn podman_masks_and_unmasks_single_paths() {
        let spec = reference().edit(|s| {
            if let Some(l) = s.linux_mut() {
                let kept = l
                    .masked_paths()
                    .iter()
                    .flatten()
                    .filter(|p| p.as_str() != "/proc/timer_list")
                    .cloned()
                    .collect();
                l.set_masked_paths(Some(kept));
            }
        });
        let t = run(&spec, EngineKind::Podman, false).expect("translates");
        assert!(
            has(&t, "--security-opt", "unmask=/proc/timer_list"),
            "{t:?}"
        );
    }

    #[rstest]
    #[case::uts(reference().without_namespace(Uts))]
    #[case::ipc(reference().without_namespace(Ipc))]
    #[case::net(reference().without_namespace(Network))]
    fn an_operators_engine_never_shares_the_real_machine(#[case] spec: ContainerSpec) {
        let err = run(&spec, EngineKind::Docker, true).expect_err("refused");
        assert!(err.to_string().contains("operator's engine"), "{err}");
    }

    #[test]
    fn mounts_devices_and_rules_are_exact() {
        let bind = oci_spec::runtime::MountBuilder::default()
            .destination("/tmp/run")
            .typ("bind")
            .source("/tmp/run")
            .options(vec!["rbind".to_owned(), "ro".to_owned()])
            .build()
            .expect("mount");
        let file = oci_spec::runtime::MountBuilder::default()
            .destination("/etc/os-release")
            .typ("bind")
            .source("/etc/os-release")
            .options(vec!["bind".to_owned(), "ro".to_owned()])
            .build()
            .expect("mount");
        let spec = reference().mount(bind).mount(file).edit(|s| {
            let device = oci_spec::runtime::LinuxDeviceBuilder::default()
                .path("/dev/extra")
                .typ(oci_spec::runtime::LinuxDeviceType::C)
                .major(1)
                .minor(7)
                .build()
                .expect("device");
            if let Some(l) = s.linux_mut() {
                l.set_devices(Some(vec![device]));
            }
        });
        let t = run(&spec, EngineKind::Docker, false).expect("translates");
        assert!(
            has(
                &t,
                "--mount",
                "type=bind,source=/tmp/run,destination=/tmp/run,readonly=true"
            ),
            "{t:?}"
        );
        assert!(
            has(
                &t,
                "--mount",
                "type=bind,source=/etc/os-release,destination=/etc/os-release,readonly=true,bind-nonrecursive=true"
            ),
            "{t:?}"
        );
        assert!(has(&t, "--device", "/dev/full:/dev/extra:rwm"), "{t:?}");
    }

    #[test]
    fn sizes_are_bytes() {
        assert_eq!(bytes("64k"), Some(65536));
        assert_eq!(bytes("2m"), Some(2 << 20));
        assert_eq!(bytes("12"), Some(12));
        assert_eq!(bytes("x"), None);
    }
}
