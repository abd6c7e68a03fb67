// Bilinear resize (F.interpolate(mode="bilinear")), forward and backward, both align_corners modes.
//
// `resize_axis` builds the per-axis table once per call: for output index o the taps i0[o], i1[o] and weight
// lam[o] (PyTorch's source-index rule, computed in double with non-contracted operations so the taps equal
// the CPU kernel's), and for input index t the range lo[t]..=hi[t] of outputs that read it. The backward is a
// gather over that range (no atomics, deterministic).
#include "common.cuh"

__device__ __forceinline__ double src_index(int i, int in, int out, bool ac) {
  if (ac) return out > 1 ? __ddiv_rn(__dmul_rn((double)i, (double)in - 1.0), (double)out - 1.0) : 0.0;
  double s = __dsub_rn(__ddiv_rn(__dmul_rn(__dadd_rn((double)i, 0.5), (double)in), (double)out), 0.5);
  return s < 0.0 ? 0.0 : s;
}

__device__ __forceinline__ void tap(int i, int in, int out, bool ac, int* i0, int* i1, double* lam) {
  double src = src_index(i, in, out, ac);
  int a = (int)floor(src);
  if (a > in - 1) a = in - 1;
  *i0 = a;
  *i1 = a + 1 < in - 1 ? a + 1 : in - 1;
  *lam = __dsub_rn(src, (double)a);
}

// idx = [i0 (out), i1 (out), lo (in), hi (in)], lam = [out].
extern "C" __global__ void resize_axis(u32 in, u32 out, u32 align_corners, int* idx, double* lam) {
  const bool ac = align_corners != 0;
  const int n_in = (int)in, n_out = (int)out;
  GRID_STRIDE(k, (u64)(in > out ? in : out)) {
    const int t = (int)k;
    if (t < n_out) {
      int a, b;
      double l;
      tap(t, n_in, n_out, ac, &a, &b, &l);
      idx[t] = a;
      idx[n_out + t] = b;
      lam[t] = l;
    }
    if (t < n_in) {
      // Conservative window from the slope of the source index, then the exact range from the taps.
      double s = ac ? (n_out > 1 ? ((double)n_in - 1.0) / ((double)n_out - 1.0) : 0.0) : (double)n_in / (double)n_out;
      int lo_c = 0, hi_c = n_out - 1;
      if (s > 0.0) {
        double a = ac ? ((double)t - 1.0) / s : ((double)t - 0.5) / s - 0.5;
        double b = ac ? ((double)t + 1.0) / s : ((double)t + 1.5) / s - 0.5;
        lo_c = max(0, (int)floor(a) - 2);
        hi_c = min(n_out - 1, (int)ceil(b) + 2);
      }
      int lo = n_out, hi = -1;
      for (int o = lo_c; o <= hi_c; ++o) {
        int a, b;
        double l;
        tap(o, n_in, n_out, ac, &a, &b, &l);
        if (a == t || b == t) {
          lo = min(lo, o);
          hi = max(hi, o);
        }
      }
      idx[2 * n_out + t] = lo;
      idx[2 * n_out + n_in + t] = hi;
    }
  }
}

template <typename T>
__device__ void resize_fwd(const T* x, T* y, u64 planes, u32 h, u32 w, u32 oh, u32 ow, const int* ty,
                           const double* ly, const int* tx, const double* lx) {
  typedef typename Acc<T>::type A;
  GRID_STRIDE(i, planes * oh * ow) {
    const u32 ox = (u32)(umod(i, ow));
    const u64 r = udiv(i, ow);
    const u32 oy = (u32)(umod(r, oh));
    const T* xp = x + (udiv(r, oh)) * h * w;
    const int y0 = ty[oy], y1 = ty[oh + oy], x0 = tx[ox], x1 = tx[ow + ox];
    const A wy0 = (A)(1.0 - ly[oy]), wy1 = (A)ly[oy], wx0 = (A)(1.0 - lx[ox]), wx1 = (A)lx[ox];
    const A r0 = wx0 * ld(xp[y0 * w + x0]) + wx1 * ld(xp[y0 * w + x1]);
    const A r1 = wx0 * ld(xp[y1 * w + x0]) + wx1 * ld(xp[y1 * w + x1]);
    y[i] = st<T>(wy0 * r0 + wy1 * r1);
  }
}

template <typename T>
__device__ void resize_bwd(const T* dy, T* dx, u64 planes, u32 h, u32 w, u32 oh, u32 ow, const int* ty,
                           const double* ly, const int* tx, const double* lx) {
  typedef typename Acc<T>::type A;
  const int* ylo = ty + 2 * oh;
  const int* yhi = ylo + h;
  const int* xlo = tx + 2 * ow;
  const int* xhi = xlo + w;
  GRID_STRIDE(i, planes * h * w) {
    const int xi = (int)(umod(i, w));
    const u64 r = udiv(i, w);
    const int yi = (int)(umod(r, h));
    const T* g = dy + (udiv(r, h)) * oh * ow;
    A acc = 0;
    for (int oy = ylo[yi]; oy <= yhi[yi]; ++oy) {
      const bool m0 = ty[oy] == yi, m1 = ty[oh + oy] == yi;
      if (!m0 && !m1) continue;
      const A wy = (m0 ? (A)(1.0 - ly[oy]) : (A)0) + (m1 ? (A)ly[oy] : (A)0);
      A row = 0;
      for (int ox = xlo[xi]; ox <= xhi[xi]; ++ox) {
        const bool n0 = tx[ox] == xi, n1 = tx[ow + ox] == xi;
        if (!n0 && !n1) continue;
        const A wx = (n0 ? (A)(1.0 - lx[ox]) : (A)0) + (n1 ? (A)lx[ox] : (A)0);
        row += wx * ld(g[oy * ow + ox]);
      }
      acc += wy * row;
    }
    dx[i] = st<T>(acc);
  }
}

#define RESIZE(T, S)                                                                                         \
  extern "C" __global__ void resize_fwd_##S(const T* x, T* y, u64 planes, u32 h, u32 w, u32 oh, u32 ow,      \
                                            const int* ty, const double* ly, const int* tx, const double* lx) { \
    resize_fwd<T>(x, y, planes, h, w, oh, ow, ty, ly, tx, lx);                                               \
  }                                                                                                          \
  extern "C" __global__ void resize_bwd_##S(const T* dy, T* dx, u64 planes, u32 h, u32 w, u32 oh, u32 ow,    \
                                            const int* ty, const double* ly, const int* tx, const double* lx) { \
    resize_bwd<T>(dy, dx, planes, h, w, oh, ow, ty, ly, tx, lx);                                             \
  }
FOR_FLOATS(RESIZE)
