//! Shared fixtures for the benchmarks: table sizes from the environment, the data directory, and
//! the random access pattern.

use std::path::PathBuf;

/// The number of tokens named by environment variable `var` (default `default`).
pub fn token_count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `target/bench-data/`, created if missing: large tables are built once and cached here.
pub fn data_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data");
    std::fs::create_dir_all(&dir).expect("bench data dir");
    dir
}

/// A small deterministic generator for the random access pattern (xorshift64*).
///
/// ```
/// let mut walk = benches::Walk(0x9E37_79B9_7F4A_7C15);
/// assert!((0..100).all(|_| walk.next_index(10) < 10));
/// ```
pub struct Walk(pub u64);

impl Walk {
    /// The next index in `0..len`.
    pub fn next_index(&mut self, len: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % len as u64) as usize
    }
}
