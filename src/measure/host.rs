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
    /// This machine, on any OS (the `sysinfo` crate): CPU brand, logical cores, OS name and version, memory.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn this() -> HostInfo {
        use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};
        let sys = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        );
        let arch = std::env::consts::ARCH;
        let cpu = sys
            .cpus()
            .first()
            .map(|c| c.brand().trim().to_string())
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| arch.to_string());
        let os = System::long_os_version().unwrap_or_else(|| std::env::consts::OS.to_string());
        let cores = std::thread::available_parallelism().map_or(sys.cpus().len().max(1), |n| n.get());
        let memory_gib = sys.total_memory() as f64 / (1u64 << 30) as f64;
        HostInfo { cpu, cores, os: format!("{os} ({arch})"), memory_gib }
    }

    /// In a browser the page cannot see the host: it says so rather than guessing.
    #[cfg(target_arch = "wasm32")]
    pub fn this() -> HostInfo {
        HostInfo { cpu: "unknown (a browser)".into(), cores: 0, os: "browser (wasm32)".into(), memory_gib: 0.0 }
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
    fn this_host_is_described() {
        let h = HostInfo::this();
        assert!(!h.cpu.is_empty() && h.cores >= 1, "{h:?}");
        assert!(h.memory_gib > 0.1, "memory not read: {h:?}");
        assert!(h.os.ends_with(&format!("({})", std::env::consts::ARCH)), "{h:?}");
    }

    #[test]
    fn date_is_plausible() {
        let d = utc_now();
        assert!(d.starts_with("20") && d.len() == "2026-11-26 23:59 UTC".len(), "{d}");
        let r = rfc3339_now();
        assert!(r.len() == "2026-11-26T23:59:07Z".len() && r.as_bytes()[10] == b'T' && r.ends_with('Z'), "{r}");
    }
}
