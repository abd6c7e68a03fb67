//! The reconstruction decoder R (`docs/aux-recon.md`): a bottleneck projection, `S` bilinear-×2 stages, a 3×3 output
//! convolution, a final resize to the input size. No skip connection, no output activation.
//!
//! ```text
//! z0 = ReLU(BN(Conv1x1_{C_in→w0}(f)))                         f = c4 or the ASPP output
//! u_i = ReLU(BN(Conv3x3_{w_{i−1}→w_i}(Up2x(u_{i−1}))))          i = 1 … S, u_0 = z0
//! x̂ = Resize_{H×W}(Conv3x3_{w_S→3, bias}(u_S))                 plain / fgonly
//! x̂_o = Resize(Conv3x3_{w_S/2→3}(u_S[:, :w_S/2])),  x̂_b = Resize(Conv3x3_{w_S/2→3}(u_S[:, w_S/2:]))   fgbg
//! ```
//! Up2x and the resize are bilinear with align_corners = true (as the segmentation head); convolutions before
//! BN have no bias. Parameters (PyTorch `nn.Sequential` names under the caller's prefix, `recon.`):
//! `reduce.0.weight`, `reduce.1.{weight,bias,running_mean,running_var}`, `stages.<i>.0.weight`,
//! `stages.<i>.1.*`, and `out.{weight,bias}` (plain, fgonly) or `out_obj.*`, `out_bg.*` (fgbg).

use candle_core::Tensor;
use candle_nn::VarBuilder;
use core_seg::nn::{BatchNorm2d, BnConfig, Conv2d, ConvConfig, Mode};
use core_seg::ops::resize_bilinear;
use core_seg::Result;

use crate::config::{Geometry, ReconMode};

/// Output channels (RGB).
pub const IMAGE_CHANNELS: usize = 3;

struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm2d,
}

impl ConvBn {
    fn new(cin: usize, cout: usize, k: usize, vb: VarBuilder) -> Result<Self> {
        let cfg = ConvConfig { padding: k / 2, ..ConvConfig::default() };
        Ok(Self {
            conv: Conv2d::new(cin, cout, k, cfg, false, None, vb.pp("0"))?,
            bn: BatchNorm2d::new(cout, BnConfig::default(), vb.pp("1"))?,
        })
    }

    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        self.bn.forward_act(&self.conv.forward(x)?, mode, None, true)
    }
}

/// The output of R: one image, or the object and background images of `fgbg`.
#[derive(Debug, Clone)]
pub enum ReconOutput {
    /// `x̂ [N,3,H,W]`.
    Plain(Tensor),
    /// `(x̂_o, x̂_b)`, each `[N,3,H,W]`.
    Split { obj: Tensor, bg: Tensor },
}

enum Head {
    Plain(Conv2d),
    Split { obj: Conv2d, bg: Conv2d, half: usize },
}

/// The decoder R.
pub struct ReconDecoder {
    reduce: ConvBn,
    stages: Vec<ConvBn>,
    head: Head,
    pub geometry: Geometry,
}

fn resize_to(x: Tensor, (h, w): (usize, usize)) -> Result<Tensor> {
    let (_, _, xh, xw) = x.dims4()?;
    if (xh, xw) == (h, w) {
        Ok(x)
    } else {
        resize_bilinear(&x, (h, w), true)
    }
}

impl ReconDecoder {
    /// Builds R; parameters are created through `vb` (PyTorch's default conv init, BN γ = 1, β = 0).
    pub fn new(g: &Geometry, vb: VarBuilder) -> Result<Self> {
        if g.widths.len() < 2 || g.cin == 0 {
            core_seg::bail_arg!("ReconDecoder: C_in {}, widths {:?}", g.cin, g.widths);
        }
        let reduce = ConvBn::new(g.cin, g.widths[0], 1, vb.pp("reduce"))?;
        let stages = (1..g.widths.len())
            .map(|i| ConvBn::new(g.widths[i - 1], g.widths[i], 3, vb.pp("stages").pp(i - 1)))
            .collect::<Result<Vec<_>>>()?;
        let last = g.widths[g.widths.len() - 1];
        let out_conv = |cin: usize, name: &str| {
            let cfg = ConvConfig { padding: 1, ..ConvConfig::default() };
            Conv2d::new(cin, IMAGE_CHANNELS, 3, cfg, true, None, vb.pp(name))
        };
        let head = match g.mode {
            ReconMode::Plain | ReconMode::Fgonly => Head::Plain(out_conv(last, "out")?),
            ReconMode::Fgbg => {
                if !last.is_multiple_of(2) {
                    core_seg::bail_arg!("ReconDecoder: fgbg needs an even last width, got {last}");
                }
                Head::Split { obj: out_conv(last / 2, "out_obj")?, bg: out_conv(last / 2, "out_bg")?, half: last / 2 }
            }
        };
        Ok(Self { reduce, stages, head, geometry: g.clone() })
    }

    /// `[z0, u1, …, u_S]` of the feature map `f [N, C_in, h, w]`.
    pub fn features(&self, f: &Tensor, mode: Mode) -> Result<Vec<Tensor>> {
        self.features_to(f, mode, self.stages.len())
    }

    /// `[z0, u1, …, u_last]`: the layers up to `last` (0 = z0) only.
    pub fn features_to(&self, f: &Tensor, mode: Mode, last: usize) -> Result<Vec<Tensor>> {
        if last > self.stages.len() {
            core_seg::bail_arg!("ReconDecoder: layer {last} of {} stages", self.stages.len());
        }
        let mut out = vec![self.reduce.forward(f, mode)?];
        for st in &self.stages[..last] {
            let prev = &out[out.len() - 1];
            let (_, _, h, w) = prev.dims4()?;
            let up = resize_bilinear(prev, (2 * h, 2 * w), true)?;
            out.push(st.forward(&up, mode)?);
        }
        Ok(out)
    }

    /// The reconstruction at `size = (H, W)` from the last stage's features `u_S`.
    pub fn head(&self, u_last: &Tensor, size: (usize, usize)) -> Result<ReconOutput> {
        match &self.head {
            Head::Plain(c) => Ok(ReconOutput::Plain(resize_to(c.forward(u_last)?, size)?)),
            Head::Split { obj, bg, half } => {
                let o = obj.forward(&u_last.narrow(1, 0, *half)?)?;
                let b = bg.forward(&u_last.narrow(1, *half, *half)?)?;
                Ok(ReconOutput::Split { obj: resize_to(o, size)?, bg: resize_to(b, size)? })
            }
        }
    }

    /// `R(f)` at the input image size `(H, W)`.
    pub fn forward(&self, f: &Tensor, size: (usize, usize), mode: Mode) -> Result<ReconOutput> {
        let feats = self.features(f, mode)?;
        self.head(&feats[feats.len() - 1], size)
    }
}
