//! Convolution checks shared by the conv kernel tests: an independent naive direct convolution (forward, input
//! and weight gradients) in f64, and [`check_with`], which compares a kernel run against it, against Candle's
//! forward, in f32, and against central finite differences.

use candle_core::{DType, Tensor, Var};
use core_seg::kernels::{self, ConvAlgo, ConvParams};

use super::{assert_close, rand_t, rand_vec, vec_of};

#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub n: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub p: ConvParams,
}

impl Case {
    pub fn out_hw(&self) -> (usize, usize) {
        let ConvParams { stride: s, padding: pd, dilation: d, .. } = self.p;
        ((self.h + 2 * pd - d * (self.kh - 1) - 1) / s + 1, (self.w + 2 * pd - d * (self.kw - 1) - 1) / s + 1)
    }
}

/// Visits every (n, co, oy, ox, ci_global, ci_local, ky, kx, iy, ix) tap that lies inside the image.
fn for_taps(c: &Case, mut f: impl FnMut([usize; 10])) {
    let (oh, ow) = c.out_hw();
    let ConvParams { stride: s, padding: pd, dilation: d, groups: g } = c.p;
    let (cin_g, cout_g) = (c.cin / g, c.cout / g);
    for n in 0..c.n {
        for co in 0..c.cout {
            let grp = co / cout_g;
            for oy in 0..oh {
                for ox in 0..ow {
                    for cl in 0..cin_g {
                        for ky in 0..c.kh {
                            for kx in 0..c.kw {
                                let iy = (oy * s + ky * d) as isize - pd as isize;
                                let ix = (ox * s + kx * d) as isize - pd as isize;
                                if iy < 0 || ix < 0 || iy >= c.h as isize || ix >= c.w as isize {
                                    continue;
                                }
                                let ci = grp * cin_g + cl;
                                f([n, co, oy, ox, ci, cl, ky, kx, iy as usize, ix as usize]);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Naive forward, input gradient and weight gradient for output gradient `r`.
pub fn naive(c: &Case, x: &[f64], w: &[f64], r: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (oh, ow) = c.out_hw();
    let cin_g = c.cin / c.p.groups;
    let mut y = vec![0.0; c.n * c.cout * oh * ow];
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; w.len()];
    for_taps(c, |[n, co, oy, ox, ci, cl, ky, kx, iy, ix]| {
        let yi = ((n * c.cout + co) * oh + oy) * ow + ox;
        let xi = ((n * c.cin + ci) * c.h + iy) * c.w + ix;
        let wi = ((co * cin_g + cl) * c.kh + ky) * c.kw + kx;
        y[yi] += w[wi] * x[xi];
        dx[xi] += w[wi] * r[yi];
        dw[wi] += x[xi] * r[yi];
    });
    (y, dx, dw)
}

pub fn check(c: Case, seed: u64) {
    check_with(c, seed, ConvAlgo::Auto);
}

pub fn check_with(c: Case, seed: u64, algo: ConvAlgo) {
    let (oh, ow) = c.out_hw();
    let x = rand_t(&[c.n, c.cin, c.h, c.w], seed);
    let w = rand_t(&[c.cout, c.cin / c.p.groups, c.kh, c.kw], seed + 1);
    let r = rand_t(&[c.n, c.cout, oh, ow], seed + 2);
    let (y_ref, dx_ref, dw_ref) = naive(&c, &vec_of(&x), &vec_of(&w), &vec_of(&r));

    let xv = Var::from_tensor(&x).unwrap();
    let wv = Var::from_tensor(&w).unwrap();
    let y = kernels::conv2d_with(xv.as_tensor(), wv.as_tensor(), c.p, algo).unwrap();
    assert_eq!(y.dims(), &[c.n, c.cout, oh, ow], "{c:?}");
    let loss = (&y * &r).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let dx = grads.get(xv.as_tensor()).unwrap();
    let dw = grads.get(wv.as_tensor()).unwrap();
    assert_close(&format!("fwd {c:?}"), &vec_of(&y), &y_ref, 1e-10);
    assert_close(&format!("dx {c:?}"), &vec_of(dx), &dx_ref, 1e-10);
    assert_close(&format!("dw {c:?}"), &vec_of(dw), &dw_ref, 1e-10);

    // Candle's forward agrees (its backward is wrong for stride 2 with H, W of different parity).
    let yc = x.conv2d(&w, c.p.padding, c.p.stride, c.p.dilation, c.p.groups).unwrap();
    assert_close(&format!("candle fwd {c:?}"), &vec_of(&y), &vec_of(&yc), 1e-10);

    // f32 vs f64.
    let (x32, w32, r32) =
        (x.to_dtype(DType::F32).unwrap(), w.to_dtype(DType::F32).unwrap(), r.to_dtype(DType::F32).unwrap());
    let (xv32, wv32) = (Var::from_tensor(&x32).unwrap(), Var::from_tensor(&w32).unwrap());
    let y32 = kernels::conv2d_with(xv32.as_tensor(), wv32.as_tensor(), c.p, algo).unwrap();
    let g32 = (&y32 * &r32).unwrap().sum_all().unwrap().backward().unwrap();
    assert_close(&format!("f32 fwd {c:?}"), &vec_of(&y32), &y_ref, 1e-4);
    assert_close(&format!("f32 dx {c:?}"), &vec_of(g32.get(xv32.as_tensor()).unwrap()), &dx_ref, 1e-4);
    assert_close(&format!("f32 dw {c:?}"), &vec_of(g32.get(wv32.as_tensor()).unwrap()), &dw_ref, 1e-4);

    // Central finite differences on a few probed elements of x and w.
    let loss_of = |xt: &Tensor, wt: &Tensor| -> f64 {
        let y = kernels::conv2d_with(xt, wt, c.p, algo).unwrap();
        (&y * &r).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()
    };
    let hstep = 1e-6;
    let (xs, ws) = (vec_of(&x), vec_of(&w));
    let (dxs, dws) = (vec_of(dx), vec_of(dw));
    let probes = rand_vec(8, seed + 3);
    for (k, pr) in probes.iter().enumerate() {
        let on_x = k % 2 == 0;
        let base = if on_x { &xs } else { &ws };
        let i = ((pr.abs() * base.len() as f64) as usize).min(base.len() - 1);
        let mut plus = base.clone();
        let mut minus = base.clone();
        plus[i] += hstep;
        minus[i] -= hstep;
        let shape = if on_x { x.dims() } else { w.dims() };
        let tp = Tensor::from_vec(plus, shape, x.device()).unwrap();
        let tm = Tensor::from_vec(minus, shape, x.device()).unwrap();
        let fd = if on_x {
            (loss_of(&tp, &w) - loss_of(&tm, &w)) / (2.0 * hstep)
        } else {
            (loss_of(&x, &tp) - loss_of(&x, &tm)) / (2.0 * hstep)
        };
        let an = if on_x { dxs[i] } else { dws[i] };
        assert!(
            (fd - an).abs() <= 1e-6 * an.abs().max(1.0),
            "finite difference {c:?} on {} [{i}]: fd {fd} vs analytic {an}",
            if on_x { "x" } else { "w" }
        );
    }
}

pub fn p(stride: usize, padding: usize, dilation: usize, groups: usize) -> ConvParams {
    ConvParams { stride, padding, dilation, groups }
}
