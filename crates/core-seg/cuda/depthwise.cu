// Depthwise convolution (groups = C_in = C_out, one kh x kw filter per channel; stride s, padding p, dilation d
// on both axes), NCHW, and its two gradients.
//
// Forward: one thread per output, taps read straight from the input plane (no im2col).
// Input gradient: one thread per input pixel, gathering the outputs whose window holds it (no atomics).
// Weight gradient: one block per (channel, tap), a fixed-order block reduction in double (deterministic).
#include "common.cuh"

#define DW_ARGS u64 planes, u32 c, u32 h, u32 w, u32 oh, u32 ow, u32 kh, u32 kw, u32 s, u32 p, u32 d
#define DW_PASS planes, c, h, w, oh, ow, kh, kw, s, p, d

// Element `i` of a stack of `rows x cols` planes: its column, row and plane.
struct Pixel {
  u32 col, row;
  u64 plane;
};
__device__ __forceinline__ Pixel pixel(u64 i, u32 rows, u32 cols) {
  const u64 r = udiv(i, cols);
  return {(u32)umod(i, cols), (u32)umod(r, rows), udiv(r, rows)};
}

template <typename T>
__device__ void dw_fwd(const T* x, const T* wt, T* y, DW_ARGS) {
  typedef typename Acc<T>::type A;
  GRID_STRIDE(i, planes * oh * ow) {
    const Pixel o = pixel(i, oh, ow);
    const T* xp = x + o.plane * h * w;
    const T* wp = wt + (u64)umod(o.plane, c) * kh * kw;
    const int y0 = (int)(o.row * s) - (int)p, x0 = (int)(o.col * s) - (int)p;
    A acc = 0;
    for (u32 a = 0; a < kh; ++a) {
      const int iy = y0 + (int)(a * d);
      if (iy < 0 || iy >= (int)h) continue;
      for (u32 b = 0; b < kw; ++b) {
        const int ix = x0 + (int)(b * d);
        if (ix < 0 || ix >= (int)w) continue;
        acc += ld(xp[(u64)iy * w + ix]) * ld(wp[a * kw + b]);
      }
    }
    y[i] = st<T>(acc);
  }
}

// Output index along one axis whose tap `a` reads input position `i`, or -1.
__device__ __forceinline__ int dw_source(u32 i, u32 a, u32 s, u32 p, u32 d, u32 n_out) {
  const int t = (int)i + (int)p - (int)(a * d);
  if (t < 0 || t % (int)s != 0) return -1;
  const int o = t / (int)s;
  return o < (int)n_out ? o : -1;
}

template <typename T>
__device__ void dw_grad_input(const T* dy, const T* wt, T* dx, DW_ARGS) {
  typedef typename Acc<T>::type A;
  GRID_STRIDE(i, planes * h * w) {
    const Pixel in = pixel(i, h, w);
    const T* dyp = dy + in.plane * oh * ow;
    const T* wp = wt + (u64)umod(in.plane, c) * kh * kw;
    A acc = 0;
    for (u32 a = 0; a < kh; ++a) {
      const int oy = dw_source(in.row, a, s, p, d, oh);
      if (oy < 0) continue;
      for (u32 b = 0; b < kw; ++b) {
        const int ox = dw_source(in.col, b, s, p, d, ow);
        if (ox < 0) continue;
        acc += ld(dyp[(u64)oy * ow + ox]) * ld(wp[a * kw + b]);
      }
    }
    dx[i] = st<T>(acc);
  }
}

// Block (channel, tap) of c*kh*kw blocks; blockDim.x must be DW_BLOCK.
#define DW_BLOCK 256
template <typename T>
__device__ void dw_grad_weight(const T* x, const T* dy, T* dw, DW_ARGS) {
  __shared__ double sh[DW_BLOCK];
  const u32 taps = kh * kw;
  const u32 ch = blockIdx.x / taps, tap = blockIdx.x % taps;
  const u32 a = tap / kw, b = tap % kw;
  const u64 n = udiv(planes, c), per = (u64)oh * ow;
  double acc = 0;
  for (u64 m = threadIdx.x; m < n * per; m += blockDim.x) {
    const u64 img = udiv(m, per);
    const u32 q = (u32)umod(m, per);
    const u32 oy = q / ow, ox = q % ow;
    const int iy = (int)(oy * s) - (int)p + (int)(a * d);
    const int ix = (int)(ox * s) - (int)p + (int)(b * d);
    if (iy < 0 || iy >= (int)h || ix < 0 || ix >= (int)w) continue;
    const u64 plane = img * c + ch;
    acc += ld64(dy[plane * per + q]) * ld64(x[plane * h * w + (u64)iy * w + ix]);
  }
  const double sum = block_sum(acc, sh);
  if (threadIdx.x == 0) dw[blockIdx.x] = st<T>((typename Acc<T>::type)sum);
}

#define DEPTHWISE(T, S)                                                                                   \
  extern "C" __global__ void dw_fwd_##S(const T* x, const T* wt, T* y, DW_ARGS) {                          \
    dw_fwd<T>(x, wt, y, DW_PASS);                                                                         \
  }                                                                                                       \
  extern "C" __global__ void dw_grad_input_##S(const T* dy, const T* wt, T* dx, DW_ARGS) {                 \
    dw_grad_input<T>(dy, wt, dx, DW_PASS);                                                                \
  }                                                                                                       \
  extern "C" __global__ void dw_grad_weight_##S(const T* x, const T* dy, T* dw, DW_ARGS) {                 \
    dw_grad_weight<T>(x, dy, dw, DW_PASS);                                                                \
  }
FOR_FLOATS(DEPTHWISE)
