//! What a run ran on, described once: every command's JSON, `report.json`, bench and peak results use `DeviceInfo`.

use serde::{Deserialize, Serialize};

use crate::gpu::ops::Caps;
use crate::gpu::AdapterSummary;

/// What a run ran on: an adapter and the kernels it used, or the CPU reference.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub name: String,
    pub vendor: String,
    pub device_type: String,
    pub backend: String,
    pub driver: String,
    pub driver_info: String,
    /// The adapter's subgroup widths (`AdapterSummary::subgroups`); empty in results from before it was recorded.
    #[serde(default)]
    pub subgroups: String,
    /// Which kernels ran: "tiled", "simd" or "simd, 8-lane subgroups" (see the README's "Kernel families"); results from
    /// before the families say "subgroup (8 lanes)" or "plain".
    #[serde(default)]
    pub kernels: String,
}

impl DeviceInfo {
    /// The adapter, and the kernels the run used.
    pub fn of(a: &AdapterSummary, kernels: &Caps) -> Self {
        DeviceInfo {
            name: a.name.clone(),
            vendor: a.vendor.clone(),
            device_type: a.device_type.clone(),
            backend: a.backend.clone(),
            driver: a.driver.clone(),
            driver_info: a.driver_info.clone(),
            subgroups: a.subgroups.clone(),
            kernels: kernels.describe(),
        }
    }

    pub fn cpu_reference() -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        DeviceInfo {
            name: format!("CPU reference ({threads} threads)"),
            vendor: String::new(),
            device_type: "cpu".into(),
            backend: "cpu".into(),
            driver: "gpu-cnn reference".into(),
            driver_info: String::new(),
            subgroups: "–".into(),
            kernels: "CPU reference".into(),
        }
    }

    /// One line for people: the adapter as `gpu-cnn adapters` prints it and the kernels, or "CPU reference (N threads)".
    pub fn line(&self) -> String {
        if self.backend == "cpu" {
            return self.name.clone();
        }
        let soft = if self.device_type == "cpu" { ", a software adapter (runs on the CPU)" } else { "" };
        format!(
            "{} ({}, {}, driver {} {}, subgroups {}; {} kernels){soft}",
            self.name, self.backend, self.device_type, self.driver, self.driver_info, self.subgroups, self.kernels
        )
    }
}
