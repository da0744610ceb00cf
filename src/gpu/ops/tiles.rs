//! Tile shapes of the tiled family's matrix-product kernels (`*_tiled.wgsl`, their shared "tile core"): a
//! 64-invocation workgroup computes a BM × BN tile of C = A·B; each invocation an RM × RN block of it, GM invocations
//! along M; KS slices of K inside the workgroup. `choose` picks the shape for a product of M × N (and `split` the
//! number of workgroups a long K is split over) so that a batch of 64 launches enough workgroups to fill a big GPU.

use super::c;

/// Workgroups a dispatch should launch when it can: two per multiprocessor of a 132-multiprocessor GPU (H100, H200),
/// i.e. two waves of one workgroup per multiprocessor. Smaller GPUs are filled too.
pub const TARGET_GROUPS: u64 = 264;

/// Invocations per workgroup of every tiled kernel (`WG` in the tile core).
pub const WG: u32 = 64;
/// Depth of one step through K (`BK` in the tile core).
pub const BK: usize = 16;
/// Largest tile the core's workgroup memory holds.
pub const MAX_BM: u32 = 32;
pub const MAX_BN: u32 = 64;
/// Bytes of workgroup memory the tile core declares: a_tile 528 + b_tile 1040 + c_tile 2080 floats.
pub const WORKGROUP_BYTES: u32 = 4 * (528 + 1040 + 2080);

/// One tile shape (the core's override constants GM, RM, RN, KS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tiles {
    pub gm: u32,
    pub rm: u32,
    pub rn: u32,
    pub ks: u32,
}

impl Tiles {
    pub const fn new(gm: u32, rm: u32, rn: u32, ks: u32) -> Tiles {
        Tiles { gm, rm, rn, ks }
    }

    /// Invocations along N in one K slice.
    pub fn gn(&self) -> u32 {
        WG / (self.ks * self.gm)
    }

    pub fn bm(&self) -> usize {
        (self.gm * self.rm) as usize
    }

    pub fn bn(&self) -> usize {
        (self.gn() * self.rn) as usize
    }

    /// Fits the core: 64 invocations, the tile in workgroup memory, at most 16 accumulators, slices of BK.
    pub fn valid(&self) -> bool {
        self.ks * self.gm * self.gn() == WG
            && self.bm() as u32 <= MAX_BM
            && self.bn() as u32 <= MAX_BN
            && self.rm * self.rn <= 16
            && (BK as u32).is_multiple_of(self.ks)
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
        let (rm, rn) = (self.rm as u64, self.rn as u64);
        self.padded(m, n) as u64 * (rm + rn) * 16 / (rm * rn)
    }

    pub fn constants(&self) -> [(&'static str, f64); 4] {
        [c("GM", self.gm as usize), c("RM", self.rm as usize), c("RN", self.rn as usize), c("KS", self.ks as usize)]
    }
}

/// The shapes `choose` considers: register blocks from 4 × 4 down to 1 × 1, and for small products slices of K.
pub const CANDIDATES: [Tiles; 10] = [
    Tiles::new(8, 4, 4, 1),  // 32 × 32
    Tiles::new(4, 4, 4, 1),  // 16 × 64
    Tiles::new(8, 4, 2, 1),  // 32 × 16
    Tiles::new(4, 4, 2, 1),  // 16 × 32
    Tiles::new(8, 2, 4, 1),  // 16 × 32
    Tiles::new(8, 2, 2, 1),  // 16 × 16
    Tiles::new(4, 2, 4, 1),  // 8 × 64
    Tiles::new(8, 1, 1, 1),  // 8 × 8
    Tiles::new(4, 1, 1, 4),  // 4 × 4, 4 slices of K
    Tiles::new(2, 1, 1, 16), // 2 × 2, 16 slices of K
];

/// The tile shape for an M × N product: among the shapes that launch at least `TARGET_GROUPS` workgroups, the one
/// with the lowest cost (padding and workgroup-memory reads per multiply-add), then the fewest K slices; if none does,
/// the one that launches the most. `bn_multiple`: BN must be a multiple of it (4 where a tile must hold whole 2×2
/// pooling windows).
pub fn choose(m: usize, n: usize, bn_multiple: usize) -> Tiles {
    let ok: Vec<Tiles> =
        CANDIDATES.iter().copied().filter(|t| t.valid() && t.bn().is_multiple_of(bn_multiple.max(1))).collect();
    let key = |t: &Tiles| (t.cost(m, n), t.ks);
    let filling: Vec<Tiles> = ok.iter().copied().filter(|t| t.groups(m, n) >= TARGET_GROUPS).collect();
    if let Some(t) = filling.iter().min_by_key(|t| key(t)) {
        return *t;
    }
    *ok.iter().max_by_key(|t| (t.groups(m, n), std::cmp::Reverse(key(t)))).expect("a valid tile shape")
}

/// The tile shape for a product whose K is split over workgroups (`split`): no slices, the lowest cost.
pub fn choose_for_split(m: usize, n: usize) -> Tiles {
    *CANDIDATES.iter().filter(|t| t.valid() && t.ks == 1).min_by_key(|t| t.cost(m, n)).expect("a valid tile shape")
}

/// Shortest piece of K one workgroup of a split product takes.
pub const MIN_SPLIT_K: usize = 128;

/// Workgroups a K-long reduction is split over so that `tiles` tiles launch at least `TARGET_GROUPS` workgroups, each
/// taking at least `MIN_SPLIT_K` of K.
pub fn split(tiles: u64, k: usize) -> usize {
    let want = TARGET_GROUPS.div_ceil(tiles.max(1)) as usize;
    want.min(k / MIN_SPLIT_K).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_candidate_fits_the_core() {
        for t in CANDIDATES {
            assert!(t.valid(), "{t:?}");
        }
    }

    #[test]
    fn small_products_get_more_workgroups() {
        // fc1 forward at batch 64: 64 × 128 outputs over K = 1568 would be 8 tiles of 32 × 32.
        let t = choose(64, 128, 1);
        assert!(t.groups(64, 128) >= TARGET_GROUPS, "{t:?}");
        // A big product keeps the big register block.
        let t = choose(32, 64 * 1024 * 196, 4);
        assert_eq!(t.rm * t.rn, 16, "{t:?}");
        assert!(t.bn().is_multiple_of(4));
    }

    #[test]
    fn the_network_gets_the_tiles_worked_out_by_hand() {
        // conv1 forward at batch 64: 16 channels × 50,176 pixels, 16 × 64 tiles, no padding.
        assert_eq!(choose(16, 64 * 784, 4), Tiles::new(4, 4, 4, 1));
        // conv2's weight gradient, 32 × 145, split over the batch: one row of 32 × 32 tiles.
        assert_eq!(choose_for_split(32, 145), Tiles::new(8, 4, 4, 1));
        // conv1's, 16 × 10: a 16 × 16 tile.
        assert_eq!(choose_for_split(16, 10), Tiles::new(8, 2, 2, 1));
    }

    #[test]
    fn split_fills_and_stays_within_k() {
        assert_eq!(split(1, 50_176), 264);
        assert_eq!(split(5, 12_544), 53);
        assert_eq!(split(5, 300), 2);
        assert_eq!(split(400, 1_000_000), 1);
    }
}
