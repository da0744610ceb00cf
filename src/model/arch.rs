//! The study's network: its shapes, its one contiguous parameter vector and PyTorch's default initialization.
//!
//! Parameters live in one flat `f32` vector in PyTorch's `state_dict` order (`conv1.weight`, `conv1.bias`, `conv2.weight`,
//! `conv2.bias`, `fc1.weight`, `fc1.bias`, `fc2.weight`, `fc2.bias`), each tensor row-major with PyTorch's shape. The GPU
//! keeps the same layout in one buffer, so the optimizer is one kernel over one buffer (as in llm.c).

use rand::RngCore;
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// Output classes (MNIST's digits).
pub const CLASSES: usize = 10;

/// The shape of one input image: `channels` planes of `height` × `width` pixels, stored plane after plane (PyTorch's
/// (C, H, W)). MNIST's is 1×28×28.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ImageShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ImageShape {
    pub const MNIST: ImageShape = ImageShape { channels: 1, height: 28, width: 28 };
    /// Largest channel count, height and width accepted (an IDX header claiming more is refused).
    pub const MAX_SIDE: usize = 4096;

    /// Values per image (channels × height × width).
    pub fn pixels(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Parses `CxHxW` (e.g. `3x32x32`), as `Display` writes it.
    pub fn parse(text: &str) -> Result<ImageShape, String> {
        let parts: Vec<&str> = text.split('x').collect();
        let bad = || format!("`{text}` is not an image shape: expected CxHxW, e.g. 1x28x28 or 3x32x32");
        let [c, h, w] = parts[..] else { return Err(bad()) };
        let n = |s: &str| s.parse::<usize>().ok().filter(|&v| (1..=Self::MAX_SIDE).contains(&v)).ok_or_else(bad);
        Ok(ImageShape { channels: n(c)?, height: n(h)?, width: n(w)? })
    }
}

impl std::fmt::Display for ImageShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}", self.channels, self.height, self.width)
    }
}

/// Input normalization: a pixel p (0..=255) enters the network as (p / 255 − mean) / std, one mean and std for every
/// channel (PyTorch's `transforms.Normalize`). The data decides it ([`Normalization::of`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalization {
    pub mean: f32,
    pub std: f32,
}

impl Normalization {
    /// MNIST's, as the study (and PyTorch's MNIST example) use it: `Normalize((0.1307,), (0.3081,))`.
    pub const MNIST: Normalization = Normalization { mean: 0.1307, std: 0.3081 };

    /// The mean and standard deviation of `pixels` scaled to [0, 1], rounded to 4 decimals (as the published MNIST
    /// constants are: MNIST's training images give exactly [`Normalization::MNIST`]). A constant image set gets std 1.
    pub fn of(pixels: &[u8]) -> Normalization {
        let mut counts = [0u64; 256];
        for &p in pixels {
            counts[p as usize] += 1;
        }
        let n = pixels.len().max(1) as f64;
        let mean = counts.iter().enumerate().map(|(v, &c)| v as f64 / 255.0 * c as f64).sum::<f64>() / n;
        let var =
            counts.iter().enumerate().map(|(v, &c)| (v as f64 / 255.0 - mean).powi(2) * c as f64).sum::<f64>() / n;
        let round = |v: f64| ((v * 1e4).round() / 1e4) as f32;
        let std = round(var.sqrt());
        Normalization { mean: round(mean), std: if std > 0.0 { std } else { 1.0 } }
    }

    /// One pixel, normalized.
    pub fn apply(&self, p: u8) -> f32 {
        (p as f32 / 255.0 - self.mean) / self.std
    }

    /// A normalized value back to [0, 1] (for pictures).
    pub fn undo(&self, v: f32) -> f32 {
        v * self.std + self.mean
    }
}

/// Default seed for initialization and shuffling.
pub const DEFAULT_SEED: u64 = 42;

/// One layer of a network, as `--arch` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// `convC`: a 3×3 convolution with padding 1 and a bias, to `C` channels, then ReLU.
    Conv(usize),
    /// `pool`: a 2×2 max-pool with stride 2 (after a convolution).
    Pool,
    /// `fcN`: a fully connected layer with a bias, to `N` features; ReLU after every one but the last. The first one
    /// reads the flattened (C, H, W) features, as PyTorch's `flatten` lays them out.
    Dense(usize),
}

/// A convolution of an architecture with everything derived from it: `index` (1-based, as in `conv1.weight`), shapes
/// (its input and output are `h` × `w`), whether a max-pool follows, and its tensors' offsets in the flat parameter
/// vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvLayer {
    pub index: usize,
    pub cin: usize,
    pub cout: usize,
    pub h: usize,
    pub w: usize,
    pub pool: bool,
    pub w_off: usize,
    pub b_off: usize,
}

impl ConvLayer {
    /// Height and width of what the next layer reads (halved by the pool).
    pub fn out_hw(&self) -> (usize, usize) {
        if self.pool {
            (self.h / 2, self.w / 2)
        } else {
            (self.h, self.w)
        }
    }

    /// Output values per image (before the pool).
    pub fn out_len(&self) -> usize {
        self.cout * self.h * self.w
    }

    /// Multiply-adds per image.
    pub fn macs(&self) -> usize {
        self.out_len() * self.cin * 9
    }
}

/// A dense layer of an architecture: `index` (1-based, as in `fc1.weight`), sizes, ReLU or not, offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DenseLayer {
    pub index: usize,
    pub inp: usize,
    pub out: usize,
    pub relu: bool,
    pub w_off: usize,
    pub b_off: usize,
}

/// A network: convolutions (each optionally followed by a max-pool), then dense layers, on images of one shape
/// (MNIST's 1×28×28 unless said otherwise). Everything else follows from it: shapes, the parameter layout, PyTorch's
/// tensor names, FLOPs, the CPU reference's passes, the GPU's op list, the pictures. The study's network is
/// `Arch::study()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arch {
    input: ImageShape,
    layers: Vec<Layer>,
    convs: Vec<ConvLayer>,
    denses: Vec<DenseLayer>,
    tensors: Vec<ParamTensor>,
    param_count: usize,
}

/// Named architectures for `--arch`: (name, description, what it is for).
pub const PRESETS: [(&str, &str, &str); 3] = [
    ("study", "conv16-pool-conv32-pool-fc128-fc10", "the study's network (the default)"),
    ("tiny", "conv4-pool-conv8-pool-fc32-fc10", "a small one, quick on any adapter"),
    (
        "wide",
        "conv64-pool-conv128-pool-fc512-fc10",
        "about 15× the study's work per image (108 MFLOP per trained image), to keep a big GPU busy",
    ),
];

impl Arch {
    /// The study's network: conv 1→16, pool, conv 16→32, pool, fc 1568→128, fc 128→10.
    pub fn study() -> Arch {
        Arch::parse("study").expect("the study's architecture")
    }

    /// Parses `--arch`: a preset name (`study`, `tiny`, `wide`) or layers joined by `-`, e.g.
    /// `conv16-pool-conv32-pool-fc128-fc10`, optionally after the input shape and a colon (`3x32x32:conv16-…`; without
    /// it, MNIST's 1×28×28). A description that does not make a network this engine runs is an error naming the part
    /// that is wrong.
    pub fn parse(text: &str) -> Result<Arch, String> {
        let text = text.trim();
        let (input, text) = match text.split_once(':') {
            Some((shape, rest)) => (ImageShape::parse(shape.trim()).map_err(|e| format!("--arch: {e}"))?, rest.trim()),
            None => (ImageShape::MNIST, text),
        };
        let desc = PRESETS.iter().find(|p| p.0 == text).map_or(text, |p| p.1);
        let mut layers = Vec::new();
        for (i, part) in desc.split('-').enumerate() {
            let number = |prefix: &str| -> Result<usize, String> {
                let n = part[prefix.len()..].parse::<usize>().map_err(|_| {
                    format!("`{part}` (part {} of `{desc}`): expected a whole number after `{prefix}`", i + 1)
                })?;
                if n == 0 || n > 4096 {
                    return Err(format!("`{part}` (part {} of `{desc}`): {n} is outside 1..=4096", i + 1));
                }
                Ok(n)
            };
            layers.push(match part {
                "pool" => Layer::Pool,
                p if p.starts_with("conv") => Layer::Conv(number("conv")?),
                p if p.starts_with("fc") => Layer::Dense(number("fc")?),
                _ => {
                    return Err(format!(
                        "`{part}` (part {} of `{desc}`) is not a layer: use convC, pool or fcN, joined by `-` (presets: {})",
                        i + 1,
                        PRESETS.map(|p| p.0).join(", ")
                    ))
                }
            });
        }
        Arch::new(input, layers).map_err(|e| format!("--arch `{desc}` on {input} images: {e}"))
    }

    /// The same layers on images of `input` (as the data has them), checked again: a pool may now fall on an odd side.
    pub fn with_input(&self, input: ImageShape) -> Result<Arch, String> {
        if input == self.input {
            return Ok(self.clone());
        }
        let desc = self.layers_text();
        Arch::new(input, self.layers.clone()).map_err(|e| format!("--arch `{desc}` on {input} images: {e}"))
    }

    /// The architecture of `layers`, checked: convolutions and pools first, each pool right after a convolution and on
    /// an even side, a convolution followed by a pool unless it is the last one, then at least one dense layer, the
    /// last with `CLASSES` outputs.
    pub fn new(input: ImageShape, layers: Vec<Layer>) -> Result<Arch, String> {
        let (mut c, mut h, mut w) = (input.channels, input.height, input.width);
        let mut convs: Vec<ConvLayer> = Vec::new();
        let mut denses: Vec<DenseLayer> = Vec::new();
        let mut tensors = Vec::new();
        let mut offset = 0;
        let mut add = |tensors: &mut Vec<ParamTensor>, name: String, shape: Vec<usize>, fan_in: usize| {
            let t = ParamTensor { name, shape, offset, fan_in };
            offset += t.len();
            let at = t.offset;
            tensors.push(t);
            at
        };
        for (i, layer) in layers.iter().enumerate() {
            let next = layers.get(i + 1);
            match *layer {
                Layer::Conv(cout) => {
                    if !denses.is_empty() {
                        return Err(format!("conv{cout} after a dense layer (convolutions come first)"));
                    }
                    let pool = next == Some(&Layer::Pool);
                    let index = convs.len() + 1;
                    let w_off = add(&mut tensors, format!("conv{index}.weight"), vec![cout, c, 3, 3], c * 9);
                    let b_off = add(&mut tensors, format!("conv{index}.bias"), vec![cout], c * 9);
                    convs.push(ConvLayer { index, cin: c, cout, h, w, pool, w_off, b_off });
                    c = cout;
                }
                Layer::Pool => {
                    if !matches!(i.checked_sub(1).map(|j| layers[j]), Some(Layer::Conv(_))) {
                        return Err("pool must come right after a convolution".into());
                    }
                    if h % 2 != 0 || w % 2 != 0 {
                        return Err(format!("pool on a {h}×{w} map: the sides must be even"));
                    }
                    (h, w) = (h / 2, w / 2);
                }
                Layer::Dense(out) => {
                    let inp = denses.last().map_or(c * h * w, |d| d.out);
                    let index = denses.len() + 1;
                    let w_off = add(&mut tensors, format!("fc{index}.weight"), vec![out, inp], inp);
                    let b_off = add(&mut tensors, format!("fc{index}.bias"), vec![out], inp);
                    denses.push(DenseLayer { index, inp, out, relu: next.is_some(), w_off, b_off });
                }
            }
        }
        match denses.last() {
            None => return Err("the last layer must be a dense one (fcN)".into()),
            Some(_) if !matches!(layers.last(), Some(Layer::Dense(_))) => {
                return Err("the last layer must be a dense one (fcN)".into())
            }
            Some(d) if d.out != CLASSES => {
                return Err(format!("the last layer has {} outputs; MNIST has {CLASSES} classes", d.out))
            }
            _ => {}
        }
        Ok(Arch { input, layers, convs, denses, param_count: offset, tensors })
    }

    /// The description `parse` reads back: `conv16-pool-…-fc10`, after `CxHxW:` for inputs other than MNIST's.
    pub fn describe(&self) -> String {
        if self.input == ImageShape::MNIST {
            self.layers_text()
        } else {
            format!("{}:{}", self.input, self.layers_text())
        }
    }

    fn layers_text(&self) -> String {
        let part = |l: &Layer| match l {
            Layer::Conv(c) => format!("conv{c}"),
            Layer::Pool => "pool".into(),
            Layer::Dense(n) => format!("fc{n}"),
        };
        self.layers.iter().map(part).collect::<Vec<_>>().join("-")
    }

    /// The shape of the images it reads.
    pub fn input(&self) -> ImageShape {
        self.input
    }

    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }
    pub fn convs(&self) -> &[ConvLayer] {
        &self.convs
    }
    pub fn denses(&self) -> &[DenseLayer] {
        &self.denses
    }
    /// Every parameter tensor, in PyTorch's `state_dict` order (`conv1.weight`, `conv1.bias`, …, `fcN.bias`).
    pub fn tensors(&self) -> &[ParamTensor] {
        &self.tensors
    }
    /// Length of the flat parameter vector.
    pub fn param_count(&self) -> usize {
        self.param_count
    }

    /// Multiply-adds per image of the forward pass (1 MAC = 2 FLOPs).
    pub fn forward_macs(&self) -> usize {
        let conv: usize = self.convs.iter().map(ConvLayer::macs).sum();
        conv + self.denses.iter().map(|d| d.inp * d.out).sum::<usize>()
    }

    /// FLOPs per trained image: the forward pass, every layer's weight gradient, and every layer's input gradient but
    /// the first's.
    pub fn train_flops_per_image(&self) -> usize {
        let first = match (self.convs.first(), self.denses.first()) {
            (Some(c), _) => c.macs(),
            (None, Some(d)) => d.inp * d.out,
            (None, None) => 0,
        };
        2 * (3 * self.forward_macs() - first)
    }
}

impl Default for Arch {
    fn default() -> Self {
        Arch::study()
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// One named parameter tensor inside the flat parameter vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamTensor {
    /// PyTorch's name, e.g. `conv1.weight`.
    pub name: String,
    /// PyTorch's shape.
    pub shape: Vec<usize>,
    /// Offset in elements into the flat parameter vector.
    pub offset: usize,
    /// Fan-in used by PyTorch's default initialization (bound 1/sqrt(fan_in)).
    pub fan_in: usize,
}

impl ParamTensor {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// The named, seeded generator used for everything random (initialization, shuffling). Not `StdRng`, whose algorithm may
/// change between `rand` versions.
pub type Rng = Xoshiro256PlusPlus;

pub fn rng(seed: u64) -> Rng {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

/// Uniform in [0, 1) from the top 24 bits of one draw (exact in f32, independent of `rand`'s distribution code).
pub fn uniform01(rng: &mut Rng) -> f32 {
    (rng.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
}

/// PyTorch's default initialization for Conv2d and Linear: weights and biases uniform in ±1/sqrt(fan_in), drawn tensor by
/// tensor in `state_dict` order from `Xoshiro256PlusPlus::seed_from_u64(seed)`.
pub fn init_params(arch: &Arch, seed: u64) -> Vec<f32> {
    let mut rng = rng(seed);
    let mut params = vec![0.0f32; arch.param_count()];
    for t in arch.tensors() {
        let bound = 1.0 / (t.fan_in as f32).sqrt();
        for p in &mut params[t.range()] {
            *p = (2.0 * uniform01(&mut rng) - 1.0) * bound;
        }
    }
    params
}

/// A permutation of `0..n` by Fisher–Yates from `rng` (own code, so the order is fixed across `rand` versions).
pub fn shuffled_indices(n: usize, rng: &mut Rng) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        idx.swap(i, j);
    }
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_contiguous_and_pytorch_sized() {
        let arch = Arch::study();
        let mut next = 0;
        for t in arch.tensors() {
            assert_eq!(t.offset, next, "{}", t.name);
            next += t.len();
        }
        assert_eq!(next, arch.param_count());
        assert_eq!(arch.param_count(), 206_922);
        assert_eq!(arch.denses()[0].inp, 1568);
        let names: Vec<&str> = arch.tensors().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "conv1.weight",
                "conv1.bias",
                "conv2.weight",
                "conv2.bias",
                "fc1.weight",
                "fc1.bias",
                "fc2.weight",
                "fc2.bias"
            ]
        );
        assert_eq!(arch.tensors()[2].shape, [32, 16, 3, 3]);
        assert_eq!(arch.describe(), "conv16-pool-conv32-pool-fc128-fc10");
        // 7.1 MFLOP per trained image, as BENCHMARKS.md has always counted.
        assert_eq!(arch.train_flops_per_image(), 2 * (3 * 1_218_048 - 112_896));
    }

    #[test]
    fn descriptions_parse_and_bad_ones_name_the_part() {
        for (name, desc, _) in PRESETS {
            let a = Arch::parse(name).unwrap();
            assert_eq!(a.describe(), desc);
            assert_eq!(Arch::parse(desc).unwrap(), a);
        }
        let mlp = Arch::parse("fc64-fc10").unwrap();
        assert_eq!((mlp.convs().len(), mlp.denses()[0].inp, mlp.param_count()), (0, 784, 784 * 64 + 64 + 64 * 10 + 10));
        let no_pool = Arch::parse("conv8-fc10").unwrap();
        assert_eq!(no_pool.denses()[0].inp, 8 * 28 * 28);
        for (bad, says) in [
            ("conv16-pool-conv32-pool-fc128", "10 classes"),
            ("conv16-pool", "last layer must be a dense"),
            ("pool-fc10", "right after a convolution"),
            ("conv8-pool-pool-fc10", "right after a convolution"),
            ("conv8-pool-conv8-pool-conv8-pool-fc10", "sides must be even"),
            ("3x32:conv8-fc10", "not an image shape"),
            ("3x32x0:conv8-fc10", "not an image shape"),
            ("1x28x30:conv8-pool-conv8-pool-fc10", "pool on a 14×15 map"),
            ("fc10-conv8-fc10", "after a dense layer"),
            ("conv16-pool-relu-fc10", "`relu` (part 3"),
            ("convx-fc10", "whole number after `conv`"),
            ("conv0-fc10", "outside 1..=4096"),
            ("", "is not a layer"),
        ] {
            let e = Arch::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn other_input_shapes_derive_their_layers_and_round_trip() {
        let study = Arch::study();
        assert_eq!(study.input(), ImageShape::MNIST);
        let rgb = study.with_input(ImageShape { channels: 3, height: 32, width: 24 }).unwrap();
        assert_eq!(rgb.describe(), "3x32x24:conv16-pool-conv32-pool-fc128-fc10");
        assert_eq!(Arch::parse(&rgb.describe()).unwrap(), rgb);
        let c = rgb.convs()[0];
        assert_eq!((c.cin, c.h, c.w, rgb.convs()[1].h, rgb.convs()[1].w), (3, 32, 24, 16, 12));
        assert_eq!(rgb.denses()[0].inp, 32 * 8 * 6);
        assert_eq!(rgb.tensors()[0].shape, [16, 3, 3, 3]);
        let odd = study.with_input(ImageShape { channels: 1, height: 27, width: 28 }).unwrap_err();
        assert!(odd.contains("pool on a 27×28 map"), "{odd}");
        assert_eq!(study.with_input(ImageShape::MNIST).unwrap(), study);
    }

    #[test]
    fn normalization_comes_from_the_pixels() {
        assert_eq!(Normalization::of(&[0, 255]), Normalization { mean: 0.5, std: 0.5 });
        assert_eq!(Normalization::of(&[7; 10]).std, 1.0);
        let n = Normalization::MNIST;
        assert!((n.undo(n.apply(200)) - 200.0 / 255.0).abs() < 1e-6);
    }

    #[test]
    fn init_is_seeded_and_bounded() {
        let arch = Arch::study();
        let a = init_params(&arch, 1);
        assert_eq!(a, init_params(&arch, 1));
        assert_ne!(a, init_params(&arch, 2));
        for t in arch.tensors() {
            let bound = 1.0 / (t.fan_in as f32).sqrt();
            let s = &a[t.range()];
            assert!(s.iter().all(|v| v.abs() <= bound), "{}", t.name);
            // Spread over the interval, not collapsed: the largest magnitude is near the bound.
            let max = s.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(max > 0.5 * bound, "{}", t.name);
        }
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut r = rng(3);
        let mut p = shuffled_indices(1000, &mut r);
        assert_ne!(p[..10], (0..10).collect::<Vec<u32>>()[..]);
        p.sort();
        assert_eq!(p, (0..1000).collect::<Vec<u32>>());
    }
}
