//! Every decision about which kernels run: the family a device runs (its type, `GPU_CNN_KERNELS`, `--kernels`), what
//! the device's limits and subgroups allow (`GPU_CNN_SUBGROUPS`, `GPU_CNN_FUSED_HEAD`, `GPU_CNN_LIMITS`), what each
//! family can run of a network (`for_arch`), and the fallbacks. Opening a device happens here, because what is asked
//! of it (its limits, subgroups) follows from these decisions.

use super::adapter::{backend_name, choose, enumerate, parse_backend, AdapterSelection, AdapterSummary};
use super::device::Gpu;
use super::error::GpuError;
use super::family::{Caps, Family, OpenOptions};
use super::limits;
use super::ops::{classifier_head, conv2d, dense};
use super::pipelines::Kernels;
use super::shader::WEIGHT_WINDOW_BYTES;
use crate::model::Arch;

impl OpenOptions {
    /// From the environment: `GPU_CNN_KERNELS` (`simd`, `tiled` or `auto`), `GPU_CNN_SUBGROUPS=0` (the simd family
    /// without its subgroup kernels), `GPU_CNN_FUSED_HEAD=0` (the tiled family's classifier head as four dispatches),
    /// `GPU_CNN_LIMITS=downlevel`.
    pub fn from_env() -> Result<OpenOptions, GpuError> {
        let family = match std::env::var("GPU_CNN_KERNELS") {
            Ok(v) if !v.is_empty() && v != "auto" => {
                Some(Family::parse(&v).map_err(|message| GpuError::Config { variable: "GPU_CNN_KERNELS", message })?)
            }
            _ => None,
        };
        Ok(OpenOptions {
            family,
            no_subgroups: std::env::var("GPU_CNN_SUBGROUPS").is_ok_and(|v| v == "0"),
            no_head: std::env::var("GPU_CNN_FUSED_HEAD").is_ok_and(|v| v == "0"),
            downlevel: std::env::var("GPU_CNN_LIMITS").is_ok_and(|v| v == "downlevel"),
        })
    }

    /// From the environment, then the command line's `--kernels` (which wins where given).
    pub fn with_kernels(kernels: Option<Family>) -> Result<OpenOptions, GpuError> {
        let env = OpenOptions::from_env()?;
        Ok(OpenOptions { family: kernels.or(env.family), ..env })
    }

    pub fn family(self, family: Family) -> OpenOptions {
        OpenOptions { family: Some(family), ..self }
    }
}

/// The family a device runs unless told otherwise: simd on software adapters (lavapipe and other CPU rasterizers,
/// Chrome's SwiftShader among them: 5× the tiled family's training rate there, BENCHMARKS.md), tiled on GPUs.
pub fn default_family(adapter: &AdapterSummary) -> Family {
    if adapter.is_software() {
        Family::Simd
    } else {
        Family::Tiled
    }
}

impl Gpu {
    /// Opens the selected (or best) adapter with the options from the environment (`OpenOptions::from_env`).
    pub async fn open(sel: &AdapterSelection) -> Result<Gpu, GpuError> {
        Self::open_with(sel, OpenOptions::from_env()?).await
    }

    pub async fn open_with(sel: &AdapterSelection, opts: OpenOptions) -> Result<Gpu, GpuError> {
        let (summary, adapter) = choose(sel).await?;
        Self::open_adapter(summary, adapter, opts).await
    }

    /// Opens `adapter` with the limits this engine needs: the adapter's own (so large datasets and batches fit where
    /// the adapter allows; sizes are checked against them up front), or with `opts.downlevel` the adapter's cut down to
    /// the downlevel defaults. The family's needs are checked first: a family the adapter cannot run is refused with
    /// the limit named if it was asked for, and replaced by the other family if it was the default. Subgroups are
    /// requested for the simd family where the adapter reports 8 lanes, then verified on the device.
    pub async fn open_adapter(
        summary: AdapterSummary,
        adapter: wgpu::Adapter,
        opts: OpenOptions,
    ) -> Result<Gpu, GpuError> {
        let limits = if opts.downlevel { limits::downlevel(&adapter.limits()) } else { adapter.limits() };
        let info = adapter.get_info();
        let eight_lanes = adapter.features().contains(wgpu::Features::SUBGROUP)
            && info.subgroup_min_size == 8
            && info.subgroup_max_size == 8;
        let refuse = |family: Family, need: limits::Need, have: u64, hint: &'static str| GpuError::Limit {
            family,
            limit_name: need.limit,
            needed: need.needed,
            by: need.by,
            limit: have,
            adapter: summary.line(),
            hint,
        };
        let mut family = opts.family.unwrap_or_else(|| default_family(&summary));
        let mut subgroups = family == Family::Simd && eight_lanes && !opts.no_subgroups;
        if let Some((need, have)) = limits::unmet(family, subgroups, &limits) {
            if opts.family.is_some() || family == Family::Tiled {
                let hint =
                    if family == Family::Simd { "; the tiled kernels (GPU_CNN_KERNELS=tiled) need less" } else { "" };
                return Err(refuse(family, need, have, hint));
            }
            family = Family::Tiled;
            subgroups = false;
            if let Some((need, have)) = limits::unmet(family, false, &limits) {
                return Err(refuse(family, need, have, ""));
            }
        }
        let mut features = adapter.features() & wgpu::Features::TIMESTAMP_QUERY;
        if subgroups {
            features |= wgpu::Features::SUBGROUP;
        }
        let caps =
            Caps { family, subgroups_of_8: false, head: family == Family::Tiled && !opts.no_head }.within(&limits);
        let mut gpu = Gpu::request(summary, &adapter, limits, features, caps, opts).await?;
        if subgroups {
            // Trust, but verify: some drivers report one width and run another.
            let ok = subgroup_probe(&gpu).await?;
            gpu.subgroups_of_8 = ok;
            gpu.caps.subgroups_of_8 = ok;
        }
        Ok(gpu)
    }

    /// Another device on the same adapter, opened the same way (a network owns its device; checks build several).
    pub async fn reopen(&self) -> Result<Gpu, GpuError> {
        let all = enumerate(Some(wgpu::Backends::from(self.adapter_backend()))).await;
        let (summary, adapter) = all
            .into_iter()
            .find(|(s, _)| s.name == self.adapter.name && s.backend == self.adapter.backend)
            .ok_or_else(|| GpuError::NoAdapter { backend: format!(" named {}", self.adapter.name) })?;
        let opts = OpenOptions { family: Some(self.caps.family), no_subgroups: !self.subgroups_of_8, ..self.options };
        Gpu::open_adapter(summary, adapter, opts).await
    }

    fn adapter_backend(&self) -> wgpu::Backend {
        if self.adapter.backend == backend_name(wgpu::Backend::BrowserWebGpu) {
            return wgpu::Backend::BrowserWebGpu; // not a `--backend` choice: the page's own
        }
        parse_backend(&self.adapter.backend).unwrap_or(wgpu::Backend::Vulkan)
    }
}

impl Caps {
    /// The same, less what a device of `limits` cannot run (the fused classifier head needs six storage buffers).
    pub fn within(self, limits: &wgpu::Limits) -> Caps {
        Caps { head: self.head && limits::fits("classifier_head", limits), ..self }
    }
}

/// Whether the kernels of `caps` can run `arch`, or why not: the simd family's convolutions are 3×3 with padding 1,
/// read rows as pairs (even sides only), carry ReLU's gradient back only through a pool, and read their weights
/// through a uniform window of `WEIGHT_WINDOW_BYTES` at the start of the parameters. The tiled family runs any network
/// `Arch` accepts.
pub fn for_arch(arch: &Arch, caps: Caps) -> Result<(), String> {
    if caps.family != Family::Simd {
        return Ok(());
    }
    for c in arch.convs() {
        if !c.is_3x3_same() {
            return Err(format!(
                "the simd kernels cannot run conv{}: they are 3×3 with padding 1, it is {k}×{k} with padding {}",
                c.index,
                c.pad,
                k = c.k
            ));
        }
        let get = |name: &str| match name {
            "H" => c.ih as f64,
            "W" => c.iw as f64,
            _ => 0.0,
        };
        conv2d::check_shape("conv2d_forward", &get)
            .map_err(|e| format!("the simd kernels cannot run conv{}: {e}", c.index))?;
        if let Some(b) = c.index.checked_sub(2).map(|i| &arch.convs()[i]).filter(|b| b.pool.is_none()) {
            return Err(format!(
                "the simd kernels cannot run conv{} right after conv{} without a pool (they carry ReLU's gradient back only through a pool)",
                c.index, b.index
            ));
        }
        let end = 4 * (c.b_off + c.cout) as u64;
        if end > WEIGHT_WINDOW_BYTES {
            return Err(format!(
                "the simd kernels cannot run conv{}: its weights end at byte {end} of the parameters, past the {WEIGHT_WINDOW_BYTES}-byte uniform window they read them through",
                c.index
            ));
        }
    }
    Ok(())
}

/// The kernels that run `arch` on `gpu`: the device's, or the tiled family where they cannot take it (said in a
/// warning), with its fused head as the device was opened (`GPU_CNN_FUSED_HEAD`) and its limits allow.
pub fn for_network(arch: &Arch, gpu: &Gpu) -> Caps {
    match for_arch(arch, gpu.caps) {
        Ok(()) => gpu.caps,
        Err(why) => {
            log::warn!("{why}; running the tiled kernels instead");
            Caps { family: Family::Tiled, subgroups_of_8: false, head: !gpu.options.no_head }.within(&gpu.limits)
        }
    }
}

/// Whether a training step of `arch` runs its classifier head as one dispatch on `caps`: the tiled family with its
/// head allowed, a dense layer with ReLU before the last, and a last layer the head kernel takes.
pub fn fused_head(arch: &Arch, caps: Caps) -> bool {
    let [.., before, last] = arch.denses() else { return false };
    let last = dense::Dense { inp: last.inp, out: last.out, w_off: last.w_off, b_off: last.b_off };
    caps.family == Family::Tiled && caps.head && before.relu && classifier_head::fits(&last)
}

/// Test images per evaluation chunk: small chunks for the simd family (CPU adapters: the result of every run so far
/// stays bit for bit the same), large ones for GPUs, which a chunk of 250 leaves mostly idle.
pub fn eval_batch(family: Family) -> usize {
    match family {
        Family::Simd => 250,
        Family::Tiled => 2000,
    }
}

/// The kernel sets to check on `gpu`: the engine's own (`gpu.caps`), or with `all` every one the device can run (the
/// simd family with and without its subgroup kernels where the device has verified 8-lane subgroups, the tiled family
/// with and without its fused classifier head where the device takes it).
pub fn variants(gpu: &Gpu, all: bool) -> Vec<Caps> {
    if !all {
        return vec![gpu.caps];
    }
    let mut v = Vec::new();
    if limits::unmet(Family::Simd, false, &gpu.limits).is_none() {
        v.push(Caps::simd(false));
    }
    if gpu.subgroups_of_8 {
        v.push(Caps::simd(true));
    }
    let tiled = Caps::tiled().within(&gpu.limits);
    v.push(tiled);
    if tiled.head {
        v.push(Caps::tiled_unfused());
    }
    v
}

/// Runs `subgroup_probe.wgsl` and checks what the subgroup kernels assume: every subgroup 8 invocations wide, made of
/// 8 consecutive invocations with lanes in order, and subgroupShuffle bringing the named lane's value.
pub async fn subgroup_probe(gpu: &Gpu) -> Result<bool, GpuError> {
    const WG: usize = 64;
    let kernels = Kernels::new();
    let k = kernels.kernel(gpu, "subgroup_probe", &[])?;
    let out = gpu.storage("subgroup probe", 4 * 3 * WG as u64)?;
    let group = k.bind(gpu, &[&out]);
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        k.dispatch_workgroups(&mut pass, &group, None, 1);
    }
    let idx = gpu.queue.submit([enc.finish()]);
    gpu.wait(Some(idx), "the subgroup probe").await?;
    Ok(subgroups_are_8_in_order(&gpu.read_u32(&out, 0, 3 * WG, "the subgroup probe").await?))
}

/// What `subgroup_probe.wgsl` wrote (per invocation of a 64-invocation workgroup: subgroup size, lane, shuffled
/// value) is what the subgroup kernels assume.
pub fn subgroups_are_8_in_order(v: &[u32]) -> bool {
    const WG: usize = 64;
    v.len() == 3 * WG
        && (0..WG).all(|i| {
            let base = i / 8 * 8;
            v[i] == 8 && v[WG + i] as usize == i % 8 && v[2 * WG + i] as usize == 1000 + base + (i % 8 + 3) % 8
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_family_says_what_it_runs() {
        let (simd, tiled) = (Caps::simd(true), Caps::tiled());
        for desc in ["study", "tiny", "wide", "lenet5", "conv4-conv6-pool-fc10", "conv8k4p0-fc10"] {
            assert_eq!(for_arch(&Arch::parse(desc).unwrap(), tiled), Ok(()), "{desc}");
        }
        for desc in ["study", "tiny", "conv4-avgpool-conv6-avgpool-fc10", "conv8-fc10", "fc10"] {
            assert_eq!(for_arch(&Arch::parse(desc).unwrap(), simd), Ok(()), "{desc}");
        }
        for (desc, why) in [
            ("lenet5", "conv1: they are 3×3 with padding 1, it is 5×5 with padding 2"),
            ("conv8k3p0-fc10", "it is 3×3 with padding 0"),
            ("conv4-conv6-pool-fc10", "right after conv1 without a pool"),
            ("wide", "past the 19200-byte uniform window"),
            ("1x28x30:conv4-pool-conv4-fc10", "W = 15 must be even"),
        ] {
            let e = for_arch(&Arch::parse(desc).unwrap(), simd).unwrap_err();
            assert!(e.contains(why), "{desc}: {e}");
        }
    }

    #[test]
    fn the_head_is_fused_where_the_tiled_family_and_the_layers_allow() {
        let study = Arch::study();
        assert!(fused_head(&study, Caps::tiled()));
        assert!(!fused_head(&study, Caps::tiled_unfused()));
        assert!(!fused_head(&study, Caps::simd(true)));
        assert!(fused_head(&Arch::parse("lenet5").unwrap(), Caps::tiled()));
        // No hidden dense layer before the last, or a last layer over the kernel's workgroup memory: four dispatches.
        assert!(!fused_head(&Arch::parse("conv4-pool-fc10").unwrap(), Caps::tiled()));
        assert!(!fused_head(&Arch::parse("fc300-fc10").unwrap(), Caps::tiled()));
    }
}

#[cfg(test)]
mod probe_tests {
    use super::subgroups_are_8_in_order;

    /// What the probe reads on a device whose subgroups are `width` wide, lanes in order, `lane_of` numbering them.
    fn probe(width: usize, lane_of: impl Fn(usize) -> usize) -> Vec<u32> {
        let mut v = vec![0u32; 192];
        for i in 0..64 {
            let (base, lane) = (i / width * width, lane_of(i));
            v[i] = width as u32;
            v[64 + i] = lane as u32;
            let src = (0..width).map(|j| base + j).find(|&j| lane_of(j) == (lane + 3) % width).unwrap_or(i);
            v[128 + i] = 1000 + src as u32;
        }
        v
    }

    #[test]
    fn the_probe_accepts_eight_lanes_in_order_only() {
        assert!(subgroups_are_8_in_order(&probe(8, |i| i % 8)));
        // Planted: 4- and 16-wide subgroups (a driver reporting 8 but running another width), lanes numbered in
        // reverse, a shuffle that reads the wrong lane.
        assert!(!subgroups_are_8_in_order(&probe(4, |i| i % 4)));
        assert!(!subgroups_are_8_in_order(&probe(16, |i| i % 16)));
        assert!(!subgroups_are_8_in_order(&probe(8, |i| 7 - i % 8)));
        let mut wrong = probe(8, |i| i % 8);
        wrong[128 + 5] += 1;
        assert!(!subgroups_are_8_in_order(&wrong));
    }
}
