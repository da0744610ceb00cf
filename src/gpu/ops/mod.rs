//! One host-side home per op: which kernel runs it on this device (the variant), with which override constants, over
//! which buffers, in how many workgroups for a batch of n, and how much work that is (FLOPs, bytes). The network
//! (`gpu::network`) and the parity tests build their dispatches from the same plans, so what is tested is what runs.
//!
//! A plan names its buffers (`Plan::args`, one per binding of the kernel) by the network's names for its tensors
//! (`"x"`, `"a1"`, `"params"`, ...); the caller maps names to buffers. Buffers only an op needs (split-K partial sums,
//! an unfused intermediate) are declared as `Temp`s.
//!
//! Two kernel families implement the ops:
//! - `Family::Simd`: kernels shaped for CPU adapters (lavapipe): big register tiles spelled out by hand, weights
//!   through a uniform window, 8-lane subgroup variants; one op per dispatch, as in the CPU reference.
//! - `Family::Tiled`: kernels shaped for GPUs: matrix products and implicit-GEMM convolutions tiled through workgroup
//!   memory by 64-invocation workgroups, tiles and split-K chosen so a batch of 64 fills a big GPU (`tiles`), the
//!   max-pool backward fused into the kernel that produces the pooled gradient, and a training step's classifier head
//!   (the last dense layer, the loss and their gradients) in one dispatch where the device takes it (`classifier_head`).

pub mod classifier_head;
pub mod conv2d;
pub mod dense;
pub mod load_batch;
pub mod maxpool;
pub mod sgd;
pub mod softmax_cross_entropy;
pub mod tiles;

use std::fmt;
use std::rc::Rc;

/// The kernel family a device runs (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Simd,
    Tiled,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::Simd, Family::Tiled];

    pub fn name(self) -> &'static str {
        match self {
            Family::Simd => "simd",
            Family::Tiled => "tiled",
        }
    }

    pub fn parse(s: &str) -> Result<Family, String> {
        match s.to_ascii_lowercase().as_str() {
            "simd" => Ok(Family::Simd),
            "tiled" => Ok(Family::Tiled),
            other => Err(format!("unknown kernel family `{other}` (expected simd, tiled or auto)")),
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What produced a layer's input, for its input gradient (dense and convolution layers): the gradient `dx` is carried
/// back through it.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    /// Nothing to undo: dx as it is.
    Plain,
    /// A ReLU whose output is the tensor named here: dx masked by x > 0.
    Relu(&'a str),
    /// The 2×2 max-pool of the ReLU output named here, [n, C, 2·ph, 2·pw] (a dense layer's IN = C·ph·pw, flattened; a
    /// convolution's ph × pw is its own map): dx routed to each window's maximum, as maxpool_backward and relu_backward do.
    PooledRelu { a: &'a str, ph: usize, pw: usize },
}

/// What the ops need to know about the device to pick their kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    pub family: Family,
    /// Subgroups of exactly 8 invocations, verified on the device (`gpu::subgroup_probe`): the simd family then runs
    /// its `*_subgroup` kernels.
    pub subgroups_of_8: bool,
    /// The tiled family's training step runs its classifier head as one dispatch (`classifier_head`), where the
    /// device's limits take it (`Caps::within`).
    pub head: bool,
}

impl Caps {
    pub fn simd(subgroups_of_8: bool) -> Caps {
        Caps { family: Family::Simd, subgroups_of_8, head: false }
    }

    /// The tiled family with its fused classifier head.
    pub fn tiled() -> Caps {
        Caps { family: Family::Tiled, subgroups_of_8: false, head: true }
    }

    /// The tiled family with the head's four dispatches (a device without six storage buffers per stage).
    pub fn tiled_unfused() -> Caps {
        Caps { head: false, ..Caps::tiled() }
    }

    /// The same, less what a device of `limits` cannot run.
    pub fn within(self, limits: &wgpu::Limits) -> Caps {
        Caps { head: self.head && crate::gpu::limits::fits("classifier_head", limits), ..self }
    }

    /// "tiled", "tiled, head unfused", "simd" or "simd, 8-lane subgroups": as results and the adapters list show it.
    pub fn describe(&self) -> String {
        match (self.family, self.subgroups_of_8, self.head) {
            (Family::Simd, true, _) => "simd, 8-lane subgroups".into(),
            (Family::Tiled, _, false) => "tiled, head unfused".into(),
            (f, _, _) => f.name().into(),
        }
    }
}

/// A count that depends on the batch length n (workgroups, FLOPs, bytes).
pub type PerBatch<T> = Rc<dyn Fn(usize) -> T>;

/// One dispatch of one kernel: what an op asks the device to run.
#[derive(Clone)]
pub struct Plan {
    pub entry: &'static str,
    pub constants: Vec<(&'static str, f64)>,
    /// The buffer of each binding, by name (`"step"` for the per-step uniform block, `"hyper"` for SGD's).
    pub args: Vec<String>,
    /// Workgroups for a batch of n.
    pub groups: PerBatch<u64>,
    /// Floating-point operations of one dispatch for a batch of n (multiply-adds count two; 0 for data movement).
    pub flops: PerBatch<f64>,
    /// The fewest bytes one dispatch must move through device memory (each input read once, each output written once).
    pub bytes: PerBatch<f64>,
    /// A short name for tables: the op and its layer, e.g. `conv2d_forward_tiled conv2`.
    pub label: String,
}

impl Plan {
    pub fn new(entry: &'static str, constants: Vec<(&'static str, f64)>, args: &[&str]) -> Plan {
        Plan {
            entry,
            constants,
            args: args.iter().map(|s| s.to_string()).collect(),
            groups: Rc::new(|_| 1),
            flops: Rc::new(|_| 0.0),
            bytes: Rc::new(|_| 0.0),
            label: entry.to_string(),
        }
    }

    pub fn groups(mut self, f: impl Fn(usize) -> u64 + 'static) -> Plan {
        self.groups = Rc::new(f);
        self
    }

    /// `f(n)` invocations, in whole workgroups of `wg`.
    pub fn threads(self, wg: u32, f: impl Fn(usize) -> u64 + 'static) -> Plan {
        self.groups(move |n| f(n).div_ceil(wg as u64).max(1))
    }

    pub fn work(mut self, flops: impl Fn(usize) -> f64 + 'static, bytes: impl Fn(usize) -> f64 + 'static) -> Plan {
        self.flops = Rc::new(flops);
        self.bytes = Rc::new(bytes);
        self
    }

    pub fn label(mut self, layer: &str) -> Plan {
        self.label = format!("{} {layer}", self.entry);
        self
    }

    /// The value of override constant `name` (0 if it is not set).
    pub fn constant(&self, name: &str) -> f64 {
        self.constants.iter().find(|(k, _)| *k == name).map_or(0.0, |c| c.1)
    }
}

/// A buffer an op needs besides the network's tensors: `floats(batch)` f32s, named `name`.
#[derive(Clone)]
pub struct Temp {
    pub name: String,
    pub floats: usize,
}

/// What an op lowers to: its dispatches in order, and the buffers only it uses.
#[derive(Clone, Default)]
pub struct Lowered {
    pub plans: Vec<Plan>,
    pub temps: Vec<Temp>,
}

impl Lowered {
    pub fn one(plan: Plan) -> Lowered {
        Lowered { plans: vec![plan], temps: Vec::new() }
    }

    /// Labels every plan with the layer it belongs to.
    pub fn layer(mut self, layer: &str) -> Lowered {
        self.plans = self.plans.into_iter().map(|p| p.label(layer)).collect();
        self
    }

    pub fn then(mut self, other: Lowered) -> Lowered {
        self.plans.extend(other.plans);
        self.temps.extend(other.temps);
        self
    }
}

/// An override constant from a size.
pub fn c(name: &'static str, v: usize) -> (&'static str, f64) {
    (name, v as f64)
}

/// An override constant from a flag.
pub fn flag(name: &'static str, on: bool) -> (&'static str, f64) {
    (name, if on { 1.0 } else { 0.0 })
}

/// Bytes of `floats` f32 values.
pub fn f32_bytes(floats: usize) -> f64 {
    4.0 * floats as f64
}
