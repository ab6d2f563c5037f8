//! Image layers (engines only): a container's `/` is an overlay of its image's read-only layers
//! and a writable layer of its own, so what one container writes or deletes never reaches the
//! image or another container of it.
//!
//! The engine says where the layers are (`inspect`: GraphDriver); that is checked against what
//! the probe does inside and what the host then finds in those directories, never trusted alone.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use palisade_harness::engine::driver::{EngineDriver, Layers};
use palisade_harness::run::control::{Control, Edit};
use palisade_harness::run::scenario::Schedule;
use palisade_harness::{
    Container, Ctx, Failure, Outcome, Reply, Request, Requirement, Scenario, check, require,
};
use palisade_probe::protocol::FileRead;

const NEEDS: &[Requirement] = &[Requirement::Privileged, Requirement::Engine];

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        area: "image",
        name: "writes_stay_in_the_container",
        checks: "A file one container writes under /etc is absent from a second container of the same image (running at the same time), and from every layer of the image.",
        control: Control::config(Edit::SharedVolume("/etc")),
        means: "Containers of one image see each other's files, or a container's writes change the image for every container after it.",
        requires: NEEDS,
        schedule: Schedule::Parallel,
        run: writes_stay_in_the_container,
    },
    Scenario {
        area: "image",
        name: "deletion_is_a_whiteout",
        checks: "A file of the image (/etc/os-release) deleted in one container is gone there and recorded as a whiteout (c 0:0) in that container's own upper layer; the image's layer still has it, and the next container of the image reads it unchanged.",
        control: Control::config(Edit::SharedVolume("/etc")),
        means: "Deleting a file in one container deletes it from the image, or from other containers.",
        requires: NEEDS,
        schedule: Schedule::Parallel,
        run: deletion_is_a_whiteout,
    },
    Scenario {
        area: "image",
        name: "layers_are_read_only",
        checks: "The container's `/` is an overlay whose lower layers are the image's (its mount options, read from the host, against the engine's report) and whose upper layer is its own; a file written inside lands there, and no image layer changes (every file's size and contents, before and after).",
        control: Control::config(Edit::BindImageLayer("/etc")),
        means: "A container can change the image every other container starts from.",
        requires: NEEDS,
        schedule: Schedule::Parallel,
        run: layers_are_read_only,
    },
];

/// A fresh name for a file the scenario writes.
fn token(cx: &Ctx, what: &str) -> Result<String, Failure> {
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map_err(|e| Failure::Broken(format!("reading a random token: {e}")))?;
    Ok(format!(
        "palisade-{what}-{}-{}",
        cx.run.id,
        uuid.trim().replace('-', "")
    ))
}

fn wrote(container: &mut Container, path: &str, contents: &str) -> Outcome {
    let reply = container.ask(&Request::WriteFile {
        path: path.into(),
        contents: contents.into(),
    })?;
    require!(
        matches!(&reply, Reply::Syscall(o) if o.succeeded()),
        "expected the container to write {path} (it runs as root in its own layer), saw {reply:?}"
    );
    Ok(())
}

fn read(container: &mut Container, path: &str) -> Result<FileRead, Failure> {
    match container.ask(&Request::ReadFiles {
        paths: vec![path.into()],
    })? {
        Reply::Files { mut files } if files.len() == 1 => Ok(files.remove(0)),
        other => Err(Failure::Broken(format!(
            "expected the probe to read {path}, saw {other:?}"
        ))),
    }
}

/// Fails closed: a read that neither found the file nor said ENOENT is no answer.
fn absent(read: &FileRead) -> Result<bool, Failure> {
    match (&read.contents, read.errno.as_deref()) {
        (Some(_), _) => Ok(false),
        (None, Some("ENOENT")) => Ok(true),
        (None, errno) => Err(Failure::Broken(format!(
            "the probe could not tell whether {} exists: {errno:?}",
            read.path
        ))),
    }
}

fn all_layers(layers: &Layers) -> Vec<PathBuf> {
    std::iter::once(layers.upper.clone())
        .chain(layers.lower.iter().cloned())
        .collect()
}

fn engine_of(cx: &Ctx) -> Result<&EngineDriver, Failure> {
    Ok(cx.require_engine()?)
}

fn writes_stay_in_the_container(cx: &Ctx) -> Outcome {
    let engine = engine_of(cx)?;
    let name = token(cx, "write")?;
    let path = format!("/etc/{name}");
    let mut first = cx.launch(cx.spec("image-writer")?)?;
    let mut second = cx.launch(cx.spec("image-reader")?)?;
    wrote(&mut first, &path, &name)?;
    let seen = read(&mut first, &path)?;
    require!(
        seen.contents.as_deref() == Some(name.as_str()),
        "expected the writer to read back {path}, saw {seen:?}"
    );
    let other = read(&mut second, &path)?;
    check!(
        absent(&other)?,
        "expected {path}, written by another container of the image, to be absent from this one, \
         but it reads {:?}: containers of one image share what they write",
        other.contents
    );
    let image = engine.image_layers()?;
    let in_image: Vec<String> = all_layers(&image)
        .into_iter()
        .map(|layer| layer.join(path.trim_start_matches('/')))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    check!(
        in_image.is_empty(),
        "expected the image's layers to be untouched by a container's write, but {path} is in \
         {in_image:?}: the container wrote into the image"
    );
    Ok(())
}

fn deletion_is_a_whiteout(cx: &Ctx) -> Outcome {
    let engine = engine_of(cx)?;
    let path = "/etc/os-release";
    let wanted = palisade_harness::engine::image::os_release();
    let mut deleter = cx.launch(cx.spec("image-deleter")?)?;
    let before = read(&mut deleter, path)?;
    require!(
        before.contents.as_deref() == Some(wanted.as_str()),
        "expected the container to see the image's {path} before deleting it, saw {before:?}"
    );
    let removed = deleter.ask(&Request::RemoveFile { path: path.into() })?;
    require!(
        matches!(&removed, Reply::Syscall(o) if o.succeeded()),
        "expected the container (root in its own layer) to delete {path}, saw {removed:?}"
    );
    let after = read(&mut deleter, path)?;
    require!(
        absent(&after)?,
        "expected {path} to be gone in the container that deleted it, it reads {:?}",
        after.contents
    );
    let own = engine.container_layers(deleter.id())?;
    let whiteout = own.upper.join(path.trim_start_matches('/'));
    let is_whiteout = std::fs::symlink_metadata(&whiteout)
        .is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0);
    check!(
        is_whiteout,
        "expected the deletion to be a whiteout (c 0:0) at {} in the container's own upper layer; \
         there is none: the file was deleted somewhere else than the container's layer",
        whiteout.display()
    );
    let image = engine.image_layers()?;
    let kept = all_layers(&image)
        .into_iter()
        .map(|layer| layer.join(path.trim_start_matches('/')))
        .find(|p| p.is_file());
    check!(
        kept.as_deref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .as_deref()
            == Some(wanted.as_str()),
        "expected the image's layers to still hold {path} as built, found {kept:?}: deleting it in a \
         container changed the image"
    );
    let mut next = cx.launch(cx.spec("image-next")?)?;
    let seen = read(&mut next, path)?;
    check!(
        seen.contents.as_deref() == Some(wanted.as_str()),
        "expected the next container of the image to read the image's {path}, saw {seen:?}: a \
         deletion in another container reached it"
    );
    Ok(())
}

/// Every regular file of a layer, with its size and contents, by path.
fn snapshot(layer: &Path) -> Result<BTreeMap<PathBuf, (u64, Vec<u8>)>, Failure> {
    let mut files = BTreeMap::new();
    let mut stack = vec![layer.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| Failure::Broken(format!("listing {}: {e}", dir.display())))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path)
                .map_err(|e| Failure::Broken(format!("lstat {}: {e}", path.display())))?;
            if meta.is_dir() {
                stack.push(path);
            } else {
                let contents = if meta.is_file() {
                    std::fs::read(&path)
                        .map_err(|e| Failure::Broken(format!("reading {}: {e}", path.display())))?
                } else {
                    Vec::new()
                };
                let relative = path.strip_prefix(layer).unwrap_or(&path).to_path_buf();
                files.insert(relative, (meta.len(), contents));
            }
        }
    }
    Ok(files)
}

/// The overlay options of the container's `/`, from its mount table as the host reads it
/// (`/proc/<pid>/mountinfo` shows the superblock options in full).
fn root_overlay(
    pid: i32,
) -> Result<(String, std::collections::HashMap<String, Option<String>>), Failure> {
    let mounts = palisade_common::mountinfo::read(&pid.to_string()).map_err(Failure::Broken)?;
    let root = mounts
        .into_iter()
        .rev()
        .find(|m| m.mount_point == Path::new("/"))
        .ok_or_else(|| Failure::Broken(format!("/proc/{pid}/mountinfo lists no `/`")))?;
    Ok((root.fs_type, root.super_options))
}

/// An overlay layer path as the mount options name it (absolute, or relative to the storage
/// directory the engine mounts from, through its `l/` short links), as a real directory.
fn resolve(option: &str, storage: &Path) -> PathBuf {
    let path = Path::new(option);
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        storage.join(path)
    };
    std::fs::canonicalize(&path).unwrap_or(path)
}

fn layers_are_read_only(cx: &Ctx) -> Outcome {
    let engine = engine_of(cx)?;
    let image = engine.image_layers()?;
    let image_dirs: Vec<PathBuf> = all_layers(&image)
        .iter()
        .map(|l| std::fs::canonicalize(l).unwrap_or_else(|_| l.clone()))
        .collect();
    let before: Vec<_> = image_dirs
        .iter()
        .map(|l| snapshot(l))
        .collect::<Result<_, _>>()?;
    let name = token(cx, "layer")?;
    let path = format!("/etc/{name}");
    // Whatever the control lets the container write into an image layer is taken out again.
    let _tidy = Tidy(
        image_dirs
            .iter()
            .map(|l| l.join(path.trim_start_matches('/')))
            .collect(),
    );

    let mut container = cx.launch(cx.spec("image-layers")?)?;
    let pid = container.host_pid()?;
    let own = engine.container_layers(container.id())?;
    let (fs_type, options) = root_overlay(pid)?;
    check!(
        fs_type == "overlay",
        "expected the container's `/` to be an overlay of its image, /proc/{pid}/mountinfo says {fs_type}"
    );
    let option = |key: &str| options.get(key).cloned().flatten().unwrap_or_default();
    // The engine mounts from its storage directory, which relative layer names start from.
    let storage = own
        .upper
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("/"))
        .to_path_buf();
    let upper = resolve(&option("upperdir"), &storage);
    let lower: Vec<PathBuf> = option("lowerdir")
        .split(':')
        .filter(|l| !l.is_empty())
        .map(|l| resolve(l, &storage))
        .collect();
    let reported_upper = std::fs::canonicalize(&own.upper).unwrap_or(own.upper.clone());
    check!(
        upper == reported_upper,
        "expected the overlay's upperdir to be the container's layer the engine reports ({}), the \
         mount says {}",
        reported_upper.display(),
        upper.display()
    );
    let missing: Vec<String> = image_dirs
        .iter()
        .filter(|l| !lower.contains(l))
        .map(|l| l.display().to_string())
        .collect();
    check!(
        missing.is_empty() && !image_dirs.contains(&upper),
        "expected every image layer below the container's `/` and none as its writable layer; \
         lowerdir {lower:?}, upperdir {}, image layers not below it: {missing:?}",
        upper.display()
    );

    wrote(&mut container, &path, &name)?;
    let landed = reported_upper.join(path.trim_start_matches('/'));
    let there = std::fs::read_to_string(&landed).ok();
    check!(
        there.as_deref() == Some(name.as_str()),
        "expected the container's write to {path} to land in its own upper layer ({}), found \
         {there:?} there: the container writes somewhere else",
        landed.display()
    );
    container.close_stdin();
    container.wait_exit()?;
    let after: Vec<_> = image_dirs
        .iter()
        .map(|l| snapshot(l))
        .collect::<Result<_, _>>()?;
    for ((layer, before), after) in image_dirs.iter().zip(&before).zip(&after) {
        let changed: Vec<String> = before
            .keys()
            .chain(after.keys())
            .filter(|k| before.get(*k) != after.get(*k))
            .map(|k| k.display().to_string())
            .collect();
        check!(
            changed.is_empty(),
            "expected the image layer {} to stay as built, these changed while a container ran: \
             {changed:?}",
            layer.display()
        );
    }
    container.delete()?;
    Ok(())
}

/// Removes these files (if they exist) when dropped.
struct Tidy(Vec<PathBuf>);

impl Drop for Tidy {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}
