//! What a server reports about itself: INFO fields, memory, commandstats.

use redis::Connection;

/// One INFO field as text ("" when absent).
pub fn info_value(c: &mut Connection, section: &str, field: &str) -> String {
    let info: String = redis::cmd("INFO").arg(section).query(c).unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

pub fn used_memory(c: &mut Connection) -> i64 {
    let value = info_value(c, "memory", "used_memory");
    // A missing reading must fail, not read as an empty server.
    value
        .parse()
        .unwrap_or_else(|_| panic!("INFO memory gave no used_memory (read {value:?})"))
}

/// Microseconds per call of a command since the last CONFIG RESETSTAT, from
/// the exact totals (`command_usec`); NaN when it has not run.
pub fn usec_per_call(c: &mut Connection, cmd: &str) -> f64 {
    command_usec(c, cmd).map_or(f64::NAN, |(calls, usec)| usec as f64 / calls as f64)
}

/// `(calls, usec)` of a command from INFO commandstats: exact totals, where
/// `usec_per_call` is rounded to two decimals.
pub fn command_usec(c: &mut Connection, cmd: &str) -> Option<(u64, u64)> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(c)
        .unwrap_or_default();
    let line = info
        .lines()
        .find(|l| l.starts_with(&format!("cmdstat_{cmd}:")))?;
    let field = |name: &str| {
        line.split([':', ','])
            .find_map(|kv| kv.strip_prefix(name))
            .and_then(|v| v.parse().ok())
    };
    Some((field("calls=")?, field("usec=")?))
}
