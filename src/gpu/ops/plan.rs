//! What an op asks of the device: plans (a kernel, its override constants, its buffers by name, its workgroups and work
//! for a batch of n), the temporaries only it uses, and where a layer's input came from (`Source`).

use std::rc::Rc;

pub use crate::model::Pool;

/// What produced a layer's input, for its input gradient (dense and convolution layers): the gradient `dx` is carried
/// back through it.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    /// Nothing to undo: dx as it is.
    Plain,
    /// A ReLU whose output is the tensor named here: dx masked by x > 0.
    Relu(&'a str),
    /// The 2×2 pool (`pool`) of the ReLU output named here, [n, C, 2·ph, 2·pw] (a dense layer's IN = C·ph·pw,
    /// flattened; a convolution's ph × pw is its own input map): dx carried back through the pool and the ReLU, as
    /// maxpool_backward (or avgpool_backward) and relu_backward do.
    PooledRelu { a: &'a str, ph: usize, pw: usize, pool: Pool },
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
    /// Steps through K one workgroup of a tiled product takes for a batch of n, each a load and a barrier: its serial
    /// chain (`tiles::steps`; 0 for kernels that are not tiled products).
    pub steps: PerBatch<u64>,
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
            steps: Rc::new(|_| 0),
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

    pub fn steps(mut self, f: impl Fn(usize) -> u64 + 'static) -> Plan {
        self.steps = Rc::new(f);
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

    /// Labels every plan with the layer it belongs to (those already labelled keep theirs).
    pub fn layer(mut self, layer: &str) -> Lowered {
        self.plans = self.plans.into_iter().map(|p| if p.label == p.entry { p.label(layer) } else { p }).collect();
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
