//! Where and when a result was measured: the host machine and the time, in UTC.

use serde::{Deserialize, Serialize};

/// The machine a result was measured on, besides its adapter.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HostInfo {
    pub cpu: String,
    pub cores: usize,
    pub os: String,
    pub memory_gib: f64,
}

impl HostInfo {
    /// This machine, from /proc and /etc/os-release where they exist.
    pub fn this() -> HostInfo {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| std::env::consts::ARCH.to_string(), |(_, v)| v.trim().to_string());
        let os_release = read("/etc/os-release");
        let pretty =
            os_release.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).map(|v| v.trim_matches('"').to_string());
        let os = pretty.unwrap_or_else(|| std::env::consts::OS.to_string());
        let memory_gib = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / (1024.0 * 1024.0));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        HostInfo { cpu, cores, os: format!("{os} ({})", std::env::consts::ARCH), memory_gib }
    }
}

/// Now, UTC, in RFC 3339: `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339_now() -> String {
    let secs = web_time::SystemTime::now().duration_since(web_time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let day = utc_now(); // "YYYY-MM-DD HH:MM UTC"
    format!("{}T{}:{:02}Z", &day[..10], &day[11..16], secs.rem_euclid(60))
}

/// Now, UTC, as `YYYY-MM-DD HH:MM UTC` (no date crate: days since the epoch to the civil calendar).
pub fn utc_now() -> String {
    let secs = web_time::SystemTime::now().duration_since(web_time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_is_plausible() {
        let d = utc_now();
        assert!(d.starts_with("20") && d.len() == "2026-11-26 23:59 UTC".len(), "{d}");
        let r = rfc3339_now();
        assert!(r.len() == "2026-11-26T23:59:07Z".len() && r.as_bytes()[10] == b'T' && r.ends_with('Z'), "{r}");
    }
}
