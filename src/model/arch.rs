//! A network as data: its layers (`--arch`), and everything derived from them (shapes, the parameter layout, FLOPs).
//! The study's network is `Arch::study()`.

use super::input::{ImageShape, CLASSES};

/// One layer of a network, as `--arch` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// `convC`, `convCkK`, `convCkKpP`: a K×K convolution (3 unless given) with padding P (K/2 unless given), stride
    /// 1 and a bias, to `C` channels, then ReLU (PyTorch's `Conv2d(cin, C, K, padding=P)` and `ReLU`).
    Conv { out: usize, k: usize, pad: usize },
    /// `pool` (max) or `avgpool`: a 2×2 pool with stride 2, right after a convolution (`MaxPool2d(2)`, `AvgPool2d(2)`).
    Pool(Pool),
    /// `fcN`: a fully connected layer with a bias, to `N` features; ReLU after every one but the last. The first one
    /// reads the flattened (C, H, W) features, as PyTorch's `flatten` lays them out.
    Dense(usize),
}

/// Which 2×2 pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pool {
    Max,
    Avg,
}

/// Largest kernel side a convolution may have.
pub const MAX_KERNEL: usize = 7;

/// A convolution of an architecture with everything derived from it: `index` (1-based, as in `conv1.weight`), its
/// kernel side `k` and padding `pad`, its input (`ih` × `iw`) and output (`oh` × `ow` = ih + 2·pad − k + 1 × …) sides,
/// the pool that follows it (if any), and its tensors' offsets in the flat parameter vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvLayer {
    pub index: usize,
    pub cin: usize,
    pub cout: usize,
    pub k: usize,
    pub pad: usize,
    pub ih: usize,
    pub iw: usize,
    pub oh: usize,
    pub ow: usize,
    pub pool: Option<Pool>,
    pub w_off: usize,
    pub b_off: usize,
}

impl ConvLayer {
    /// Height and width of what the next layer reads (halved by the pool).
    pub fn out_hw(&self) -> (usize, usize) {
        match self.pool {
            Some(_) => (self.oh / 2, self.ow / 2),
            None => (self.oh, self.ow),
        }
    }

    /// Output values per image (before the pool).
    pub fn out_len(&self) -> usize {
        self.cout * self.oh * self.ow
    }

    /// Input values per image.
    pub fn in_len(&self) -> usize {
        self.cin * self.ih * self.iw
    }

    /// Multiply-adds per image.
    pub fn macs(&self) -> usize {
        self.out_len() * self.cin * self.k * self.k
    }

    /// The 3×3, padding-1 convolution the study's network (and the simd kernels) are made of.
    pub fn is_3x3_same(&self) -> bool {
        self.k == 3 && self.pad == 1
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

/// A network: convolutions (each optionally followed by a pool), then dense layers, on images of one shape
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
pub const PRESETS: [(&str, &str, &str); 4] = [
    ("study", "conv16-pool-conv32-pool-fc128-fc10", "the study's network (the default)"),
    ("tiny", "conv4-pool-conv8-pool-fc32-fc10", "a small one, quick on any adapter"),
    (
        "wide",
        "conv64-pool-conv128-pool-fc512-fc10",
        "about 15× the study's work per image (108 MFLOP per trained image), to keep a big GPU busy",
    ),
    (
        "lenet5",
        "conv6k5-avgpool-conv16k5p0-avgpool-fc120-fc84-fc10",
        "LeNet-5 (LeCun et al., 1998) with ReLU: 5×5 convolutions and average pools",
    ),
];

impl Arch {
    /// The study's network: conv 1→16, pool, conv 16→32, pool, fc 1568→128, fc 128→10.
    pub fn study() -> Arch {
        Arch::parse("study").expect("the study's architecture")
    }

    /// Parses `--arch`: a preset name (`study`, `tiny`, `wide`, `lenet5`) or layers joined by `-`, e.g.
    /// `conv16-pool-conv32-pool-fc128-fc10` or `conv6k5-avgpool-conv16k5p0-avgpool-fc120-fc84-fc10`, optionally after
    /// the input shape and a colon (`3x32x32:conv16-…`; without it, MNIST's 1×28×28). A description that does not make
    /// a network this engine runs is an error naming the part that is wrong.
    pub fn parse(text: &str) -> Result<Arch, String> {
        let text = text.trim();
        let (input, text) = match text.split_once(':') {
            Some((shape, rest)) => (ImageShape::parse(shape.trim()).map_err(|e| format!("--arch: {e}"))?, rest.trim()),
            None => (ImageShape::MNIST, text),
        };
        let desc = PRESETS.iter().find(|p| p.0 == text).map_or(text, |p| p.1);
        let mut layers = Vec::new();
        for (i, part) in desc.split('-').enumerate() {
            let at = |e: String| format!("`{part}` (part {} of `{desc}`): {e}", i + 1);
            layers.push(match part {
                "pool" => Layer::Pool(Pool::Max),
                "avgpool" => Layer::Pool(Pool::Avg),
                p if p.starts_with("conv") => conv(&p[4..]).map_err(at)?,
                p if p.starts_with("fc") => Layer::Dense(number(&p[2..], "fc", 1..=4096).map_err(at)?),
                _ => {
                    return Err(format!(
                        "`{part}` (part {} of `{desc}`) is not a layer: use convC[kK][pP], pool, avgpool or fcN, joined by `-` (presets: {})",
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
    /// an even side, each convolution's kernel within its padded input, then at least one dense layer, the last with
    /// `CLASSES` outputs.
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
                Layer::Conv { out: cout, k, pad } => {
                    let name = conv_text(cout, k, pad);
                    if !denses.is_empty() {
                        return Err(format!("{name} after a dense layer (convolutions come first)"));
                    }
                    if h + 2 * pad < k || w + 2 * pad < k {
                        return Err(format!(
                            "{name} on a {h}×{w} map: the {k}×{k} kernel is larger than the padded map"
                        ));
                    }
                    let (oh, ow) = (h + 2 * pad + 1 - k, w + 2 * pad + 1 - k);
                    let pool = match next {
                        Some(Layer::Pool(p)) => Some(*p),
                        _ => None,
                    };
                    let index = convs.len() + 1;
                    let fan_in = c * k * k;
                    let w_off = add(&mut tensors, format!("conv{index}.weight"), vec![cout, c, k, k], fan_in);
                    let b_off = add(&mut tensors, format!("conv{index}.bias"), vec![cout], fan_in);
                    convs.push(ConvLayer { index, cin: c, cout, k, pad, ih: h, iw: w, oh, ow, pool, w_off, b_off });
                    (c, h, w) = (cout, oh, ow);
                }
                Layer::Pool(p) => {
                    let name = pool_text(p);
                    if !matches!(i.checked_sub(1).map(|j| layers[j]), Some(Layer::Conv { .. })) {
                        return Err(format!("{name} must come right after a convolution"));
                    }
                    if h % 2 != 0 || w % 2 != 0 {
                        return Err(format!("{name} on a {h}×{w} map: the sides must be even"));
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
        let part = |l: &Layer| match *l {
            Layer::Conv { out, k, pad } => conv_text(out, k, pad),
            Layer::Pool(p) => pool_text(p).into(),
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

/// A whole number after a layer's letters, within `range`.
fn number(text: &str, after: &str, range: std::ops::RangeInclusive<usize>) -> Result<usize, String> {
    let n = text.parse::<usize>().map_err(|_| format!("expected a whole number after `{after}`"))?;
    if !range.contains(&n) {
        return Err(format!("{n} is outside {}..={}", range.start(), range.end()));
    }
    Ok(n)
}

/// A convolution from what follows `conv`: `C`, `CkK` or `CkKpP`, or `CpP` (K is 3 unless given, P is K/2).
fn conv(text: &str) -> Result<Layer, String> {
    let (rest, pad) = match text.split_once('p') {
        Some((rest, p)) => (rest, Some(number(p, "p", 0..=MAX_KERNEL)?)),
        None => (text, None),
    };
    let (out, k) = match rest.split_once('k') {
        Some((c, k)) => (number(c, "conv", 1..=4096)?, number(k, "k", 1..=MAX_KERNEL)?),
        None => (number(rest, "conv", 1..=4096)?, 3),
    };
    let pad = pad.unwrap_or(k / 2);
    if pad >= k {
        return Err(format!("padding {pad} must be less than the kernel side {k}"));
    }
    Ok(Layer::Conv { out, k, pad })
}

/// How `--arch` writes a convolution: `conv16` (3×3, padding 1), `conv6k5` (padding K/2), `conv16k5p0`.
fn conv_text(out: usize, k: usize, pad: usize) -> String {
    match (k, pad) {
        (3, 1) => format!("conv{out}"),
        _ if pad == k / 2 => format!("conv{out}k{k}"),
        _ => format!("conv{out}k{k}p{pad}"),
    }
}

fn pool_text(p: Pool) -> &'static str {
    match p {
        Pool::Max => "pool",
        Pool::Avg => "avgpool",
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
            ("conv8k9-fc10", "9 is outside 1..=7"),
            ("conv8k3p3-fc10", "padding 3 must be less than the kernel side 3"),
            ("conv8kx-fc10", "whole number after `k`"),
            ("conv8k5p-fc10", "whole number after `p`"),
            ("conv8-avgpool-avgpool-fc10", "avgpool must come right after a convolution"),
            ("conv8k5p0-avgpool-conv8k5p0-avgpool-conv8k5p0-fc10", "the 5×5 kernel is larger than the padded map"),
            ("conv8k4p0-avgpool-fc10", "avgpool on a 25×25 map"),
        ] {
            let e = Arch::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn kernels_of_other_sides_and_lenet5() {
        // LeNet-5: 28 → conv 5×5 padding 2 → 28 → avgpool → 14 → conv 5×5 unpadded → 10 → avgpool → 5; 61,706 parameters
        // as in LeCun et al.'s table.
        let lenet = Arch::parse("lenet5").unwrap();
        let [c1, c2] = lenet.convs() else { panic!("two convolutions") };
        assert_eq!((c1.k, c1.pad, c1.ih, c1.oh, c1.pool), (5, 2, 28, 28, Some(Pool::Avg)));
        assert_eq!((c2.k, c2.pad, c2.ih, c2.oh, c2.out_hw()), (5, 0, 14, 10, (5, 5)));
        assert_eq!(lenet.denses()[0].inp, 16 * 5 * 5);
        assert_eq!(lenet.param_count(), 61_706);
        assert_eq!(lenet.tensors()[2].shape, [16, 6, 5, 5]);
        assert_eq!(lenet.tensors()[2].fan_in, 150);
        assert_eq!(c2.macs(), 16 * 100 * 6 * 25);
        // Padding K/2 unless given, written back the shortest way.
        for (text, k, pad, back) in [
            ("conv8k1", 1, 0, "conv8k1"),
            ("conv8k3", 3, 1, "conv8"),
            ("conv8k3p0", 3, 0, "conv8k3p0"),
            ("conv8p0", 3, 0, "conv8k3p0"),
            ("conv8k7p3", 7, 3, "conv8k7"),
            ("conv8k4", 4, 2, "conv8k4"),
        ] {
            let a = Arch::parse(&format!("{text}-fc10")).unwrap();
            let c = a.convs()[0];
            assert_eq!((c.k, c.pad), (k, pad), "{text}");
            assert_eq!((c.oh, c.ow), (28 + 2 * pad + 1 - k, 28 + 2 * pad + 1 - k), "{text}");
            assert_eq!(a.describe(), format!("{back}-fc10"));
            assert_eq!(Arch::parse(&a.describe()).unwrap(), a);
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
        assert_eq!((c.cin, c.ih, c.iw, rgb.convs()[1].ih, rgb.convs()[1].iw), (3, 32, 24, 16, 12));
        assert_eq!(rgb.denses()[0].inp, 32 * 8 * 6);
        assert_eq!(rgb.tensors()[0].shape, [16, 3, 3, 3]);
        let odd = study.with_input(ImageShape { channels: 1, height: 27, width: 28 }).unwrap_err();
        assert!(odd.contains("pool on a 27×28 map"), "{odd}");
        assert_eq!(study.with_input(ImageShape::MNIST).unwrap(), study);
    }
}
