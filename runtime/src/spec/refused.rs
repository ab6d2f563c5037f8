//! Fields this runtime does not apply, refused with an error that names them (never dropped).

use oci_spec::runtime::{Linux, Process, Spec};

use super::SpecError;

fn unsupported(field: impl Into<String>, why: &str) -> SpecError {
    SpecError::Unsupported(format!("{} ({why})", field.into()))
}

/// Sections for other platforms, and the top-level id maps oci-spec accepts but the runtime spec
/// never had.
pub(super) fn other_platforms(spec: &Spec) -> Result<(), SpecError> {
    let sections = [
        ("solaris", spec.solaris().is_some()),
        ("windows", spec.windows().is_some()),
        ("vm", spec.vm().is_some()),
        ("zos", spec.zos().is_some()),
    ];
    if let Some((name, _)) = sections.iter().find(|(_, set)| *set) {
        return Err(unsupported(*name, "a section for another platform"));
    }
    let top_level_maps = [
        ("uidMappings", spec.uid_mappings().is_some()),
        ("gidMappings", spec.gid_mappings().is_some()),
    ];
    if let Some((name, _)) = top_level_maps.iter().find(|(_, set)| *set) {
        return Err(unsupported(
            *name,
            "not a top-level field of the runtime spec; see linux.uidMappings",
        ));
    }
    Ok(())
}

/// Process fields for other platforms, and the terminal (no --console-socket here).
pub(super) fn process(process: &Process) -> Result<(), SpecError> {
    if process.terminal() == Some(true) {
        return Err(unsupported(
            "process.terminal",
            "no --console-socket: run without a terminal",
        ));
    }
    if process.command_line().is_some() {
        return Err(unsupported("process.commandLine", "a Windows field"));
    }
    if process.user().username().is_some() {
        return Err(unsupported("process.user.username", "a Windows field"));
    }
    Ok(())
}

/// Linux features this runtime does not implement.
pub(super) fn linux(linux: &Linux) -> Result<(), SpecError> {
    let fields = [
        ("linux.intelRdt", linux.intel_rdt().is_some()),
        ("linux.memoryPolicy", linux.memory_policy().is_some()),
        ("linux.netDevices", linux.net_devices().is_some()),
    ];
    if let Some((name, _)) = fields.iter().find(|(_, set)| *set) {
        return Err(unsupported(*name, "not implemented"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::{Value, json};

    use super::*;

    fn spec(value: Value) -> Spec {
        let mut value = value;
        value["ociVersion"] = json!("1.0.2");
        serde_json::from_value(value).expect("a valid config")
    }

    #[rstest]
    #[case::solaris(json!({"solaris": {}}), "solaris (a section for another platform)")]
    #[case::windows(json!({"windows": {"layerFolders": []}}), "windows (a section for another platform)")]
    #[case::vm(json!({"vm": {"kernel": {"path": "/k"}}}), "vm (a section for another platform)")]
    #[case::zos(json!({"zos": {}}), "zos (a section for another platform)")]
    #[case::top_level_uid_mappings(json!({"uidMappings": []}), "uidMappings (not a top-level field")]
    fn other_platforms_are_refused(#[case] config: Value, #[case] error: &str) {
        let text = other_platforms(&spec(config))
            .expect_err("refused")
            .to_string();
        assert!(text.starts_with(error), "{text}");
        assert!(other_platforms(&spec(json!({}))).is_ok());
    }

    #[rstest]
    #[case::intel_rdt(json!({"intelRdt": {"closID": "x"}}), "linux.intelRdt")]
    #[case::memory_policy(json!({"memoryPolicy": {"mode": "MPOL_BIND", "nodes": "0"}}), "linux.memoryPolicy")]
    #[case::net_devices(json!({"netDevices": {"eth1": {}}}), "linux.netDevices")]
    fn unimplemented_linux_features_are_refused(#[case] l: Value, #[case] field: &str) {
        let l: Linux = serde_json::from_value(l).expect("linux");
        assert_eq!(
            linux(&l).expect_err("refused").to_string(),
            format!("{field} (not implemented) is not supported by palisade-runtime")
        );
    }
}
