//! Assembles the guest's initramfs from the host: Palisade's static binaries, the runtimes under
//! test with their shared libraries (as `ldd` resolves them), the kernel modules the scenarios need
//! (with their dependencies, from the guest kernel's `modules.dep`) and the init's instructions.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::cpio::CpioWriter;
use super::protocol::{CONFIG_PATH, GuestConfig};

/// Modules the scenarios may need (networking, overlay, nftables). Names, not files: each is
/// resolved in the guest kernel's `modules.dep`; a built-in or absent one is simply not loaded.
pub const WANTED_MODULES: &[&str] = &[
    // First: nf_tables needs a crc32c, and the accelerated one fails (ENODEV) on CPUs without
    // SSE4.2, such as QEMU's TCG model.
    "crc32c_generic",
    "overlay",
    "veth",
    "bridge",
    "br_netfilter",
    "dummy",
    "tun",
    "nf_tables",
    "nf_nat",
    "nf_conntrack",
    "nft_chain_nat",
    "nft_masq",
    "nft_ct",
    "nft_fib_inet",
    "nft_reject_inet",
    "sch_netem",
    // /dev/loop-control (c 10:237): the device that devices::unlisted_device_cannot_be_opened
    // tries to open.
    "loop",
];

#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`ldd {}` failed: {message}", path.display())]
    Ldd { path: PathBuf, message: String },
}

/// What goes into the guest.
pub struct InitramfsSpec {
    /// The static `palisade` binary, which is also the probe and the bundled runtime.
    pub palisade: PathBuf,
    /// Dynamically linked programs to include (runc, crun...), placed in `/usr/bin`.
    pub programs: Vec<PathBuf>,
    /// `/lib/modules/<release>` of the guest kernel, if the host has it.
    pub modules_dir: Option<PathBuf>,
    pub config: GuestConfig,
    /// A scratch directory for stripped copies.
    pub staging: PathBuf,
}

/// What was put in, for the run's summary.
#[derive(Debug, Default)]
pub struct Built {
    pub bytes: u64,
    pub modules: Vec<String>,
    /// Wanted modules that are neither a file nor built in.
    pub modules_missing: Vec<String>,
    pub libraries: Vec<PathBuf>,
}

struct Archive {
    cpio: CpioWriter<BufWriter<File>>,
    dirs: BTreeSet<String>,
}

impl Archive {
    fn dir_all(&mut self, path: &str) -> std::io::Result<()> {
        let mut so_far = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            so_far.push('/');
            so_far.push_str(part);
            if self.dirs.insert(so_far.clone()) {
                self.cpio.dir(&so_far, 0o755)?;
            }
        }
        Ok(())
    }

    fn parent_of(&mut self, path: &str) -> std::io::Result<()> {
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir_all(parent)?;
        }
        Ok(())
    }

    fn copy(&mut self, host: &Path, guest: &str) -> Result<(), InitramfsError> {
        let io = |what, source| InitramfsError::Io {
            what,
            path: host.to_owned(),
            source,
        };
        let mut file = File::open(host).map_err(|e| io("opening", e))?;
        let meta = file.metadata().map_err(|e| io("reading", e))?;
        self.parent_of(guest).map_err(|e| io("archiving", e))?;
        self.cpio
            .file(guest, meta.permissions().mode(), &mut file, meta.len())
            .map_err(|e| io("archiving", e))
    }

    fn bytes(&mut self, guest: &str, mode: u32, data: &[u8]) -> std::io::Result<()> {
        self.parent_of(guest)?;
        self.cpio
            .file(guest, mode, &mut &data[..], data.len() as u64)
    }
}

/// Writes the initramfs (an uncompressed newc cpio: the guest kernel unpacks it without spending
/// emulated CPU time on decompression) to `out`.
pub fn build(spec: &InitramfsSpec, out: &Path) -> Result<Built, InitramfsError> {
    let io_err = |what, source| InitramfsError::Io {
        what,
        path: out.to_owned(),
        source,
    };
    let file = File::create(out).map_err(|e| io_err("creating", e))?;
    let mut archive = Archive {
        cpio: CpioWriter::new(BufWriter::with_capacity(1 << 20, file)),
        dirs: BTreeSet::new(),
    };
    let mut built = Built::default();

    for dir in [
        "/proc",
        "/sys",
        "/dev",
        "/tmp",
        "/run",
        "/root",
        "/etc",
        "/sbin",
        "/usr/sbin",
        "/newroot",
    ] {
        archive.dir_all(dir).map_err(|e| io_err("writing", e))?;
    }
    let binary = stripped(&spec.palisade, &spec.staging);
    archive.copy(&binary, "/bin/palisade")?;
    // The kernel runs /init; it is `palisade` itself, which becomes `palisade vm-init`.
    archive
        .cpio
        .symlink("/init", "bin/palisade")
        .map_err(|e| io_err("writing", e))?;

    let mut libraries = BTreeSet::new();
    for program in &spec.programs {
        let name = program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        archive.copy(program, &format!("/usr/bin/{name}"))?;
        libraries.extend(shared_libraries(program)?);
    }
    for library in &libraries {
        archive.copy(library, &library.to_string_lossy())?;
    }
    built.libraries = libraries.into_iter().collect();

    let mut config = spec.config.clone();
    if let Some(dir) = &spec.modules_dir {
        let (files, missing) = resolve_modules(dir, WANTED_MODULES)?;
        let release = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for relative in &files {
            let guest = format!("/lib/modules/{release}/{relative}");
            archive.copy(&dir.join(relative), &guest)?;
            config.modules.push(guest);
        }
        built.modules = files;
        built.modules_missing = missing;
    } else {
        built.modules_missing = WANTED_MODULES.iter().map(|m| (*m).to_owned()).collect();
    }

    let etc: &[(&str, &str)] = &[
        ("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        ("/etc/group", "root:x:0:\n"),
        ("/etc/hostname", "palisade-vm\n"),
    ];
    for (path, text) in etc {
        archive
            .bytes(path, 0o644, text.as_bytes())
            .map_err(|e| io_err("writing", e))?;
    }
    // The guest's programs (runc, crun, ip, nft and their libraries) are the host distribution's:
    // its os-release names the distribution in the guest's report.
    if let Ok(text) = fs::read("/etc/os-release").or_else(|_| fs::read("/usr/lib/os-release")) {
        archive
            .bytes("/etc/os-release", 0o644, &text)
            .map_err(|e| io_err("writing", e))?;
    }
    let json = serde_json::to_vec_pretty(&config).unwrap_or_default();
    archive
        .bytes(CONFIG_PATH, 0o644, &json)
        .map_err(|e| io_err("writing", e))?;

    let mut writer = archive.cpio.finish().map_err(|e| io_err("writing", e))?;
    writer.flush().map_err(|e| io_err("writing", e))?;
    built.bytes = fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    Ok(built)
}

/// A copy of `binary` without debug info (a debug build is mostly DWARF: the guest unpacks every
/// byte with an emulated CPU), or `binary` itself when `objcopy` is not there.
fn stripped(binary: &Path, staging: &Path) -> PathBuf {
    let Some(name) = binary.file_name() else {
        return binary.to_owned();
    };
    let out = staging.join(name);
    let done = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(binary)
        .arg(&out)
        .status()
        .is_ok_and(|s| s.success());
    if done { out } else { binary.to_owned() }
}

/// The shared libraries (and the dynamic loader) `program` needs, as `ldd` resolves them; none for
/// a static binary.
pub fn shared_libraries(program: &Path) -> Result<Vec<PathBuf>, InitramfsError> {
    let out = Command::new("ldd")
        .arg(program)
        .output()
        .map_err(|e| InitramfsError::Ldd {
            path: program.to_owned(),
            message: e.to_string(),
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // ldd exits 1 for a static binary ("not a dynamic executable"): nothing to add.
        let stderr = String::from_utf8_lossy(&out.stderr);
        if text.contains("not a dynamic") || stderr.contains("not a dynamic") {
            return Ok(Vec::new());
        }
        return Err(InitramfsError::Ldd {
            path: program.to_owned(),
            message: stderr.trim().to_owned(),
        });
    }
    Ok(parse_ldd(&text))
}

fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// Module name as the kernel sees it: file name without `.ko[.xz|.zst|.gz]`, `-` as `_`.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// Resolves `wanted` in `<dir>/modules.dep` to files (relative to `dir`), every dependency before
/// the modules that need it. Returns the files and the names found neither there nor built in.
pub fn resolve_modules(
    dir: &Path,
    wanted: &[&str],
) -> Result<(Vec<String>, Vec<String>), InitramfsError> {
    let dep_path = dir.join("modules.dep");
    let text = fs::read_to_string(&dep_path).map_err(|source| InitramfsError::Io {
        what: "reading",
        path: dep_path,
        source,
    })?;
    let builtin: BTreeSet<String> = fs::read_to_string(dir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .map(module_name)
        .collect();
    let softdep = fs::read_to_string(dir.join("modules.softdep")).unwrap_or_default();
    let alias = fs::read_to_string(dir.join("modules.alias")).unwrap_or_default();
    Ok(resolve_in(&text, &softdep, &alias, &builtin, wanted))
}

/// Resolves modules with their hard dependencies (`modules.dep`) and the soft ones that must load
/// first (`modules.softdep` "pre:", e.g. libcrc32c needs the crc32c algorithm, which the kernel
/// would otherwise request through a modprobe the guest does not have).
fn resolve_in(
    modules_dep: &str,
    softdep: &str,
    alias: &str,
    builtin: &BTreeSet<String>,
    wanted: &[&str],
) -> (Vec<String>, Vec<String>) {
    let mut deps: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for line in modules_dep.lines() {
        let Some((file, needs)) = line.split_once(':') else {
            continue;
        };
        let needs = needs.split_whitespace().map(str::to_owned).collect();
        deps.insert(module_name(file), (file.to_owned(), needs));
    }
    let aliases: BTreeMap<&str, &str> = alias
        .lines()
        .rev() // the first alias line wins
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            (f.next()? == "alias").then_some(())?;
            Some((f.next()?, f.next()?))
        })
        .collect();
    for line in softdep.lines() {
        let mut fields = line.split_whitespace();
        if fields.next() != Some("softdep") {
            continue;
        }
        let Some(module) = fields.next().map(module_name) else {
            continue;
        };
        let mut pre = Vec::new();
        let mut in_pre = false;
        for field in fields {
            match field {
                "pre:" => in_pre = true,
                "post:" => in_pre = false,
                name if in_pre => {
                    let name = name.replace('-', "_");
                    let target = if deps.contains_key(&name) {
                        Some(name)
                    } else {
                        aliases.get(name.as_str()).map(|m| module_name(m))
                    };
                    if let Some(target) = target.filter(|t| deps.contains_key(t)) {
                        pre.push(deps[&target].0.clone());
                    }
                }
                _ => {}
            }
        }
        if let Some((_, needs)) = deps.get_mut(&module) {
            // Soft dependencies load before the hard ones, like modprobe does.
            pre.append(needs);
            *needs = pre;
        }
    }
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    let mut missing = Vec::new();
    fn visit(
        name: &str,
        deps: &BTreeMap<String, (String, Vec<String>)>,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) {
        if !seen.insert(name.to_owned()) {
            return;
        }
        if let Some((file, needs)) = deps.get(name) {
            for need in needs {
                visit(&module_name(need), deps, seen, order);
            }
            order.push(file.clone());
        }
    }
    for name in wanted {
        let name = name.replace('-', "_");
        if deps.contains_key(&name) {
            visit(&name, &deps, &mut seen, &mut order);
        } else if !builtin.contains(&name) {
            missing.push(name);
        }
    }
    (order, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_come_first_and_builtins_are_not_missing() {
        let dep = "kernel/net/nft_masq.ko.xz: kernel/net/nf_nat.ko.xz kernel/net/nf_tables.ko.xz\n\
                   kernel/net/nf_nat.ko.xz: kernel/net/nf_conntrack.ko.xz\n\
                   kernel/net/nf_conntrack.ko.xz:\n\
                   kernel/net/nf_tables.ko.xz:\n";
        let builtin: BTreeSet<String> = ["overlay".to_owned()].into();
        let (order, missing) = resolve_in(
            dep,
            "",
            "",
            &builtin,
            &["nft_masq", "nf_nat", "overlay", "nope"],
        );
        assert_eq!(
            order,
            [
                "kernel/net/nf_conntrack.ko.xz",
                "kernel/net/nf_nat.ko.xz",
                "kernel/net/nf_tables.ko.xz",
                "kernel/net/nft_masq.ko.xz",
            ]
        );
        assert_eq!(missing, ["nope"]);
    }

    #[test]
    fn soft_dependencies_load_first_through_their_alias() {
        let dep = "kernel/lib/libcrc32c.ko:\nkernel/crypto/crc32c_generic.ko:\n";
        let softdep = "softdep libcrc32c pre: crc32c\n";
        let alias = "alias crc32c crc32c_generic\n";
        let (order, _) = resolve_in(dep, softdep, alias, &BTreeSet::new(), &["libcrc32c"]);
        assert_eq!(
            order,
            ["kernel/crypto/crc32c_generic.ko", "kernel/lib/libcrc32c.ko"]
        );
    }

    #[test]
    fn ldd_output_gives_every_library_and_the_loader() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibseccomp.so.2 => /lib/x86_64-linux-gnu/libseccomp.so.2 (0x00007f)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(text),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libseccomp.so.2"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }
}
