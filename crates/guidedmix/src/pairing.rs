//! The mixing coefficient λ and the labelled–unlabelled pairs `(l_k, u_k)`.

use candle_core::{DType, Tensor};
use core_seg::rng::SegRng;
use core_seg::Result;

/// The code's `λ`: `λ₀ ~ Beta(1, 1) = U(0, 1)`, `λ = min(λ₀, 1 − λ₀)`, redrawn while `λ ≥ lambda_factor`; so
/// `λ ~ U(0, min(0.5, lambda_factor))` and the unlabelled image always weighs at least ½.
pub fn sample_lambda(rng: &mut SegRng, lambda_factor: f64) -> Result<f64> {
    if !(lambda_factor > 0.0 && lambda_factor.is_finite()) {
        core_seg::bail_arg!("lambda_factor must be > 0, got {lambda_factor}");
    }
    loop {
        let l0 = rng.uniform();
        let l = l0.min(1.0 - l0);
        if l < lambda_factor {
            return Ok(l);
        }
    }
}

/// The code's pairs: a random permutation of the batch, `(k, perm[k])` for `k = 0..B` (needs `B_l = B_u`).
pub fn random_pairs(rng: &mut SegRng, n_labeled: usize, n_unlabeled: usize) -> Result<Vec<(usize, usize)>> {
    if n_labeled != n_unlabeled || n_labeled == 0 {
        core_seg::bail_arg!(
            "random pairing needs equal non-empty batches, got {n_labeled} labelled and {n_unlabeled} unlabelled"
        );
    }
    let mut perm: Vec<usize> = (0..n_unlabeled).collect();
    rng.shuffle(&mut perm);
    Ok(perm.into_iter().enumerate().collect())
}

/// Global average pooling `[N, C, h, w] → [N, C]`.
pub fn gap(x: &Tensor) -> Result<Tensor> {
    Ok(x.mean((2, 3))?)
}

/// `cos(a_i, b_i)` row by row for `[N, C]` inputs: `Σ a·b / sqrt(‖a‖²·‖b‖² + 1e-12)`.
pub fn row_cosine(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let dot = (a * b)?.sum(1)?;
    let den = ((a.sqr()?.sum(1)? * b.sqr()?.sum(1)?)? + 1e-12)?.sqrt()?;
    Ok((dot / den)?)
}

/// The paper reading: for every unlabelled `j`, `l(j) = argmax_i cos(g_u[j], g_l[i])` (the first maximum;
/// a labelled image may serve several unlabelled ones); pairs `(l(j), j)`. `g_l [B_l, C]`, `g_u [B_u, C]`.
pub fn similar_pairs(g_l: &Tensor, g_u: &Tensor) -> Result<Vec<(usize, usize)>> {
    let (nl, c) = g_l.dims2()?;
    let (nu, cu) = g_u.dims2()?;
    if c != cu || nl == 0 {
        core_seg::bail_arg!("similar pairing: labelled {:?} vs unlabelled {:?}", g_l.dims(), g_u.dims());
    }
    let host = |t: &Tensor| -> Result<Vec<Vec<f64>>> { Ok(t.detach().to_dtype(DType::F64)?.to_vec2::<f64>()?) };
    let (l, u) = (host(g_l)?, host(g_u)?);
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
    let mut pairs = Vec::with_capacity(nu);
    for (j, uj) in u.iter().enumerate() {
        let mut best = (0, f64::NEG_INFINITY);
        for (i, li) in l.iter().enumerate() {
            let cos = li.iter().zip(uj).map(|(a, b)| a * b).sum::<f64>() / (norm(li) * norm(uj));
            if cos > best.1 {
                best = (i, cos);
            }
        }
        pairs.push((best.0, j));
    }
    Ok(pairs)
}

/// Row-index tensors `(l_k)`, `(u_k)` of the pairs, for `index_select`.
pub fn pair_indices(pairs: &[(usize, usize)], dev: &candle_core::Device) -> Result<(Tensor, Tensor)> {
    let l: Vec<u32> = pairs.iter().map(|p| p.0 as u32).collect();
    let u: Vec<u32> = pairs.iter().map(|p| p.1 as u32).collect();
    Ok((Tensor::new(l, dev)?, Tensor::new(u, dev)?))
}

/// Feature alignment of the pairs: `L_align = mean_k (1 − cos(g_l[l_k], g_u[u_k]))`.
pub fn align_loss(g_l: &Tensor, g_u: &Tensor, l_idx: &Tensor, u_idx: &Tensor) -> Result<Tensor> {
    let cos = row_cosine(&g_l.index_select(l_idx, 0)?, &g_u.index_select(u_idx, 0)?)?;
    Ok((1.0 - cos)?.mean_all()?)
}
