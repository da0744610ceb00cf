//! The pictures' one font, the embedded DejaVu Sans Mono, rasterized with ab_glyph directly: the same outlines and
//! coverage plotters' ab_glyph back end produces (so the native pictures are unchanged), and the same in a browser
//! (wasm32), where plotters has no rasterizer of its own and leaves text to an HTML canvas.

use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, ScaleFont};

static FONT_BYTES: &[u8] = include_bytes!("DejaVuSansMono.ttf");

fn font() -> &'static FontRef<'static> {
    static FONT: OnceLock<FontRef<'static>> = OnceLock::new();
    // The bytes are compiled in and known good: a failure here is a broken build, caught by every picture test.
    FONT.get_or_init(|| FontRef::try_from_slice(FONT_BYTES).expect("the embedded DejaVuSansMono.ttf parses"))
}

/// The ink of `ch` at `size` pixels, as (x, y, coverage) relative to the pen position, the top of the line at y = 0
/// and size/2 below it the middle (plotters' convention). Nothing for a blank glyph.
pub fn glyph(ch: char, size: f64) -> Vec<(i32, i32, f32)> {
    let font = font().as_scaled(size as f32);
    let mut dots = Vec::new();
    if let Some(outline) = font.outline_glyph(font.scaled_glyph(ch)) {
        let y_shift = ((size as f32) / 2.0 + outline.px_bounds().min.y) as i32;
        outline.draw(|x, y, c| dots.push((x as i32, y as i32 + y_shift, c)));
    }
    dots
}

/// The width in pixels of `text` set at `size`, whole pixels (advances plus kerning).
pub fn width(text: &str, size: f64) -> i32 {
    let font = font().as_scaled(size as f32);
    let mut x = 0f32;
    let mut prev = None;
    for c in text.chars() {
        let id = font.glyph_id(c);
        x += font.h_advance(id);
        if let Some(p) = prev {
            x += font.kern(p, id);
        }
        prev = Some(id);
    }
    x as i32
}
