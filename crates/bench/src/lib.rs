//! What the load clients share: the server's CPU time from `/proc` and latency summaries.

/// utime + stime of `pid` in seconds (Linux /proc; USER_HZ is 100 on every Linux ABI).
pub fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// The `p`th percentile of sorted microsecond latencies, in milliseconds.
pub fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let k = ((sorted_us.len() - 1) as f64 * p / 100.0).round() as usize;
    f64::from(sorted_us[k]) / 1000.0
}

/// `x` to three decimals, for the JSON lines.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
