//! What a network reads: the shape of one input image, how its pixels are normalized, and the classes it tells apart.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_comes_from_the_pixels() {
        assert_eq!(Normalization::of(&[0, 255]), Normalization { mean: 0.5, std: 0.5 });
        assert_eq!(Normalization::of(&[7; 10]).std, 1.0);
        let n = Normalization::MNIST;
        assert!((n.undo(n.apply(200)) - 200.0 / 255.0).abs() < 1e-6);
    }
}
