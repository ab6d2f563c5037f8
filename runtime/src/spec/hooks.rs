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
    let env = hook.env().clone().unwrap_or_default();
    for (j, entry) in env.iter().enumerate() {
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
