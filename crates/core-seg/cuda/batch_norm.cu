// Training-mode batch norm over x [N, C, S] (S = product of the dims after C), forward and backward, with
// a hook for SyncBN: the host may all-reduce the per-channel sums between `bn_reduce` and `bn_coef` (and
// the gradient sums between the backward `bn_reduce` and `bn_bwd_coef`).
//
// Forward:  part[c][g] = (sum x, sum x^2) over chunk g of channel c (grid (G, C), double)
//           sums = [sum x (C), sum x^2 (C), count]             (bn_reduce, fixed order: deterministic)
//           coef = [mean, var (biased), invstd, scale, shift (C each), count]     (bn_coef)
//           y = x*scale + shift                                                   (bn_apply)
// Backward: red = [sum g (C), sum g*(x - mean) (C)]   local partials -> bn_reduce  (-> all-reduce for SyncBN)
//           dgamma = sum_local g*(x - mean)*invstd, dbeta = sum_local g (the parameter gradients stay local;
//           data parallel training all-reduces them with the other gradients)
//           dx = k*g + a*x + b, k = gamma*invstd, a = -k*invstd*dgamma_all/M, b = -k*dbeta_all/M - a*mean
#include "common.cuh"

#define BN_THREADS 256

template <typename T>
__device__ void bn_partial(const T* x, const T* dy, const double* coef, double* part, u32 n, u32 c, u32 s, u32 g) {
  __shared__ double sh[BN_THREADS];
  const u32 ch = blockIdx.y, chunk = blockIdx.x;
  const u64 m = (u64)n * s;
  const u64 per = (m + g - 1) / g;
  const u64 start = chunk * per, end = min(m, start + per);
  const double mu = dy ? coef[ch] : 0.0;
  double a = 0.0, b = 0.0;
  for (u64 j = start + threadIdx.x; j < end; j += blockDim.x) {
    const u64 off = ((udiv(j, s)) * c + ch) * (u64)s + (umod(j, s));
    const double v = ld64(x[off]);
    if (dy) {
      const double gv = ld64(dy[off]);
      a += gv;
      b += gv * (v - mu);
    } else {
      a += v;
      b += v * v;
    }
  }
  a = block_sum(a, sh);
  b = block_sum(b, sh);
  if (threadIdx.x == 0) {
    part[((u64)ch * g + chunk) * 2] = a;
    part[((u64)ch * g + chunk) * 2 + 1] = b;
  }
}

// sums = [a (C), b (C), count] from part [C][G][2].
extern "C" __global__ void bn_reduce(const double* part, double* sums, u32 c, u32 g, double count) {
  GRID_STRIDE(ch, (u64)c) {
    double a = 0.0, b = 0.0;
    for (u32 j = 0; j < g; ++j) {
      a += part[(ch * g + j) * 2];
      b += part[(ch * g + j) * 2 + 1];
    }
    sums[ch] = a;
    sums[c + ch] = b;
    if (ch == 0) sums[2 * c] = count;
  }
}

template <typename T>
__device__ void bn_coef(const double* sums, const T* gamma, const T* beta, double eps, u32 c, double* coef) {
  GRID_STRIDE(ch, (u64)c) {
    const double m = sums[2 * c];
    const double mu = sums[ch] / m;
    const double var = max(sums[c + ch] / m - mu * mu, 0.0);
    const double is = 1.0 / sqrt(var + eps);
    const double scale = ld64(gamma[ch]) * is;
    coef[ch] = mu;
    coef[c + ch] = var;
    coef[2 * c + ch] = is;
    coef[3 * c + ch] = scale;
    coef[4 * c + ch] = ld64(beta[ch]) - mu * scale;
    if (ch == 0) coef[5 * c] = m;
  }
}

template <typename T>
__device__ void bn_apply(const T* x, const double* coef, T* y, u64 total, u32 c, u32 s) {
  typedef typename Acc<T>::type A;
  GRID_STRIDE(i, total) {
    const u32 ch = (u32)umod(udiv(i, s), c);
    y[i] = st<T>(ld(x[i]) * (A)coef[3 * c + ch] + (A)coef[4 * c + ch]);
  }
}

// out = [mean (C), biased var (C)] in T.
template <typename T>
__device__ void bn_stats_out(const double* coef, T* out, u32 c) {
  GRID_STRIDE(i, 2 * (u64)c) { out[i] = st<T>((typename Acc<T>::type)coef[i]); }
}

// kab = [k, a, b (C each)] from the global gradient sums; out_tail = [dgamma, dbeta] from the local ones.
template <typename T>
__device__ void bn_bwd_coef(const T* gamma, const double* coef, const double* red_local, const double* red_all, u32 c,
                            T* out_tail, double* kab) {
  GRID_STRIDE(ch, (u64)c) {
    const double mu = coef[ch], is = coef[2 * c + ch], m = coef[5 * c];
    const double k = ld64(gamma[ch]) * is;
    const double dg_all = red_all[c + ch] * is, db_all = red_all[ch];
    const double a = -k * is * dg_all / m;
    kab[ch] = k;
    kab[c + ch] = a;
    kab[2 * c + ch] = -k * db_all / m - a * mu;
    out_tail[ch] = st<T>((typename Acc<T>::type)(red_local[c + ch] * is));
    out_tail[c + ch] = st<T>((typename Acc<T>::type)red_local[ch]);
  }
}

template <typename T>
__device__ void bn_bwd_dx(const T* x, const T* dy, const double* kab, T* dx, u64 total, u32 c, u32 s) {
  typedef typename Acc<T>::type A;
  GRID_STRIDE(i, total) {
    const u32 ch = (u32)umod(udiv(i, s), c);
    dx[i] = st<T>((A)kab[ch] * ld(dy[i]) + (A)kab[c + ch] * ld(x[i]) + (A)kab[2 * c + ch]);
  }
}

#define BN(T, S)                                                                                              \
  extern "C" __global__ void bn_partial_##S(const T* x, double* part, u32 n, u32 c, u32 s, u32 g) {           \
    bn_partial<T>(x, nullptr, nullptr, part, n, c, s, g);                                                     \
  }                                                                                                           \
  extern "C" __global__ void bn_bwd_partial_##S(const T* x, const T* dy, const double* coef, double* part,    \
                                                u32 n, u32 c, u32 s, u32 g) {                                 \
    bn_partial<T>(x, dy, coef, part, n, c, s, g);                                                             \
  }                                                                                                           \
  extern "C" __global__ void bn_coef_##S(const double* sums, const T* gamma, const T* beta, double eps, u32 c, \
                                         double* coef) {                                                      \
    bn_coef<T>(sums, gamma, beta, eps, c, coef);                                                              \
  }                                                                                                           \
  extern "C" __global__ void bn_apply_##S(const T* x, const double* coef, T* y, u64 total, u32 c, u32 s) {    \
    bn_apply<T>(x, coef, y, total, c, s);                                                                     \
  }                                                                                                           \
  extern "C" __global__ void bn_stats_out_##S(const double* coef, T* out, u32 c) { bn_stats_out<T>(coef, out, c); } \
  extern "C" __global__ void bn_bwd_coef_##S(const T* gamma, const double* coef, const double* red_local,      \
                                             const double* red_all, u32 c, T* out_tail, double* kab) {        \
    bn_bwd_coef<T>(gamma, coef, red_local, red_all, c, out_tail, kab);                                        \
  }                                                                                                           \
  extern "C" __global__ void bn_bwd_dx_##S(const T* x, const T* dy, const double* kab, T* dx, u64 total, u32 c, \
                                           u32 s) {                                                           \
    bn_bwd_dx<T>(x, dy, kab, dx, total, c, s);                                                                \
  }
FOR_F32_F64(BN)
