//! Helpers shared by the tv-loss integration tests.

/// `n` deterministic values in [-2, 2): logits and images for the gradient checks.
pub fn values(n: usize, seed: u64) -> Vec<f64> {
    core_seg::testing::uniform_values(n, seed, -2.0, 2.0)
}
