//! Tile shapes of the tiled family's matrix-product kernels (`*_tiled.wgsl`, each with `tile_core.wgsl` appended): a
//! 64-invocation workgroup computes a BM × BN tile of C = A·B; each invocation an RM × 4 block of it, GM invocations
//! along M; KS slices of K inside the workgroup. `choose` picks the shape for a product of M × N (and `split` the
//! number of workgroups a long K is split over) so that a batch of 64 launches enough workgroups to fill a big GPU.

use super::plan::c;

/// A tiled-family `Shader` row: the file with the step block and the shared tile core appended, `WG` invocations, the
/// core's workgroup tiles. `tiled_shader!("file.wgsl", [entry points], [bindings])`.
macro_rules! tiled_shader {
    ($file:literal, [$($entry:literal),+], [$($b:ident),+]) => {
        $crate::gpu::shader::shader!(
            $file + ["step.wgsl", "tile_core.wgsl"],
            [$($entry),+],
            [$($b),+],
            Some($crate::gpu::family::Family::Tiled),
            wg $crate::gpu::ops::tiles::WG,
            shared $crate::gpu::ops::tiles::WORKGROUP_BYTES
        )
    };
}
pub(crate) use tiled_shader;

/// Workgroups a dispatch should launch when it can: two per multiprocessor of a 132-multiprocessor GPU (H100,
/// H200), two waves of one per multiprocessor; smaller GPUs are filled too (BENCHMARKS.md has why not more).
pub const TARGET_GROUPS: u64 = 2 * 132;

/// Invocations per workgroup of every tiled kernel (`WG` in the tile core).
pub const WG: u32 = 64;
/// Words of one of the core's A and B tiles: BK·(BM + 1) and BK·(BN + 1) must fit.
pub const A_WORDS: usize = 528;
pub const B_WORDS: usize = 1040;
/// Largest tile the core's workgroup memory holds.
pub const MAX_BM: u32 = 32;
pub const MAX_BN: u32 = 64;
/// Words of the core's workgroup memory (`tile_mem`): two A and two B tiles (double-buffered), the C tile,
/// MAX_BM·(MAX_BN + 1) words, over them once the product is done.
pub const TILE_WORDS: usize = 2 * (A_WORDS + B_WORDS);
/// Bytes of workgroup memory the tile core declares.
pub const WORKGROUP_BYTES: u32 = 4 * TILE_WORDS as u32;
/// Most values of A and of B one invocation holds in registers for the next step (the core's `pa0`–`pa1`,
/// `pb0`–`pb3`).
pub const MAX_A_LOADS: usize = 8;
pub const MAX_B_LOADS: usize = 16;

const _: () = assert!(TILE_WORDS >= (MAX_BM * (MAX_BN + 1)) as usize);

/// One tile shape (the core's override constants GM, RM, KS, BK; each invocation's block is RM × 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tiles {
    pub gm: u32,
    pub rm: u32,
    pub ks: u32,
    /// Depth of one step through K: 16 unless `deepest` chose more.
    pub bk: u32,
}

/// Columns of an invocation's register block (one vec4).
pub const RN: u32 = 4;

impl Tiles {
    pub const fn new(gm: u32, rm: u32, ks: u32) -> Tiles {
        Tiles { gm, rm, ks, bk: 16 }
    }

    /// The same tiles stepping through K as deep as the workgroup memory allows (up to 64), but not deeper than a
    /// reduction of length `k` needs: fewer steps, fewer barriers for long, thin products.
    pub fn deepest(self, k: usize) -> Tiles {
        let fits = |bk: usize| bk * (self.bm() + 1) <= A_WORDS && bk * (self.bn() + 1) <= B_WORDS;
        let bk = [64, 32, 16].into_iter().find(|&bk| fits(bk) && (bk <= k.max(16))).unwrap_or(16);
        Tiles { bk: bk as u32, ..self }
    }

    /// Invocations along N in one K slice.
    pub fn gn(&self) -> u32 {
        WG / (self.ks * self.gm)
    }

    pub fn bm(&self) -> usize {
        (self.gm * self.rm) as usize
    }

    pub fn bn(&self) -> usize {
        (self.gn() * RN) as usize
    }

    /// Fits the core: 64 invocations, the tile in workgroup memory, register blocks of 1, 2 or 4, slices of BK.
    pub fn valid(&self) -> bool {
        self.ks * self.gm * self.gn() == WG
            && self.bm() as u32 <= MAX_BM
            && self.bn() as u32 <= MAX_BN
            && [1, 2, 4].contains(&self.rm)
            && [16, 32, 64].contains(&self.bk)
            && self.bk.is_multiple_of(self.ks)
            && self.bk as usize * (self.bm() + 1) <= A_WORDS
            && self.bk as usize * (self.bn() + 1) <= B_WORDS
            && (WG as usize).is_multiple_of(self.bm())
            && (WG as usize).is_multiple_of(self.bn())
            && (WG as usize..=MAX_A_LOADS * WG as usize).contains(&(self.bm() * self.bk as usize))
            && (WG as usize..=MAX_B_LOADS * WG as usize).contains(&(self.bn() * self.bk as usize))
    }

    /// Workgroups covering an M × N product.
    pub fn groups(&self, m: usize, n: usize) -> u64 {
        (m.div_ceil(self.bm()) * n.div_ceil(self.bn())) as u64
    }

    /// Multiply-adds including the padding of partial tiles.
    fn padded(&self, m: usize, n: usize) -> usize {
        m.div_ceil(self.bm()) * self.bm() * n.div_ceil(self.bn()) * self.bn()
    }

    /// An estimate of the time the product takes, in units of workgroup-memory reads: each multiply-add of the
    /// padded product reads 1/RN of an A value and 1/RM of a B value.
    fn cost(&self, m: usize, n: usize) -> u64 {
        let (rm, rn) = (self.rm as u64, RN as u64);
        self.padded(m, n) as u64 * (rm + rn) * 16 / (rm * rn)
    }

    pub fn constants(&self) -> [(&'static str, f64); 4] {
        [c("GM", self.gm as usize), c("RM", self.rm as usize), c("KS", self.ks as usize), c("BK", self.bk as usize)]
    }
}

/// The shapes `choose` considers: register blocks of 4, 2 and 1 rows of 4, and for small products slices of K.
pub const CANDIDATES: [Tiles; 11] = [
    Tiles::new(8, 4, 1),  // 32 × 32
    Tiles::new(4, 4, 1),  // 16 × 64
    Tiles::new(16, 2, 1), // 32 × 16
    Tiles::new(8, 2, 1),  // 16 × 32
    Tiles::new(4, 2, 1),  // 8 × 64
    Tiles::new(16, 1, 1), // 16 × 16
    Tiles::new(8, 1, 1),  // 8 × 32
    Tiles::new(32, 1, 1), // 32 × 8
    Tiles::new(4, 4, 4),  // 16 × 16, 4 slices of K
    Tiles::new(4, 1, 4),  // 4 × 16, 4 slices of K
    Tiles::new(2, 2, 16), // 4 × 8, 16 slices of K
];

/// The tile shape for an M × N product: among the shapes that launch at least `TARGET_GROUPS` workgroups, the one
/// with the lowest cost (padding and workgroup-memory reads per multiply-add), then the fewest K slices; if none does,
/// the one that launches the most. `bn_multiple`: BN must be a multiple of it (4 where a tile must hold whole 2×2
/// pooling windows).
pub fn choose(m: usize, n: usize, bn_multiple: usize) -> Tiles {
    let ok: Vec<Tiles> =
        CANDIDATES.iter().copied().filter(|t| t.valid() && t.bn().is_multiple_of(bn_multiple.max(1))).collect();
    let key = |t: &Tiles| (t.cost(m, n), t.ks);
    // Slices of K only where no shape without them fills the GPU.
    for sliced in [false, true] {
        let filling = ok.iter().filter(|t| (t.ks > 1) == sliced && t.groups(m, n) >= TARGET_GROUPS);
        if let Some(t) = filling.min_by_key(|t| key(t)) {
            return *t;
        }
    }
    *ok.iter().max_by_key(|t| (t.groups(m, n), std::cmp::Reverse(key(t)))).expect("a valid tile shape")
}

/// The tile shape and split for an M × N product whose K (`k` long) is split over workgroups: the cheapest shape
/// without slices that launches at least `TARGET_GROUPS` workgroups once split (`split`), else the one that launches
/// the most.
pub fn choose_split(m: usize, n: usize, k: usize) -> (Tiles, usize) {
    let mut shapes: Vec<Tiles> = CANDIDATES.iter().copied().filter(|t| t.valid() && t.ks == 1).collect();
    shapes.sort_by_key(|t| t.cost(m, n));
    let launched = |t: &Tiles| t.groups(m, n) * split(t.groups(m, n), k) as u64;
    let t = match shapes.iter().find(|t| launched(t) >= TARGET_GROUPS) {
        Some(t) => *t,
        None => *shapes.iter().max_by_key(|t| launched(t)).expect("a valid tile shape"),
    };
    (t, split(t.groups(m, n), k))
}

/// Shortest piece of K one workgroup of a split product takes.
pub const MIN_SPLIT_K: usize = 64;

/// Longest piece of K one workgroup of a split product takes: a workgroup's steps through K run one after another
/// (load, barrier, multiply), so a long piece is a long serial chain however many workgroups run beside it.
pub const MAX_SPLIT_K: usize = 1024;

/// Most steps through K one workgroup of a product should take (`steps`): 1,024 of K in steps of 16.
pub const MAX_STEPS: u64 = 64;

/// Workgroups a K-long reduction is split over: enough for `tiles` tiles to launch at least `TARGET_GROUPS`
/// workgroups, and for none to take more than `MAX_SPLIT_K` of K; none taking less than `MIN_SPLIT_K`.
pub fn split(tiles: u64, k: usize) -> usize {
    let fill = TARGET_GROUPS.div_ceil(tiles.max(1)) as usize;
    fill.max(k.div_ceil(MAX_SPLIT_K)).min(k / MIN_SPLIT_K).max(1)
}

/// Steps one workgroup takes through its piece of a K-long reduction split `split` ways with tiles `t` (the kernels'
/// `chunk`: the piece rounded up to whole steps).
pub fn steps(t: Tiles, k: usize, split: usize) -> u64 {
    k.div_ceil(split.max(1)).div_ceil(t.bk as usize) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_candidate_fits_the_core() {
        for t in CANDIDATES {
            assert!(t.valid(), "{t:?}");
            assert!(t.deepest(1 << 20).valid(), "{:?}", t.deepest(1 << 20));
        }
        // Small tiles step deeper: a 4 × 8 tile over 1,568 takes 25 steps of 64 instead of 98 of 16.
        assert_eq!(Tiles::new(2, 2, 16).deepest(1568).bk, 64);
        assert_eq!(Tiles::new(8, 4, 1).deepest(1568).bk, 16);
        assert_eq!(Tiles::new(4, 1, 4).deepest(9).bk, 16);
    }

    #[test]
    fn small_products_get_more_workgroups() {
        // fc1 forward at batch 64: 64 × 128 outputs over K = 1568 would be 8 tiles of 32 × 32; split over K, 16 × 32
        // tiles launch 384.
        let (t, s) = choose_split(64, 128, 1568);
        assert!(t.groups(64, 128) * s as u64 >= TARGET_GROUPS, "{t:?} split {s}");
        // A big product keeps the big register block.
        let t = choose(32, 64 * 1024 * 196, 4);
        assert_eq!(t.rm, 4, "{t:?}");
        assert!(t.bn().is_multiple_of(4));
    }

    #[test]
    fn the_network_gets_the_tiles_worked_out_by_hand() {
        // conv1 forward at batch 64: 16 channels × 50,176 pixels in 16 × 64 tiles, 784 workgroups.
        assert_eq!(choose(16, 64 * 784, 4), Tiles::new(4, 4, 1));
        // conv2's, 32 × 12,544: 32 × 32 tiles, 392 workgroups.
        assert_eq!(choose(32, 64 * 196, 4), Tiles::new(8, 4, 1));
        // conv2's weight gradient at batch 64, 32 × 145 over 12,544 pixels: a row of 32 × 32 tiles split 53 ways.
        assert_eq!(choose_split(32, 145, 64 * 196), (Tiles::new(8, 4, 1), 53));
        // fc1's forward at batch 64, 64 × 128 over 1,568: 32 × 16 tiles split 17 ways.
        assert_eq!(choose_split(64, 128, 1568), (Tiles::new(16, 2, 1), 17));
    }

    #[test]
    fn split_fills_and_stays_within_k() {
        assert_eq!(split(1, 50_176), 264);
        assert_eq!(split(5, 12_544), 53);
        assert_eq!(split(5, 300), 4);
        // Long reductions are cut into pieces of at most MAX_SPLIT_K, however many tiles there are.
        assert_eq!(split(400, 1_000_000), 977);
        assert_eq!(split(400, 1_024), 1);
        // conv2's weight gradient at batch 1024: 200,704 pixels in 196 pieces of 1,024, not 53 of 3,787.
        assert_eq!(split(5, 1024 * 196), 196);
        assert_eq!(steps(Tiles::new(8, 4, 1), 1024 * 196, 196), 64);
    }
}
