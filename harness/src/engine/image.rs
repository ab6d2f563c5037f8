//! The probe image, built offline by the engine under test: `FROM scratch`, one layer with the
//! (static) probe, one with an `/etc/os-release` of its own, so a container that reports that
//! os-release is certainly running the image and not looking at the host.
//!
//! It is tagged `palisade-probe:<palisade version>-<run id>` and labelled with the run id, so
//! `palisade cleanup` can tell it from any other image (and from another run's).

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{Engine, EngineError, cli, engine_timeout, io_err};

pub const REPOSITORY: &str = "palisade-probe";
/// The label carrying the run id.
pub const RUN_LABEL: &str = "io.palisade.run";
/// Where the probe is in the image (and its entry point).
pub const PROBE_PATH: &str = "/palisade-probe";

/// `palisade-probe:<version>-<run id>`.
pub fn reference(run_id: &str) -> String {
    format!("{REPOSITORY}:{}-{run_id}", env!("CARGO_PKG_VERSION"))
}

/// The image's own `/etc/os-release`.
pub fn os_release() -> String {
    let version = env!("CARGO_PKG_VERSION");
    format!(
        "NAME=\"Palisade probe\"\nID=palisade-probe\nVERSION_ID={version}\n\
         PRETTY_NAME=\"Palisade probe {version}\"\n"
    )
}

/// The Dockerfile: each COPY is a layer.
pub fn dockerfile(run_id: &str) -> String {
    format!(
        "FROM scratch\n\
         COPY palisade-probe {PROBE_PATH}\n\
         COPY os-release /etc/os-release\n\
         LABEL {RUN_LABEL}=\"{run_id}\"\n\
         ENTRYPOINT [\"{PROBE_PATH}\"]\n"
    )
}

/// A built image.
#[derive(Debug, Clone)]
pub struct ProbeImage {
    pub reference: String,
    pub layers: usize,
    pub built_in: Duration,
}

/// Writes the build context into `context` (the probe hard-linked when it can be).
pub fn write_context(context: &Path, probe: &Path, run_id: &str) -> Result<(), EngineError> {
    fs::create_dir_all(context).map_err(io_err(format!("creating {}", context.display())))?;
    let target = context.join("palisade-probe");
    if fs::hard_link(probe, &target).is_err() {
        fs::copy(probe, &target).map_err(io_err(format!(
            "copying the probe {} into the image context",
            probe.display()
        )))?;
    }
    fs::write(context.join("os-release"), os_release()).map_err(io_err("writing os-release"))?;
    fs::write(context.join("Dockerfile"), dockerfile(run_id))
        .map_err(io_err("writing the Dockerfile"))
}

/// Builds the probe image with `engine` (`docker build` / `podman build`) from a context in
/// `context`, and checks it has its two layers.
pub fn build(
    engine: &dyn Engine,
    context: &Path,
    probe: &Path,
    run_id: &str,
) -> Result<ProbeImage, EngineError> {
    write_context(context, probe, run_id)?;
    let reference = reference(run_id);
    let dockerfile = context.join("Dockerfile");
    let (dockerfile, context_text) = (
        dockerfile.to_string_lossy().into_owned(),
        context.to_string_lossy().into_owned(),
    );
    let started = Instant::now();
    cli(
        engine,
        &[
            "build",
            "--tag",
            &reference,
            "--file",
            &dockerfile,
            &context_text,
        ],
        engine_timeout(),
    )?;
    let built_in = started.elapsed();
    let layers = layer_count(engine, &reference)?;
    if layers < 2 {
        return Err(EngineError::Command {
            command: format!("{} build", engine.name()),
            status: "built".into(),
            stderr: format!("{reference} has {layers} layer(s), not the probe's and os-release's"),
        });
    }
    Ok(ProbeImage {
        reference,
        layers,
        built_in,
    })
}

/// The number of filesystem layers of `reference`.
pub fn layer_count(engine: &dyn Engine, reference: &str) -> Result<usize, EngineError> {
    let done = cli(
        engine,
        &[
            "image",
            "inspect",
            "--format",
            "{{len .RootFS.Layers}}",
            reference,
        ],
        engine_timeout(),
    )?;
    done.stdout
        .trim()
        .parse()
        .map_err(|e| EngineError::Command {
            command: format!("{} image inspect {reference}", engine.name()),
            status: "succeeded".into(),
            stderr: format!("layer count {:?}: {e}", done.stdout.trim()),
        })
}

/// Removes the image.
pub fn remove(engine: &dyn Engine, reference: &str) -> Result<(), EngineError> {
    cli(
        engine,
        &["image", "rm", "--force", reference],
        engine_timeout(),
    )
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_is_named_and_labelled_for_its_run() {
        assert_eq!(
            reference("0a1b2c"),
            format!("palisade-probe:{}-0a1b2c", env!("CARGO_PKG_VERSION"))
        );
        let file = dockerfile("0a1b2c");
        assert!(file.starts_with("FROM scratch\n"), "{file}");
        assert_eq!(file.matches("\nCOPY ").count(), 2, "{file}");
        assert!(file.contains("LABEL io.palisade.run=\"0a1b2c\""), "{file}");
    }

    #[test]
    fn the_context_holds_the_probe_and_its_os_release() {
        let dir = tempfile::tempdir().expect("tempdir");
        let probe = dir.path().join("probe");
        fs::write(&probe, b"\x7fELF").expect("probe");
        let context = dir.path().join("context");
        write_context(&context, &probe, "0a1b2c").expect("context");
        for file in ["palisade-probe", "os-release", "Dockerfile"] {
            assert!(context.join(file).is_file(), "{file}");
        }
        assert_eq!(
            fs::read_to_string(context.join("os-release")).expect("os-release"),
            os_release()
        );
    }
}
