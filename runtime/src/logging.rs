//! Error reporting: one line on stderr, and a copy in the `--log` file if one was given.

use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::cli::LogFormat;

/// Prints `palisade-runtime: error: <msg>` on stderr and appends it to the log file.
pub fn error(log: Option<&Path>, format: LogFormat, msg: &str) {
    write(log, format, "error", msg);
}

/// Prints `palisade-runtime: warning: <msg>` on stderr and appends it to the log file: for
/// failures that do not fail the operation (poststart and poststop hooks).
pub fn warn(log: Option<&Path>, format: LogFormat, msg: &str) {
    write(log, format, "warning", msg);
}

fn write(log: Option<&Path>, format: LogFormat, level: &str, msg: &str) {
    eprintln!("palisade-runtime: {level}: {msg}");
    let Some(path) = log else { return };
    let line = match format {
        LogFormat::Text => format!("{} {level}: {msg}\n", rfc3339_now()),
        LogFormat::Json => format!(
            "{}\n",
            serde_json::json!({"level": level, "msg": msg, "time": rfc3339_now()})
        ),
    };
    // A broken log file must not hide the error already printed on stderr.
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// Current UTC time as RFC 3339, without pulling in a date crate.
pub fn rfc3339_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_nanos()
    )
}
