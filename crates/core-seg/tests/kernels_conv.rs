//! `kernels::conv2d` vs an independent naive direct convolution (forward, input and weight gradients) in
//! f64, vs Candle's conv forward, f32 vs f64, and central finite differences.

#[path = "kernels_common/mod.rs"]
mod common;

use candle_core::{DType, Tensor, Var};
use common::conv::{check, check_with, naive, p, Case};
use common::{assert_close, rand_t, vec_of};
use core_seg::kernels::{self, ConvAlgo, WinogradTile};

#[test]
fn conv_3x3_odd_sizes_and_batches() {
    for (i, &(n, h, w)) in [(1, 7, 9), (2, 5, 6), (3, 9, 7), (4, 6, 6)].iter().enumerate() {
        let c = Case { n, cin: 3, h, w, cout: 5, kh: 3, kw: 3, p: p(1, 1, 1, 1) };
        check(c, 10 + i as u64 * 7);
    }
}

#[test]
fn conv_stride2_mixed_parity() {
    for (i, &(h, w)) in [(8, 7), (7, 8), (9, 6), (7, 7)].iter().enumerate() {
        let c = Case { n: 2, cin: 3, h, w, cout: 4, kh: 3, kw: 3, p: p(2, 1, 1, 1) };
        check(c, 100 + i as u64 * 7);
    }
    // stride 2 with dilation 2
    let c = Case { n: 2, cin: 2, h: 11, w: 8, cout: 3, kh: 3, kw: 3, p: p(2, 2, 2, 1) };
    check(c, 150);
}

#[test]
fn conv_dead_taps() {
    // Only some kernel taps ever touch the image: the GEMM runs over the live window only.
    check(Case { n: 2, cin: 3, h: 8, w: 8, cout: 4, kh: 3, kw: 3, p: p(1, 12, 12, 1) }, 250);
    check(Case { n: 2, cin: 2, h: 5, w: 9, cout: 3, kh: 3, kw: 3, p: p(1, 6, 6, 1) }, 251);
    check(Case { n: 3, cin: 2, h: 4, w: 6, cout: 2, kh: 5, kw: 3, p: p(1, 4, 2, 1) }, 252);
    // No live tap at all (1×1, stride 2, pad 1 on a single row): output and gradients are zero.
    check(Case { n: 2, cin: 2, h: 1, w: 3, cout: 2, kh: 1, kw: 1, p: p(2, 1, 1, 1) }, 253);
}

#[test]
fn conv_dilation_18_small_map() {
    let c = Case { n: 2, cin: 4, h: 12, w: 12, cout: 3, kh: 3, kw: 3, p: p(1, 18, 18, 1) };
    check(c, 200);
    let c = Case { n: 1, cin: 3, h: 9, w: 12, cout: 2, kh: 3, kw: 3, p: p(1, 12, 12, 1) };
    check(c, 210);
}

#[test]
fn conv_groups_and_depthwise() {
    let c = Case { n: 2, cin: 4, h: 7, w: 6, cout: 6, kh: 3, kw: 3, p: p(1, 1, 1, 2) };
    check(c, 300);
    let c = Case { n: 3, cin: 4, h: 9, w: 8, cout: 4, kh: 3, kw: 3, p: p(1, 2, 2, 4) };
    check(c, 310);
    let c = Case { n: 2, cin: 6, h: 8, w: 7, cout: 12, kh: 3, kw: 3, p: p(2, 1, 1, 6) };
    check(c, 320);
}

#[test]
fn conv_1x1_and_7x7() {
    // pointwise fast path (batch 4 and odd batch 3)
    check(Case { n: 4, cin: 5, h: 6, w: 7, cout: 3, kh: 1, kw: 1, p: p(1, 0, 1, 1) }, 400);
    check(Case { n: 3, cin: 4, h: 5, w: 5, cout: 6, kh: 1, kw: 1, p: p(1, 0, 1, 2) }, 405);
    // 1×1 stride 2 (ResNet downsample), odd size
    check(Case { n: 2, cin: 4, h: 9, w: 8, cout: 6, kh: 1, kw: 1, p: p(2, 0, 1, 1) }, 410);
    // 7×7 stride 2 pad 3 (ResNet stem)
    check(Case { n: 2, cin: 3, h: 13, w: 10, cout: 4, kh: 7, kw: 7, p: p(2, 3, 1, 1) }, 420);
    // non-square kernel
    check(Case { n: 2, cin: 3, h: 6, w: 7, cout: 2, kh: 1, kw: 3, p: p(1, 1, 1, 1) }, 430);
}

#[test]
fn conv_winograd_f2_and_f4() {
    // 3×3 stride 1, pad 0/1/2: odd sizes with H ≠ W, maps smaller than one tile, rows wider than the 8 tiles
    // a transform handles at once, channel counts that are not multiples of 8.
    for (t, tile) in [WinogradTile::F2, WinogradTile::F4].into_iter().enumerate() {
        let a = ConvAlgo::Winograd(tile);
        let s = 700 + 50 * t as u64;
        check_with(Case { n: 2, cin: 3, h: 7, w: 9, cout: 5, kh: 3, kw: 3, p: p(1, 1, 1, 1) }, s, a);
        check_with(Case { n: 1, cin: 9, h: 5, w: 38, cout: 3, kh: 3, kw: 3, p: p(1, 0, 1, 1) }, s + 1, a);
        check_with(Case { n: 3, cin: 2, h: 11, w: 6, cout: 10, kh: 3, kw: 3, p: p(1, 2, 1, 1) }, s + 2, a);
        check_with(Case { n: 2, cin: 4, h: 2, w: 3, cout: 3, kh: 3, kw: 3, p: p(1, 1, 1, 1) }, s + 3, a);
        check_with(Case { n: 1, cin: 17, h: 3, w: 3, cout: 2, kh: 3, kw: 3, p: p(1, 0, 1, 1) }, s + 4, a);
    }
    let a = ConvAlgo::Winograd(WinogradTile::F4);
    check_with(Case { n: 2, cin: 3, h: 9, w: 8, cout: 4, kh: 3, kw: 3, p: p(2, 1, 1, 1) }, 810, a);
}

/// `Auto` picks Winograd F(4,3) from 64 channels and 32² outputs (bit-identical to the explicit F(4,3) run,
/// and different in rounding from the direct path), direct below.
#[test]
fn conv_auto_takes_winograd_on_large_maps() {
    let w = rand_t(&[64, 64, 3, 3], 801);
    let run = |x: &Tensor, a| vec_of(&kernels::conv2d_with(x, &w, p(1, 1, 1, 1), a).unwrap());
    let f4 = ConvAlgo::Winograd(WinogradTile::F4);
    let x = rand_t(&[1, 64, 33, 32], 800);
    let (auto, wino, direct) = (run(&x, ConvAlgo::Auto), run(&x, f4), run(&x, ConvAlgo::Direct));
    assert_eq!(auto, wino);
    assert_ne!(wino, direct);
    assert_close("F(4,3) vs direct", &wino, &direct, 1e-12);
    let x = rand_t(&[1, 64, 33, 31], 802);
    assert_eq!(run(&x, ConvAlgo::Auto), run(&x, ConvAlgo::Direct));
}

/// Dilated kernels on small maps run by output regions, over the taps that touch the image only: exact against
/// the naive f64 convolution and finite differences at dilation 2, 3, 4 and 6, odd and unequal sizes, stride 2
/// with H and W of different parity, channel counts that are no multiple of a vector, one image and several;
/// and equal to plain im2col (`Direct`), which multiplies the padding taps by zero.
#[test]
fn conv_dilated_small_maps_run_by_regions() {
    check(Case { n: 2, cin: 5, h: 6, w: 5, cout: 17, kh: 3, kw: 3, p: p(1, 3, 3, 1) }, 900);
    check(Case { n: 2, cin: 3, h: 4, w: 5, cout: 5, kh: 3, kw: 3, p: p(1, 2, 2, 1) }, 906);
    check(Case { n: 3, cin: 3, h: 8, w: 8, cout: 4, kh: 3, kw: 3, p: p(1, 4, 4, 1) }, 901);
    check(Case { n: 1, cin: 4, h: 7, w: 9, cout: 3, kh: 3, kw: 3, p: p(1, 6, 6, 1) }, 902);
    check(Case { n: 2, cin: 3, h: 10, w: 7, cout: 5, kh: 3, kw: 3, p: p(1, 6, 6, 1) }, 903);
    check(Case { n: 2, cin: 2, h: 9, w: 12, cout: 3, kh: 3, kw: 3, p: p(2, 4, 4, 1) }, 904);
    check(Case { n: 2, cin: 3, h: 6, w: 9, cout: 2, kh: 5, kw: 3, p: p(1, 4, 2, 1) }, 905);
    let w = rand_t(&[6, 5, 3, 3], 910);
    let x = rand_t(&[2, 5, 8, 8], 911);
    let run = |c, a| vec_of(&kernels::conv2d_with(&x, &w, c, a).unwrap());
    for c in [p(1, 3, 3, 1), p(1, 4, 4, 1), p(1, 6, 6, 1), p(2, 4, 4, 1)] {
        assert_close(&format!("regions vs im2col {c:?}"), &run(c, ConvAlgo::Auto), &run(c, ConvAlgo::Direct), 1e-12);
    }
}

#[test]
fn conv_bad_shapes_are_errors() {
    let x = rand_t(&[1, 3, 4, 4], 1);
    let w = rand_t(&[2, 2, 3, 3], 2);
    let e = kernels::conv2d(&x, &w, p(1, 1, 1, 1)).unwrap_err();
    assert!(e.to_string().contains("kernels::conv2d"), "{e}");
    let w = rand_t(&[2, 3, 7, 7], 3);
    assert!(kernels::conv2d(&x, &w, p(1, 0, 1, 1)).is_err());
    let w = rand_t(&[2, 3, 3, 3], 3);
    assert!(kernels::conv2d(&x, &w, p(0, 0, 1, 1)).is_err());
    // No input channels, or an empty image: an error naming the op, on every path (per-image, batched, depthwise).
    for (xs, ws, groups) in
        [([2, 0, 24, 24], [2, 0, 3, 3], 1), ([4, 0, 4, 4], [2, 0, 1, 1], 1), ([2, 3, 0, 5], [3, 1, 1, 1], 3)]
    {
        let (x, w) = (rand_t(&xs, 4), rand_t(&ws, 5));
        let e = kernels::conv2d(&x, &w, p(1, 1, 1, groups)).unwrap_err();
        assert!(e.to_string().contains("empty input"), "{xs:?}: {e}");
    }
}

#[test]
fn conv_large_maps_take_the_per_image_paths() {
    // P ≥ 256 output pixels: per-image GEMMs (batch-parallel for n = 2 and 4, GEMM-parallel for n = 3).
    check(Case { n: 2, cin: 3, h: 24, w: 23, cout: 4, kh: 3, kw: 3, p: p(1, 1, 1, 1) }, 500);
    check(Case { n: 3, cin: 4, h: 25, w: 24, cout: 6, kh: 3, kw: 3, p: p(1, 1, 1, 2) }, 510);
    check(Case { n: 4, cin: 3, h: 24, w: 24, cout: 2, kh: 1, kw: 1, p: p(1, 0, 1, 1) }, 520);
    check(Case { n: 2, cin: 2, h: 51, w: 48, cout: 3, kh: 7, kw: 7, p: p(2, 3, 1, 1) }, 530);
    check(Case { n: 1, cin: 2, h: 30, w: 31, cout: 3, kh: 3, kw: 3, p: p(1, 2, 2, 1) }, 540);
}

#[test]
fn conv_weight_gradient_in_both_gemm_orientations() {
    // Per-image weight gradients run as dWᵀ = cols·dyᵀ when Cout_g ≤ 64 and K_g ≥ 4·Cout_g, else as
    // dW = dy·colsᵀ: both, with odd sizes, groups, pointwise convs, batch- and GEMM-parallel splits.
    check(Case { n: 2, cin: 9, h: 17, w: 16, cout: 2, kh: 1, kw: 1, p: p(1, 0, 1, 1) }, 600); // 1×1, dWᵀ
    check(Case { n: 3, cin: 8, h: 17, w: 16, cout: 4, kh: 1, kw: 1, p: p(1, 0, 1, 2) }, 610); // 1×1 groups, dWᵀ
    check(Case { n: 2, cin: 1, h: 19, w: 17, cout: 3, kh: 3, kw: 3, p: p(1, 1, 1, 1) }, 620); // K = 9 < 12: dW
    check(Case { n: 3, cin: 2, h: 17, w: 18, cout: 6, kh: 3, kw: 3, p: p(1, 1, 1, 2) }, 630); // K_g = 9 < 12: dW
    check(Case { n: 1, cin: 5, h: 23, w: 21, cout: 7, kh: 3, kw: 3, p: p(1, 2, 2, 1) }, 640); // dWᵀ, one image
    check(Case { n: 2, cin: 2, h: 16, w: 17, cout: 65, kh: 3, kw: 3, p: p(1, 1, 1, 1) }, 650);
    // Cout > 64: dW
}

#[test]
fn conv_skips_gradients_of_untracked_inputs() {
    let x = rand_t(&[2, 3, 6, 5], 7);
    let w = Var::from_tensor(&rand_t(&[4, 3, 3, 3], 8)).unwrap();
    let y = kernels::conv2d(&x, w.as_tensor(), p(2, 1, 1, 1)).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    assert!(g.get(&x).is_none());
    let dw = vec_of(g.get(w.as_tensor()).unwrap());
    let (_, _, dw_ref) = naive(
        &Case { n: 2, cin: 3, h: 6, w: 5, cout: 4, kh: 3, kw: 3, p: p(2, 1, 1, 1) },
        &vec_of(&x),
        &vec_of(w.as_tensor()),
        &vec![1.0; 2 * 4 * 3 * 3],
    );
    assert_close("dw only", &dw, &dw_ref, 1e-10);
}

#[test]
fn conv_dtype_mismatch_is_an_error() {
    let x = rand_t(&[1, 2, 4, 4], 1);
    let w = rand_t(&[2, 2, 3, 3], 2).to_dtype(DType::F32).unwrap();
    let e = kernels::conv2d(&x, &w, p(1, 1, 1, 1)).unwrap_err();
    assert!(e.to_string().contains("dtype"), "{e}");
}

/// Stride-1 input gradients with at least 16 input channels per group run as the forward convolution of `dy`
/// with the flipped, transposed weight: exact against the naive f64 convolution and finite differences for
/// "same" padding at dilation 1, 2 and 4 (the shifted-plane im2col), "valid" padding, a 5×3-padded 5×5 kernel,
/// groups, odd and unequal sizes, channel counts that are no multiple of a vector, small (batch-concatenated)
/// and large (per-image) maps; and equal to GEMM + col2im (`Direct`).
#[test]
fn conv_input_gradient_as_flipped_forward() {
    // (n, cin, h, w, cout, k, stride/padding/dilation/groups)
    let cases = [
        (2, 17, 7, 9, 5, 3, p(1, 1, 1, 1)),
        (3, 19, 9, 6, 6, 3, p(1, 2, 2, 1)),
        (2, 16, 11, 10, 3, 3, p(1, 4, 4, 1)),
        (2, 18, 8, 7, 4, 3, p(1, 0, 1, 1)),
        (1, 16, 9, 8, 3, 5, p(1, 3, 1, 1)),
        (2, 34, 7, 7, 6, 3, p(1, 1, 1, 2)),
        (2, 17, 20, 18, 5, 3, p(1, 1, 1, 1)),
        (3, 16, 17, 16, 2, 3, p(1, 2, 2, 1)),
    ];
    for (i, (n, cin, h, w, cout, k, p)) in cases.into_iter().enumerate() {
        check(Case { n, cin, h, w, cout, kh: k, kw: k, p }, 1000 + i as u64);
    }
    let w = rand_t(&[5, 17, 3, 3], 1011);
    // 13×11: at dilation 4 more than half of the tap positions read the image, so this layer takes the flipped
    // forward rather than the output regions (on 9×7 it would run by regions and not test this path).
    let dy = rand_t(&[2, 5, 13, 11], 1012);
    for c in [p(1, 1, 1, 1), p(1, 2, 2, 1), p(1, 4, 4, 1)] {
        let dx = |a| vec_of(&kernels::conv2d_grad_input(&dy, &w, (13, 11), c, a).unwrap());
        assert_close(&format!("flipped forward vs col2im {c:?}"), &dx(ConvAlgo::Auto), &dx(ConvAlgo::Direct), 1e-12);
    }
}
