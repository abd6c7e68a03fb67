// Max pooling 3x3, stride 2, padding 1 (the ResNet stem) with saved argmax, and its backward.
//
// Forward: per output the first maximum in row-major tap order (NaN wins, as in PyTorch and the CPU kernel);
// `idx` holds its index in the input plane. Backward: per input pixel, the sum of dy over the (at most 2x2)
// outputs whose window contains it and whose argmax is that pixel, in output row-major order (no atomics).
#include "common.cuh"

template <typename T>
__device__ void maxpool_fwd(const T* x, T* y, u32* idx, u64 planes, u32 h, u32 w) {
  const u32 oh = (h - 1) / 2 + 1, ow = (w - 1) / 2 + 1;
  GRID_STRIDE(i, planes * oh * ow) {
    const u32 j = (u32)(umod(i, ow));
    const u64 r = udiv(i, ow);
    const u32 oi = (u32)(umod(r, oh));
    const T* xp = x + (udiv(r, oh)) * h * w;
    const u32 r0 = oi == 0 ? 0 : 2 * oi - 1, r1 = min(2 * oi + 2, h);
    const u32 c0 = j == 0 ? 0 : 2 * j - 1, c1 = min(2 * j + 2, w);
    u32 best = r0 * w + c0;
    auto m = ld(xp[best]);
    for (u32 rr = r0; rr < r1; ++rr) {
      for (u32 cc = c0; cc < c1; ++cc) {
        const auto v = ld(xp[rr * w + cc]);
        if (v > m || isnan(v)) {
          m = v;
          best = rr * w + cc;
        }
      }
    }
    y[i] = xp[best];
    idx[i] = best;
  }
}

template <typename T>
__device__ void maxpool_bwd(const T* dy, const u32* idx, T* dx, u64 planes, u32 h, u32 w) {
  typedef typename Acc<T>::type A;
  const u32 oh = (h - 1) / 2 + 1, ow = (w - 1) / 2 + 1;
  GRID_STRIDE(i, planes * h * w) {
    const u32 xi = (u32)(umod(i, w));
    const u64 r = udiv(i, w);
    const u32 yi = (u32)(umod(r, h));
    const u64 base = (udiv(r, h)) * oh * ow;
    const u32 me = yi * w + xi;
    const u32 i_lo = yi / 2, i_hi = min((yi + 1) / 2, oh - 1);
    const u32 j_lo = xi / 2, j_hi = min((xi + 1) / 2, ow - 1);
    A acc = 0;
    for (u32 a = i_lo; a <= i_hi; ++a)
      for (u32 b = j_lo; b <= j_hi; ++b) {
        const u64 o = base + a * ow + b;
        if (idx[o] == me) acc += ld(dy[o]);
      }
    dx[i] = st<T>(acc);
  }
}

#define POOL(T, S)                                                                                        \
  extern "C" __global__ void maxpool_fwd_##S(const T* x, T* y, u32* idx, u64 planes, u32 h, u32 w) {      \
    maxpool_fwd<T>(x, y, idx, planes, h, w);                                                              \
  }                                                                                                       \
  extern "C" __global__ void maxpool_bwd_##S(const T* dy, const u32* idx, T* dx, u64 planes, u32 h, u32 w) { \
    maxpool_bwd<T>(dy, idx, dx, planes, h, w);                                                            \
  }
FOR_FLOATS(POOL)
