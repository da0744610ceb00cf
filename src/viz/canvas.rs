//! The drawing surface of the pixel-grid pictures: an RGB buffer with rectangles and enlarged value grids drawn straight
//! into it, text queued and set at the end in the embedded font (`font`), colour maps, and the atomic PNG write.

use std::path::Path;

use super::{font, VizError};
use crate::model::{ImageShape, Normalization};
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};

pub type Rgb = [u8; 3];
pub const WHITE: Rgb = [255, 255, 255];
pub const BLACK: Rgb = [0, 0, 0];
pub const TEXT: Rgb = [20, 20, 20];
pub const GREY: Rgb = [110, 110, 110];
pub const LIGHT: Rgb = [225, 225, 225];
pub const RIGHT: Rgb = [0, 150, 60];
pub const WRONG: Rgb = [215, 25, 28];

/// Where a text's anchor point sits on it (vertically: the top or the middle of its capital letters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anchor {
    TopLeft,
    TopCenter,
    TopRight,
    CenterLeft,
    Center,
    CenterRight,
}

struct Label {
    text: String,
    at: (i64, i64),
    size: f64,
    color: Rgb,
    anchor: Anchor,
    /// Turned 90° counter-clockwise (reading upwards), centred on `at`.
    upright: bool,
}

/// An RGB picture being drawn: pixels now, text at `save`.
pub struct Canvas {
    pub width: u32,
    pub height: u32,
    pixels: Vec<u8>,
    labels: Vec<Label>,
}

impl Canvas {
    /// A white picture.
    pub fn new(width: u32, height: u32) -> Canvas {
        Canvas { width, height, pixels: vec![255; width as usize * height as usize * 3], labels: Vec::new() }
    }

    /// The RGB8 pixels, row by row (for plotters' `BitMapBackend::with_buffer`).
    pub fn pixels_mut(&mut self) -> &mut [u8] {
        &mut self.pixels
    }

    pub fn put(&mut self, x: i64, y: i64, c: Rgb) {
        self.blend(x, y, c, 1.0);
    }

    /// Mixes `c` into the pixel at (x, y) with weight `a` (clipped to the picture).
    fn blend(&mut self, x: i64, y: i64, c: Rgb, a: f32) {
        if x >= 0 && y >= 0 && (x as u32) < self.width && (y as u32) < self.height {
            let i = (y as usize * self.width as usize + x as usize) * 3;
            for (p, &v) in self.pixels[i..i + 3].iter_mut().zip(&c) {
                *p = (*p as f32 * (1.0 - a) + v as f32 * a).round() as u8;
            }
        }
    }

    /// Fills the rectangle with top-left corner (x, y), `w` wide and `h` high (clipped to the picture).
    pub fn fill(&mut self, x: i64, y: i64, w: i64, h: i64, c: Rgb) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.put(xx, yy, c);
            }
        }
    }

    /// A frame `t` pixels thick just outside the rectangle (x, y, w, h).
    pub fn frame(&mut self, x: i64, y: i64, w: i64, h: i64, t: i64, c: Rgb) {
        self.fill(x - t, y - t, w + 2 * t, t, c);
        self.fill(x - t, y + h, w + 2 * t, t, c);
        self.fill(x - t, y, t, h, c);
        self.fill(x + w, y, t, h, c);
    }

    /// Draws the row-major grid `values` (`cols` wide) at (x, y), each value a `zoom`×`zoom` block coloured by `color`
    /// (nearest-neighbour enlargement, so every weight or pixel stays a visible square).
    pub fn grid(&mut self, x: i64, y: i64, values: &[f32], cols: usize, zoom: i64, color: impl Fn(f32) -> Rgb) {
        for (i, &v) in values.iter().enumerate() {
            let (r, c) = ((i / cols) as i64, (i % cols) as i64);
            self.fill(x + c * zoom, y + r * zoom, zoom, zoom, color(v));
        }
    }

    /// Draws one input image `values` (normalized, of `shape`) at (x, y), each pixel `zoom`×`zoom`, `norm` undone and
    /// each channel's level passed through `level`: grey from the first channel, or colour when there are three (RGB).
    #[allow(clippy::too_many_arguments)]
    pub fn image(
        &mut self,
        x: i64,
        y: i64,
        values: &[f32],
        shape: ImageShape,
        zoom: i64,
        norm: Normalization,
        level: impl Fn(f32) -> f32,
    ) {
        let plane = shape.height * shape.width;
        let value = |ch: usize, i: usize| level(norm.undo(values[ch * plane + i]));
        for i in 0..plane {
            let (r, c) = ((i / shape.width) as i64, (i % shape.width) as i64);
            let color = if shape.channels == 3 {
                let byte = |ch| (value(ch, i).clamp(0.0, 1.0) * 255.0).round() as u8;
                [byte(0), byte(1), byte(2)]
            } else {
                grey(value(0, i))
            };
            self.fill(x + c * zoom, y + r * zoom, zoom, zoom, color);
        }
    }

    /// A filled disc of radius `r` centred on (cx, cy).
    pub fn disc(&mut self, cx: i64, cy: i64, r: i64, c: Rgb) {
        for dy in -r..=r {
            for dx in -r..=r {
                if dx * dx + dy * dy <= r * r + r {
                    self.put(cx + dx, cy + dy, c);
                }
            }
        }
    }

    /// A horizontal colour bar `w`×`h` at (x, y) running through `color` from t = 0 (left) to t = 1 (right).
    pub fn color_bar(&mut self, x: i64, y: i64, w: i64, h: i64, color: impl Fn(f32) -> Rgb) {
        for i in 0..w {
            let t = i as f32 / (w - 1).max(1) as f32;
            self.fill(x + i, y, 1, h, color(t));
        }
        self.frame(x, y, w, h, 1, GREY);
    }

    /// Queues `text` at (x, y), `size` pixels (the font's ascent to descent); drawn by `save`, on top of every pixel.
    pub fn text(&mut self, x: i64, y: i64, text: impl Into<String>, size: f64, color: Rgb, anchor: Anchor) {
        self.labels.push(Label { text: text.into(), at: (x, y), size, color, anchor, upright: false });
    }

    /// Queues `text` turned to read upwards, centred on (x, y) (a y-axis title).
    pub fn text_up(&mut self, x: i64, y: i64, text: impl Into<String>, size: f64, color: Rgb) {
        self.labels.push(Label { text: text.into(), at: (x, y), size, color, anchor: Anchor::Center, upright: true });
    }

    /// Draws the queued text and writes the picture to `path` as a PNG (atomically).
    pub fn save(mut self, path: &Path) -> Result<(), VizError> {
        for label in std::mem::take(&mut self.labels) {
            self.draw_label(&label);
        }
        write_png(path, self.width, self.height, &self.pixels)
    }

    /// Sets one text, glyph by glyph in monospace cells. (plotters' own text drawing puts each glyph's inked box at
    /// the pen position, ignoring its side bearing, so in a monospace font "0.739" would read "0. 739"; here each
    /// glyph's ink is centred in its cell, as the font designs it.)
    fn draw_label(&mut self, l: &Label) {
        // The ink of one glyph drawn at the origin: (min x, max x, min y, max y), None for a blank one.
        let ink = |glyph: char| -> Option<(i32, i32, i32, i32)> {
            let mut b = (i32::MAX, i32::MIN, i32::MAX, i32::MIN);
            for (x, y, a) in font::glyph(glyph, l.size) {
                if a > 0.0 {
                    b = (b.0.min(x), b.1.max(x), b.2.min(y), b.3.max(y));
                }
            }
            if b.0 <= b.1 {
                Some(b)
            } else {
                None
            }
        };
        let advance = advance(l.size);
        let (_, _, cap_top, cap_bottom) = ink('H').unwrap_or((0, 0, 0, l.size as i32));
        let n = l.text.chars().count() as f64;
        let width = (n * advance).round() as i64;
        let dx = match l.anchor {
            Anchor::TopLeft | Anchor::CenterLeft => 0,
            Anchor::TopCenter | Anchor::Center => -width / 2,
            Anchor::TopRight | Anchor::CenterRight => -width,
        };
        let dy = match l.anchor {
            Anchor::TopLeft | Anchor::TopCenter | Anchor::TopRight => -cap_top as i64,
            _ => -((cap_top + cap_bottom) / 2) as i64,
        };
        for (i, ch) in l.text.chars().enumerate() {
            let Some((lo, hi, _, _)) = ink(ch) else { continue };
            let cell = (i as f64 * advance).round() as i64;
            let shift = cell + ((advance - (hi - lo + 1) as f64) / 2.0).round() as i64 - lo as i64;
            for (u, v, a) in font::glyph(ch, l.size) {
                let (u, v) = (u as i64 + shift + dx, v as i64 + dy);
                let (x, y) = if l.upright { (l.at.0 + v, l.at.1 - u) } else { (l.at.0 + u, l.at.1 + v) };
                self.blend(x, y, l.color, a.clamp(0.0, 1.0));
            }
        }
    }
}

/// The advance (cell width) of the monospace font at `size`, in pixels, measured over ten cells (layout boxes are whole
/// pixels): about 0.52 × `size` for DejaVu Sans Mono.
pub fn advance(size: f64) -> f64 {
    font::width("MMMMMMMMMM", size) as f64 / 10.0
}

/// Writes an RGB8 buffer as a PNG (best compression, no row filter: these pictures are flat blocks in a few hundred
/// colours, which deflate alone packs a third smaller than after PNG's adaptive filtering), atomically through
/// `crate::atomic::write_atomic`: the target is either the old file or the whole new one.
pub fn write_png(path: &Path, width: u32, height: u32, rgb: &[u8]) -> Result<(), VizError> {
    let mut png = Vec::new();
    PngEncoder::new_with_quality(&mut png, CompressionType::Best, FilterType::NoFilter)
        .write_image(rgb, width, height, ExtendedColorType::Rgb8)
        .map_err(|source| VizError::Encode { path: path.to_path_buf(), source })?;
    crate::atomic::write_atomic(path, &png).map_err(|e| VizError::Io { path: path.to_path_buf(), source: e.source })
}

/// `t` in [0, 1] rounded to one of `n` evenly spaced levels. Colour maps are drawn in a few dozen steps: the eye cannot
/// tell them from a smooth ramp, and PNG's compression finds far more repeats.
pub fn levels(t: f32, n: u32) -> f32 {
    let k = (n - 1) as f32;
    (t.clamp(0.0, 1.0) * k).round() / k
}

/// Linear interpolation through evenly spaced colour stops, t in [0, 1] (clamped; NaN counts as 0).
fn ramp(stops: &[Rgb], t: f32) -> Rgb {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let f = t * (stops.len() - 1) as f32;
    let i = (f.floor() as usize).min(stops.len() - 2);
    let u = f - i as f32;
    let mix = |a: u8, b: u8| (a as f32 + (b as f32 - a as f32) * u).round() as u8;
    let (a, b) = (stops[i], stops[i + 1]);
    [mix(a[0], b[0]), mix(a[1], b[1]), mix(a[2], b[2])]
}

/// Blue (t = 0, i.e. −scale) through white (t = 0.5, zero) to red (t = 1, +scale): ColorBrewer's RdBu, reversed.
pub fn diverging(t: f32) -> Rgb {
    ramp(&[[5, 48, 97], [67, 147, 195], [247, 247, 247], [214, 96, 77], [103, 0, 31]], t)
}

/// Viridis (dark purple at 0 through teal to yellow at 1), sampled at nine stops.
pub fn viridis(t: f32) -> Rgb {
    ramp(
        &[
            [68, 1, 84],
            [71, 44, 122],
            [59, 81, 139],
            [44, 113, 142],
            [33, 144, 141],
            [39, 173, 129],
            [92, 200, 99],
            [170, 220, 50],
            [253, 231, 37],
        ],
        t,
    )
}

/// Black (0) to white (1).
pub fn grey(t: f32) -> Rgb {
    ramp(&[BLACK, WHITE], t)
}

/// White (0) to dark blue (1): ColorBrewer's Blues.
pub fn blues(t: f32) -> Rgb {
    ramp(&[[247, 251, 255], [198, 219, 239], [107, 174, 214], [33, 113, 181], [8, 48, 107]], t)
}

/// A number for a colour-bar end: three significant digits, no exponent for the usual range of weights.
pub fn short(v: f32) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a >= 0.001 {
        format!("{v:.3}")
    } else {
        format!("{v:.2e}")
    }
}

/// `values`, row-major `h`×`w` planes one after another, box-averaged so that neither side exceeds `max_side` (returned
/// as they are when they fit): the new values, height and width. For maps or images bigger than the slot they are drawn in.
pub fn shrink(values: &[f32], h: usize, w: usize, max_side: usize) -> (Vec<f32>, usize, usize) {
    let side = h.max(w);
    if side <= max_side {
        return (values.to_vec(), h, w);
    }
    let (th, tw) = ((h * max_side).div_ceil(side), (w * max_side).div_ceil(side));
    let mut out = Vec::with_capacity(values.len() / (h * w) * th * tw);
    for plane in values.chunks(h * w) {
        for i in 0..th {
            let rows = i * h / th..((i + 1) * h).div_ceil(th);
            for j in 0..tw {
                let cols = j * w / tw..((j + 1) * w).div_ceil(tw);
                let n = rows.len() * cols.len();
                let sum: f32 = rows.clone().flat_map(|r| plane[r * w..][cols.clone()].iter()).sum();
                out.push(sum / n as f32);
            }
        }
    }
    (out, th, tw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_maps_hit_their_ends_and_centre() {
        assert_eq!(diverging(0.0), [5, 48, 97]);
        assert_eq!(diverging(0.5), [247, 247, 247]);
        assert_eq!(diverging(1.0), [103, 0, 31]);
        assert_eq!(diverging(-3.0), diverging(0.0), "clamped");
        assert_eq!(levels(0.49, 3), 0.5);
        assert_eq!(viridis(f32::NAN), viridis(0.0));
        assert_eq!(grey(1.0), WHITE);
    }

    #[test]
    fn grid_enlarges_each_value_to_a_block() {
        let mut c = Canvas::new(6, 3);
        c.grid(0, 0, &[0.0, 1.0], 2, 3, grey);
        assert_eq!(&c.pixels[..3], &BLACK);
        assert_eq!(&c.pixels[(2 * 6 + 5) * 3..(2 * 6 + 5) * 3 + 3], &WHITE);
        assert_eq!(&c.pixels[(2 * 6 + 2) * 3..(2 * 6 + 2) * 3 + 3], &BLACK);
    }

    #[test]
    fn shrink_averages_boxes_per_plane() {
        // Two 4×2 planes into at most 2 rows: each value the mean of a 2×1 box; fitting planes are kept.
        let v: Vec<f32> = (0..16).map(|i| i as f32).collect();
        let (out, h, w) = shrink(&v, 4, 2, 2);
        assert_eq!((h, w), (2, 1));
        assert_eq!(out, [1.5, 5.5, 9.5, 13.5]);
        assert_eq!(shrink(&v, 4, 2, 4), (v.clone(), 4, 2));
        // 5 into 2: overlapping boxes rows 0..3 and 2..5.
        let (out, h, w) = shrink(&[0.0, 1.0, 2.0, 3.0, 4.0], 5, 1, 2);
        assert_eq!((out, h, w), (vec![1.0, 3.0], 2, 1));
    }

    #[test]
    fn short_numbers() {
        assert_eq!(short(0.33333), "0.333");
        assert_eq!(short(-2.5), "-2.50");
        assert_eq!(short(0.0), "0");
    }
}
