//! The direct depthwise convolution kernel (`groups = Cin = Cout`): forward, input and weight gradients vs an
//! independent naive convolution in f64 (≤ 1e-10) and Candle's grouped forward, f32 vs f64, central finite
//! differences, and agreement with the im2col/GEMM path it replaces; `nn::Conv2d` with `groups = channels`
//! takes it.

#[path = "kernels_common/mod.rs"]
mod common;

use candle_core::{DType, Device, Tensor};
use common::conv::{check_with, p, Case};
use common::{assert_close, rand_t, vec_of};
use core_seg::kernels::{self, ConvAlgo, WinogradTile};
use core_seg::nn::{Conv2d, ConvConfig, ParamStore};

/// A depthwise case: `c` channels, `k × k` kernel (`kh × kw` via [`dw_k`]).
fn dw(n: usize, c: usize, h: usize, w: usize, stride: usize, pad: usize, dil: usize) -> Case {
    Case { n, cin: c, h, w, cout: c, kh: 3, kw: 3, p: p(stride, pad, dil, c) }
}

fn dw_k(n: usize, c: usize, (h, w): (usize, usize), (kh, kw): (usize, usize), stride: usize, pad: usize) -> Case {
    Case { n, cin: c, h, w, cout: c, kh, kw, p: p(stride, pad, 1, c) }
}

fn check(c: Case, seed: u64) {
    check_with(c, seed, ConvAlgo::Auto);
}

#[test]
fn depthwise_stride1_odd_sizes() {
    check(dw(2, 3, 7, 9, 1, 1, 1), 10);
    check(dw(1, 17, 9, 7, 1, 1, 1), 11);
    check(dw(3, 5, 1, 6, 1, 1, 1), 12); // a single row
    check(dw(2, 3, 6, 5, 1, 0, 1), 13); // no padding
    check(dw(2, 4, 5, 4, 1, 3, 1), 14); // padding wider than the kernel reach
}

#[test]
fn depthwise_stride2_mixed_parity() {
    // Odd H with even W and the reverse, both odd, both even; padding 0 and 1.
    check(dw(2, 17, 9, 8, 2, 1, 1), 20);
    check(dw(2, 3, 8, 9, 2, 1, 1), 21);
    check(dw(1, 5, 7, 7, 2, 1, 1), 22);
    check(dw(2, 3, 10, 6, 2, 1, 1), 23);
    check(dw(3, 4, 9, 10, 2, 0, 1), 24);
    check(dw(1, 3, 3, 2, 2, 1, 1), 25); // output 2×1
}

#[test]
fn depthwise_dilation_2_and_4() {
    check(dw(2, 33, 10, 7, 1, 2, 2), 30);
    check(dw(2, 3, 11, 10, 1, 4, 4), 31);
    check(dw(1, 17, 5, 6, 1, 4, 4), 32); // most taps read padding
    check(dw(2, 3, 9, 12, 2, 2, 2), 33); // stride 2 with dilation 2
    check(dw(2, 5, 13, 10, 2, 4, 4), 34);
    check(dw(1, 3, 7, 8, 2, 3, 3), 35); // odd dilation with stride 2: taps in all four phases
}

#[test]
fn depthwise_other_kernels_and_strides() {
    check(dw_k(2, 3, (7, 8), (1, 3), 1, 1), 40);
    check(dw_k(2, 5, (6, 7), (2, 2), 1, 1), 41);
    check(dw_k(1, 3, (8, 9), (3, 1), 2, 1), 42);
    check(dw_k(2, 3, (9, 11), (3, 3), 3, 1), 43); // stride 3: nine phase planes
    check(dw_k(2, 17, (5, 6), (1, 1), 1, 0), 44);
}

#[test]
fn depthwise_many_planes_per_task() {
    // Small maps with many channels: several planes per parallel task, and tasks that straddle images.
    check(dw(3, 33, 5, 5, 1, 1, 1), 50);
    check(dw(2, 40, 4, 3, 2, 1, 1), 51);
    // Larger maps: one plane per task.
    check(dw(2, 3, 33, 30, 1, 1, 1), 52);
    check(dw(2, 3, 31, 34, 2, 1, 1), 53);
}

/// The depthwise kernel (`Auto`, and `Winograd`, which does not apply to grouped convs) agrees with the im2col/GEMM
/// path that `Direct` forces, in value and both gradients. The forward and input gradient round alike (both sum
/// the taps in order with FMA), the f32 weight gradient does not (the kernel sums each plane in 8 lanes, then the
/// images in f64): that tells the paths apart.
#[test]
fn depthwise_matches_the_im2col_path() {
    let x = rand_t(&[2, 24, 17, 16], 60).to_dtype(DType::F32).unwrap();
    let w = rand_t(&[24, 1, 3, 3], 61).to_dtype(DType::F32).unwrap();
    let r = rand_t(&[2, 24, 9, 8], 62).to_dtype(DType::F32).unwrap();
    let run = |algo| {
        let (xv, wv) = (candle_core::Var::from_tensor(&x).unwrap(), candle_core::Var::from_tensor(&w).unwrap());
        let y = kernels::conv2d_with(xv.as_tensor(), wv.as_tensor(), p(2, 1, 1, 24), algo).unwrap();
        let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        [vec_of(&y), vec_of(g.get(xv.as_tensor()).unwrap()), vec_of(g.get(wv.as_tensor()).unwrap())]
    };
    let auto = run(ConvAlgo::Auto);
    let im2col = run(ConvAlgo::Direct);
    assert_eq!(auto, run(ConvAlgo::Winograd(WinogradTile::F4)));
    for (k, name) in ["fwd", "dx", "dw"].iter().enumerate() {
        assert_close(&format!("depthwise vs im2col {name}"), &auto[k], &im2col[k], 1e-5);
    }
    assert_ne!(auto[2], im2col[2], "Auto did not take the depthwise kernel");
}

/// `nn::Conv2d` with `groups = channels` runs the depthwise kernel.
#[test]
fn conv2d_layer_uses_the_depthwise_kernel() {
    let store = ParamStore::new(7);
    let cfg = ConvConfig { stride: 1, padding: 2, dilation: 2, groups: 32 };
    let conv = Conv2d::new(32, 32, 3, cfg, false, None, store.var_builder(DType::F32, &Device::Cpu)).unwrap();
    let x = rand_t(&[2, 32, 12, 11], 70).to_dtype(DType::F32).unwrap();
    let r = rand_t(&[2, 32, 12, 11], 71).to_dtype(DType::F32).unwrap();
    // The weight gradient of `sum(conv(x)·r)` (see `depthwise_matches_the_im2col_path`).
    let dw_of = |y: &Tensor| {
        let g = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        vec_of(g.get(&conv.weight).expect("weight gradient"))
    };
    let y = conv.forward(&x).unwrap();
    let yc = x.conv2d(&conv.weight, 2, 1, 2, 32).unwrap();
    assert_close("layer vs candle", &vec_of(&y), &vec_of(&yc), 1e-5);
    let run = |algo| kernels::conv2d_with(&x, &conv.weight, cfg.into(), algo).unwrap();
    assert_eq!(dw_of(&y), dw_of(&run(ConvAlgo::Auto)));
    assert_ne!(dw_of(&y), dw_of(&run(ConvAlgo::Direct)));
}

/// Only one gradient asked for (a frozen input or weight) takes the single-gradient kernels; both agree with the
/// one-pass backward that computes the two together.
#[test]
fn depthwise_single_gradients_match_the_fused_backward() {
    let (x, w) = (rand_t(&[4, 5, 40, 39], 80), rand_t(&[5, 1, 3, 3], 81));
    let r = rand_t(&[4, 5, 20, 20], 82);
    let cfg = p(2, 1, 1, 5);
    let grads = |x: &Tensor, w: &Tensor| {
        let y = kernels::conv2d(x, w, cfg).unwrap();
        (&y * &r).unwrap().sum_all().unwrap().backward().unwrap()
    };
    let (xv, wv) = (candle_core::Var::from_tensor(&x).unwrap(), candle_core::Var::from_tensor(&w).unwrap());
    let both = grads(xv.as_tensor(), wv.as_tensor());
    let (dx, dw) = (vec_of(both.get(xv.as_tensor()).unwrap()), vec_of(both.get(wv.as_tensor()).unwrap()));
    let only_w = grads(&x, wv.as_tensor());
    assert!(only_w.get(&x).is_none());
    assert_eq!(vec_of(only_w.get(wv.as_tensor()).unwrap()), dw);
    let only_x = grads(xv.as_tensor(), &w);
    assert!(only_x.get(&w).is_none());
    assert_eq!(vec_of(only_x.get(xv.as_tensor()).unwrap()), dx);
    let dw_ref = kernels::conv2d_grad_weight(&x, &r, (3, 3), cfg, ConvAlgo::Direct).unwrap();
    assert_close("dw vs im2col", &dw, &vec_of(&dw_ref), 1e-12);
    // f32: plane sums in f32 lanes, the batch in f64.
    let (x32, r32) = (x.to_dtype(DType::F32).unwrap(), r.to_dtype(DType::F32).unwrap());
    let dw32 = kernels::conv2d_grad_weight(&x32, &r32, (3, 3), cfg, ConvAlgo::Auto).unwrap();
    assert_close("dw f32", &vec_of(&dw32), &dw, 1e-5);
}
