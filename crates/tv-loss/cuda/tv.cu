// Total-variation loss, variant A (TV of softmax(z)), forward and backward — the CUDA version of
// tv-loss's fused CPU kernel (`crates/tv-loss/src/fused.rs`); all arithmetic in double like the CPU kernel.
//
//   P = softmax_k(z)                                      (tv_softmax, per pixel, into a double buffer)
//   TV = sum_{n,k,i,j} vx*rho(P[k,i,j+1] - P[k,i,j]) + vy*rho(P[k,i+1,j] - P[k,i,j]) / Z
//        vx = v[i,j]*v[i,j+1], vy = v[i,j]*v[i+1,j]; Z = max(K*sum v, 1) (mean) or 1 (sum)
//   rho(d) = |d| (eps = 0) or sqrt(d^2 + eps) - sqrt(eps); rho'(d) = sign d or d/sqrt(d^2 + eps)
//   g[k,q] = sum over the pairs (q', q) of w*rho'(P[q] - P[q']) - sum over the pairs (q, q') of w*rho'(P[q'] - P[q])
//   dz[k,q] = grad/Z * P[k,q]*(g[k,q] - sum_m P[m,q]*g[m,q])
// The forward reduces per-block partial sums, then one block sums them in a fixed order (deterministic).
#include "common.cuh"

#define TV_THREADS 256

__device__ __forceinline__ double rho(double d, double eps) { return eps == 0.0 ? fabs(d) : sqrt(d * d + eps) - sqrt(eps); }
__device__ __forceinline__ double drho(double d, double eps) {
  if (eps == 0.0) return d > 0.0 ? 1.0 : (d < 0.0 ? -1.0 : 0.0);
  return d / sqrt(d * d + eps);
}

template <typename T>
__device__ void tv_softmax(const T* z, double* p, u32 n, u32 k, u64 hw) {
  GRID_STRIDE(i, (u64)n * hw) {
    const u64 off = udiv(i, hw) * k * hw + umod(i, hw);
    double m = -INFINITY;
    for (u32 c = 0; c < k; ++c) m = max(m, ld64(z[off + c * hw]));
    double s = 0.0;
    for (u32 c = 0; c < k; ++c) {
      const double e = exp(ld64(z[off + c * hw]) - m);
      p[off + c * hw] = e;
      s += e;
    }
    for (u32 c = 0; c < k; ++c) p[off + c * hw] /= s;
  }
}

// part = [TV partial (G), sum-v partial (G)], G = gridDim.x; blockDim.x must be TV_THREADS.
template <typename T>
__device__ void tv_partial(const double* p, const T* v, double* part, u32 n, u32 k, u32 h, u32 w, double eps) {
  __shared__ double sh[TV_THREADS];
  const u64 hw = (u64)h * w;
  double tot = 0.0, vs = 0.0;
  GRID_STRIDE(i, (u64)n * hw) {
    const u64 b = udiv(i, hw), q = umod(i, hw);
    const u32 row = (u32)udiv(q, w), col = (u32)umod(q, w);
    const T* vb = v + b * hw;
    const double vq = ld64(vb[q]);
    vs += vq;
    const double vx = col + 1 < w ? vq * ld64(vb[q + 1]) : 0.0;
    const double vy = row + 1 < h ? vq * ld64(vb[q + w]) : 0.0;
    const double* pb = p + b * k * hw;
    for (u32 c = 0; c < k; ++c) {
      const double pc = pb[c * hw + q];
      if (vx != 0.0) tot += vx * rho(pb[c * hw + q + 1] - pc, eps);
      if (vy != 0.0) tot += vy * rho(pb[c * hw + q + w] - pc, eps);
    }
  }
  tot = block_sum(tot, sh);
  vs = block_sum(vs, sh);
  if (threadIdx.x == 0) {
    part[blockIdx.x] = tot;
    part[gridDim.x + blockIdx.x] = vs;
  }
}

// One block of TV_THREADS: out[0] = TV / Z, norm[0] = Z.
template <typename T>
__device__ void tv_finalize(const double* part, u32 g, u32 k, u32 mean, T* out, double* norm) {
  __shared__ double sh[TV_THREADS];
  double tot = 0.0, vs = 0.0;
  for (u32 j = threadIdx.x; j < g; j += blockDim.x) {
    tot += part[j];
    vs += part[g + j];
  }
  tot = block_sum(tot, sh);
  vs = block_sum(vs, sh);
  if (threadIdx.x == 0) {
    const double z = mean ? max((double)k * vs, 1.0) : 1.0;
    out[0] = st<T>((typename Acc<T>::type)(tot / z));
    norm[0] = z;
  }
}

template <typename T>
__device__ void tv_bwd(const double* p, const T* v, const T* grad, const double* norm, T* dz, u32 n, u32 k, u32 h,
                       u32 w, double eps) {
  const u64 hw = (u64)h * w;
  const double scale = ld64(grad[0]) / norm[0];
  GRID_STRIDE(i, (u64)n * hw) {
    const u64 b = udiv(i, hw), q = umod(i, hw);
    const u32 row = (u32)udiv(q, w), col = (u32)umod(q, w);
    const T* vb = v + b * hw;
    const double vq = ld64(vb[q]);
    const double wl = col > 0 ? ld64(vb[q - 1]) * vq : 0.0;      // pair (q-1, q): q is "to"
    const double wr = col + 1 < w ? vq * ld64(vb[q + 1]) : 0.0;  // pair (q, q+1): q is "from"
    const double wu = row > 0 ? ld64(vb[q - w]) * vq : 0.0;
    const double wd = row + 1 < h ? vq * ld64(vb[q + w]) : 0.0;
    const double* pb = p + b * k * hw;
    double pg = 0.0;
    for (int pass = 0; pass < 2; ++pass) {
      for (u32 c = 0; c < k; ++c) {
        const double* pc = pb + c * hw;
        double g = 0.0;
        if (wl != 0.0) g += wl * drho(pc[q] - pc[q - 1], eps);
        if (wr != 0.0) g -= wr * drho(pc[q + 1] - pc[q], eps);
        if (wu != 0.0) g += wu * drho(pc[q] - pc[q - w], eps);
        if (wd != 0.0) g -= wd * drho(pc[q + w] - pc[q], eps);
        if (pass == 0) {
          pg += pc[q] * g;
        } else {
          dz[b * k * hw + c * hw + q] = st<T>((typename Acc<T>::type)(scale * pc[q] * (g - pg)));
        }
      }
    }
  }
}

#define TV(T, S)                                                                                               \
  extern "C" __global__ void tv_softmax_##S(const T* z, double* p, u32 n, u32 k, u64 hw) { tv_softmax<T>(z, p, n, k, hw); } \
  extern "C" __global__ void tv_partial_##S(const double* p, const T* v, double* part, u32 n, u32 k, u32 h, u32 w, \
                                            double eps) {                                                      \
    tv_partial<T>(p, v, part, n, k, h, w, eps);                                                                \
  }                                                                                                            \
  extern "C" __global__ void tv_finalize_##S(const double* part, u32 g, u32 k, u32 mean, T* out, double* norm) { \
    tv_finalize<T>(part, g, k, mean, out, norm);                                                               \
  }                                                                                                            \
  extern "C" __global__ void tv_bwd_##S(const double* p, const T* v, const T* grad, const double* norm, T* dz, \
                                        u32 n, u32 k, u32 h, u32 w, double eps) {                              \
    tv_bwd<T>(p, v, grad, norm, dz, n, k, h, w, eps);                                                          \
  }
FOR_FLOATS(TV)
