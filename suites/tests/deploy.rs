//! The node-validation manifest (deploy/palisade-daemonset.yaml). No cluster is at hand, so it
//! is checked on paper: its structure (what node validation needs, always checked), its init
//! script (shellcheck) and its schema (kubeconform or kubeval). A check whose tool is missing is
//! counted as ignored, with the reason.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use palisade_common::testkit::{self, Skip, Test, TestResult};
use serde::Deserialize;
use serde_yaml::Value;

fn main() -> ExitCode {
    testkit::main(&[
        Test::new(
            "daemonset_has_what_node_validation_needs",
            daemonset_has_what_node_validation_needs,
        ),
        Test::new(
            "init_script_passes_shellcheck",
            init_script_passes_shellcheck,
        ),
        Test::new("manifest_matches_the_schemas", manifest_matches_the_schemas),
    ])
}

fn manifest_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/palisade-daemonset.yaml")
}

/// Every document of the manifest.
fn documents() -> Vec<Value> {
    let text = std::fs::read_to_string(manifest_path()).expect("deploy/palisade-daemonset.yaml");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("the manifest is valid YAML"))
        .filter(|doc| !doc.is_null())
        .collect()
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("the manifest has no {kind}"))
}

fn list(value: &Value) -> &[Value] {
    value.as_sequence().map(Vec::as_slice).unwrap_or_default()
}

fn named<'a>(items: &'a Value, name: &str) -> &'a Value {
    list(items)
        .iter()
        .find(|i| i["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("nothing named {name:?}"))
}

/// The palisade init container's script.
fn init_script(docs: &[Value]) -> String {
    let pod = &kind(docs, "DaemonSet")["spec"]["template"]["spec"];
    let init = named(&pod["initContainers"], "palisade");
    list(&init["args"])
        .first()
        .and_then(Value::as_str)
        .expect("the init container runs a script")
        .to_owned()
}

fn daemonset_has_what_node_validation_needs() -> TestResult {
    let docs = documents();
    let namespace = kind(&docs, "Namespace");
    assert_eq!(namespace["apiVersion"].as_str(), Some("v1"));
    let ns_name = namespace["metadata"]["name"].as_str().expect("a name");
    // Pod Security's default levels refuse a privileged pod.
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"].as_str(),
        Some("privileged")
    );

    let ds = kind(&docs, "DaemonSet");
    assert_eq!(ds["apiVersion"].as_str(), Some("apps/v1"));
    assert_eq!(ds["metadata"]["namespace"].as_str(), Some(ns_name));
    let template = &ds["spec"]["template"];
    let selector = ds["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("a selector");
    assert!(!selector.is_empty());
    for (key, value) in selector {
        assert_eq!(
            template["metadata"]["labels"].get(key),
            Some(value),
            "the selector does not match the pod's labels"
        );
    }

    let pod = &template["spec"];
    assert_eq!(
        pod["hostPID"].as_bool(),
        Some(true),
        "nsenter needs the node's pid 1"
    );
    assert_ne!(
        pod["hostNetwork"].as_bool(),
        Some(true),
        "the network scenarios make their own namespaces: the node's is not needed"
    );
    assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(false));
    assert!(
        list(&pod["tolerations"])
            .iter()
            .any(|t| t["operator"].as_str() == Some("Exists") && t.get("key").is_none()),
        "every node, tainted ones included"
    );

    // Volumes: every mount names one, and the node's paths the suite needs are there.
    let volumes: Vec<&Value> = list(&pod["volumes"]).iter().collect();
    let volume_names: BTreeSet<&str> = volumes.iter().filter_map(|v| v["name"].as_str()).collect();
    let host_path = |name: &str| -> (String, Option<String>) {
        let volume = named(&pod["volumes"], name);
        let path = volume["hostPath"]["path"]
            .as_str()
            .unwrap_or_else(|| panic!("volume {name:?} is not a hostPath"));
        (
            path.to_owned(),
            volume["hostPath"]["type"].as_str().map(str::to_owned),
        )
    };
    let containers: Vec<&Value> = list(&pod["initContainers"])
        .iter()
        .chain(list(&pod["containers"]))
        .collect();
    for container in &containers {
        let privileged = container["securityContext"]["privileged"].as_bool() == Some(true);
        for mount in list(&container["volumeMounts"]) {
            let name = mount["name"].as_str().expect("a mount names its volume");
            assert!(volume_names.contains(name), "no volume {name:?}");
            if mount["mountPropagation"].as_str() == Some("Bidirectional") {
                assert!(
                    privileged,
                    "Bidirectional propagation needs a privileged container"
                );
            }
        }
    }

    let init = named(&pod["initContainers"], "palisade");
    assert_eq!(
        init["securityContext"]["privileged"].as_bool(),
        Some(true),
        "the suite makes namespaces, cgroups and nftables rules: privileged"
    );
    let mounted = |path: &str| -> String {
        let mount = list(&init["volumeMounts"])
            .iter()
            .find(|m| m["mountPath"].as_str() == Some(path))
            .unwrap_or_else(|| panic!("nothing is mounted at {path}"));
        mount["name"].as_str().expect("a volume name").to_owned()
    };
    for (path, node_path) in [
        ("/sys/fs/cgroup", "/sys/fs/cgroup"),
        ("/tmp", "/tmp"),
        ("/run/netns", "/run/netns"),
        ("/etc/os-release", "/etc/os-release"),
    ] {
        assert_eq!(
            host_path(&mounted(path)).0,
            node_path,
            "{path} is not the node's"
        );
    }
    let netns = list(&init["volumeMounts"])
        .iter()
        .find(|m| m["mountPath"].as_str() == Some("/run/netns"))
        .expect("a /run/netns mount");
    assert_eq!(netns["mountPropagation"].as_str(), Some("Bidirectional"));

    // The runtime under test is the node's binary, mounted where PALISADE_RUNTIME points.
    let env = |name: &str| named(&init["env"], name).clone();
    let runtime = env("PALISADE_RUNTIME")["value"]
        .as_str()
        .expect("PALISADE_RUNTIME")
        .to_owned();
    let (runtime_on_node, runtime_type) = host_path(&mounted(&runtime));
    assert!(runtime_on_node.starts_with('/'));
    assert_eq!(runtime_type.as_deref(), Some("File"));
    assert_eq!(
        env("NODE_NAME")["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("spec.nodeName")
    );

    // Results: on the node, one file set per node, read through the long-lived container.
    let (results_on_node, _) = host_path(&mounted("/results"));
    assert!(results_on_node.starts_with("/var/lib/palisade"));
    let script = init_script(&docs);
    for needed in [
        "nsenter --target 1 --cgroup",
        "palisade run --report \"json=$out.json,junit=$out.xml",
        "out=\"/results/$NODE_NAME\"",
        "echo \"$?\" > \"$out.exit\"",
        "palisade cleanup",
    ] {
        assert!(
            script.contains(needed),
            "the init script lacks `{needed}`:\n{script}"
        );
    }
    // A FAIL must not restart the init container (and the suite) forever.
    assert_eq!(script.trim_end().lines().last(), Some("exit 0"));
    let keeper = named(&pod["containers"], "results");
    assert!(
        list(&keeper["volumeMounts"])
            .iter()
            .any(|m| m["mountPath"].as_str() == Some("/results")),
        "`kubectl exec`/`cp` reads the results through the results container"
    );
    assert_ne!(
        keeper["securityContext"]["privileged"].as_bool(),
        Some(true),
        "the container that only waits needs no privilege"
    );
    Ok(())
}

fn init_script_passes_shellcheck() -> TestResult {
    let shellcheck = testkit::require_program("shellcheck")
        .map_err(|Skip(reason)| Skip(format!("{reason}: the init script is not checked")))?;
    if let Err(output) = testkit::shellcheck(&shellcheck, "sh", &init_script(&documents())) {
        panic!("shellcheck:\n{output}");
    }
    Ok(())
}

fn manifest_matches_the_schemas() -> TestResult {
    if let Some(kubeconform) = palisade_common::find_program("kubeconform") {
        return kubeconform_check(&kubeconform);
    }
    if let Some(kubeval) = palisade_common::find_program("kubeval") {
        return kubeval_check(&kubeval);
    }
    if let Some(validate) = palisade_common::find_program("kubernetes-validate") {
        return kubernetes_validate_check(&validate);
    }
    Err(Skip(
        "no Kubernetes schema validator is installed (kubeconform, kubeval, or `pip install kubernetes-validate`): the manifest's structure is checked, its schema is not".to_owned(),
    ))
}

/// kubernetes-validate (PyPI) carries the API schemas in its package, so it needs no network.
fn kubernetes_validate_check(validate: &Path) -> TestResult {
    let out = Command::new(validate)
        .arg("--strict")
        .arg(manifest_path())
        .output()
        .expect("run kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kubernetes-validate:\n{text}");
    assert_eq!(
        text.matches(" passed for resource ").count(),
        documents().len(),
        "kubernetes-validate did not pass every document:\n{text}"
    );
    Ok(())
}

/// kubeconform's verdicts: `statusInvalid` fails; `statusError` (most often: the schemas could
/// not be downloaded, on a machine without the network) means no validation happened.
fn kubeconform_check(kubeconform: &Path) -> TestResult {
    let out = Command::new(kubeconform)
        .args(["-strict", "-summary", "-verbose", "-output", "json"])
        .arg(manifest_path())
        .output()
        .expect("run kubeconform");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "kubeconform printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let resources = report["resources"].as_array().cloned().unwrap_or_default();
    let with = |status: &str| -> Vec<String> {
        resources
            .iter()
            .filter(|r| r["status"] == status)
            .map(|r| format!("{} {}: {}", r["kind"], r["name"], r["msg"]))
            .collect()
    };
    let invalid = with("statusInvalid");
    assert!(invalid.is_empty(), "kubeconform: {invalid:#?}");
    let errors = with("statusError");
    if !errors.is_empty() {
        return Err(Skip(format!(
            "kubeconform could not validate: {}",
            errors.join("; ")
        )));
    }
    assert_eq!(with("statusValid").len(), documents().len(), "{report:#}");
    Ok(())
}

fn kubeval_check(kubeval: &Path) -> TestResult {
    let out = Command::new(kubeval)
        .args(["--strict", "--output", "json"])
        .arg(manifest_path())
        .output()
        .expect("run kubeval");
    let Ok(results) = serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout) else {
        // No verdicts at all: kubeval could not load its schemas (it downloads them).
        return Err(Skip(format!(
            "kubeval could not validate: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    };
    let invalid: Vec<_> = results
        .iter()
        .filter(|r| r["status"] == "invalid")
        .collect();
    assert!(invalid.is_empty(), "kubeval: {invalid:#?}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let skipped: Vec<String> = results
        .iter()
        .filter(|r| r["status"] != "valid")
        .map(|r| format!("{} ({})", r["kind"], r["status"]))
        .collect();
    if skipped.is_empty() {
        Ok(())
    } else {
        Err(Skip(format!(
            "kubeval did not validate {}",
            skipped.join(", ")
        )))
    }
}
