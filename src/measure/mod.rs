//! Measuring an adapter: `bench` (training and inference throughput, start-up, per-kernel times, on one adapter or
//! all of them), `peak` (what the adapter can do at most), their statistics (`stats`), where and when they were taken
//! (`host`), and their tables (`tables`).

pub mod bench;
pub mod host;
pub mod peak;
pub mod stats;
pub mod tables;
