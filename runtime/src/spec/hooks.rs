//! `hooks`: every kind, validated (config.md "POSIX-platform Hooks").

use std::time::Duration;

use oci_spec::runtime::{Hook, Spec};

use super::{SpecError, invalid};
use crate::hooks::{HookKind, HookPlan, HooksPlan};

/// `hooks.<kind>[i]`: an absolute path, args and env without NUL bytes, env as `KEY=value`, and a
/// timeout above zero.
pub(super) fn hooks(spec: &Spec) -> Result<HooksPlan, SpecError> {
    let mut plan = HooksPlan::default();
    let Some(hooks) = spec.hooks() else {
        return Ok(plan);
    };
    for kind in HookKind::ALL {
        let configured = match kind {
            HookKind::Prestart => hooks.prestart(),
            HookKind::CreateRuntime => hooks.create_runtime(),
            HookKind::CreateContainer => hooks.create_container(),
            HookKind::StartContainer => hooks.start_container(),
            HookKind::Poststart => hooks.poststart(),
            HookKind::Poststop => hooks.poststop(),
        };
        for (i, hook) in configured.iter().flatten().enumerate() {
            let field = format!("hooks.{kind}[{i}]");
            plan.of_mut(kind).push(one(hook, &field)?);
        }
    }
    Ok(plan)
}

fn one(hook: &Hook, field: &str) -> Result<HookPlan, SpecError> {
    let path = hook.path().clone();
    if !path.is_absolute() {
        return Err(invalid(
            format!("{field}.path"),
            format!("{} must be absolute", path.display()),
        ));
    }
    let args = match hook.args() {
        Some(args) if !args.is_empty() => args.clone(),
        // execv needs an argv[0]; the path is what a shell would give.
        _ => vec![path.display().to_string()],
    };
    if path.as_os_str().as_encoded_bytes().contains(&0) {
        return Err(invalid(format!("{field}.path"), "contains a NUL byte"));
    }
    for (j, arg) in args.iter().enumerate() {
        if arg.contains('\0') {
            return Err(invalid(format!("{field}.args[{j}]"), "contains a NUL byte"));
        }
    }
    let env = hook.env().clone();
    for (j, entry) in env.iter().flatten().enumerate() {
        if entry.contains('\0') {
            return Err(invalid(format!("{field}.env[{j}]"), "contains a NUL byte"));
        }
        if !entry.contains('=') {
            return Err(invalid(
                format!("{field}.env[{j}]"),
                format!("{entry:?} is not KEY=value"),
            ));
        }
    }
    let timeout = match hook.timeout() {
        None => None,
        Some(secs) if secs > 0 => Some(Duration::from_secs(secs.unsigned_abs())),
        Some(secs) => {
            return Err(invalid(
                format!("{field}.timeout"),
                format!("{secs} must be greater than zero"),
            ));
        }
    };
    Ok(HookPlan {
        path,
        args,
        env,
        timeout,
    })
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::{Value, json};

    use super::*;

    fn spec_with(hooks: Value) -> Spec {
        serde_json::from_value(json!({"ociVersion": "1.0.2", "hooks": hooks})).expect("spec")
    }

    fn plan_of(path: &str, args: &[&str], env: &[&str], timeout: Option<u64>) -> HookPlan {
        HookPlan {
            path: path.into(),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            env: (!env.is_empty()).then(|| env.iter().map(|s| (*s).to_owned()).collect()),
            timeout: timeout.map(Duration::from_secs),
        }
    }

    #[test]
    fn every_kind_in_config_order() {
        let s = spec_with(json!({
            "prestart": [{"path": "/bin/a"}],
            "createRuntime": [{"path": "/bin/b", "args": ["b", "-x"], "env": ["K=V"], "timeout": 5}],
            "createContainer": [{"path": "/bin/c"}, {"path": "/bin/c2"}],
            "startContainer": [{"path": "/bin/d"}],
            "poststart": [{"path": "/bin/e"}],
            "poststop": [{"path": "/bin/f"}]
        }));
        let plan = hooks(&s).expect("valid");
        assert_eq!(plan.prestart, [plan_of("/bin/a", &["/bin/a"], &[], None)]);
        assert_eq!(
            plan.create_runtime,
            [plan_of("/bin/b", &["b", "-x"], &["K=V"], Some(5))]
        );
        assert_eq!(
            plan.create_container,
            [
                plan_of("/bin/c", &["/bin/c"], &[], None),
                plan_of("/bin/c2", &["/bin/c2"], &[], None)
            ]
        );
        assert_eq!(plan.start_container.len(), 1);
        assert_eq!(plan.poststart.len(), 1);
        assert_eq!(plan.poststop.len(), 1);
        assert!(plan.has_runtime_hooks());
        assert_eq!(
            hooks(&spec_with(json!({}))).expect("valid"),
            HooksPlan::default()
        );
    }

    #[rstest]
    #[case::relative_path(json!({"prestart": [{"path": "hook"}]}), "invalid config: hooks.prestart[0].path: hook must be absolute")]
    #[case::zero_timeout(json!({"poststop": [{"path": "/h"}, {"path": "/h", "timeout": 0}]}), "invalid config: hooks.poststop[1].timeout: 0 must be greater than zero")]
    #[case::negative_timeout(json!({"createRuntime": [{"path": "/h", "timeout": -3}]}), "invalid config: hooks.createRuntime[0].timeout: -3 must be greater than zero")]
    #[case::env_without_equals(json!({"startContainer": [{"path": "/h", "env": ["A=1", "B"]}]}), "invalid config: hooks.startContainer[0].env[1]: \"B\" is not KEY=value")]
    #[case::nul_in_arg(json!({"createContainer": [{"path": "/h", "args": ["h", "a\u{0}"]}]}), "invalid config: hooks.createContainer[0].args[1]: contains a NUL byte")]
    #[case::nul_in_env(json!({"poststart": [{"path": "/h", "env": ["A=\u{0}"]}]}), "invalid config: hooks.poststart[0].env[0]: contains a NUL byte")]
    fn bad_hooks_are_refused(#[case] hooks_json: Value, #[case] error: &str) {
        assert_eq!(
            hooks(&spec_with(hooks_json))
                .expect_err("refused")
                .to_string(),
            error
        );
    }
}
