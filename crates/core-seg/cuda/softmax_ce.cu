// Fused per-pixel softmax cross-entropy with ignore label 255, forward and backward.
//
// Logits z [N, K, S] (S = H*W), labels t [N, S] (u32). Forward: loss = m + log(sum_k exp(z_k - m)) - z_t with
// m = max_k z_k, 0 where t = 255. Labels >= K other than 255 set bad[0] = 1 and bad[1] = label (the host
// turns that into an error). Backward: dz_k = s*softmax(z)_k - s*[k = t] with s = dl on valid pixels, 0 on
// ignored ones. One thread per pixel; the class loop is strided by S so neighbouring threads read
// neighbouring addresses.
#include "common.cuh"

#define IGNORE 255u

template <typename T>
__device__ __forceinline__ typename Acc<T>::type lse(const T* zp, u32 k, u64 s) {
  typedef typename Acc<T>::type A;
  A m = ld(zp[0]);
  for (u32 c = 1; c < k; ++c) m = max(m, ld(zp[c * s]));
  A sum = 0;
  for (u32 c = 0; c < k; ++c) sum += exp(ld(zp[c * s]) - m);
  return m + log(sum);
}

template <typename T>
__device__ void ce_fwd(const T* z, const u32* t, T* loss, u32* bad, u64 n, u32 k, u64 s) {
  GRID_STRIDE(i, n * s) {
    const u32 lab = t[i];
    if (lab == IGNORE) {
      loss[i] = st<T>(0);
      continue;
    }
    if (lab >= k) {
      bad[0] = 1;
      bad[1] = lab;
      loss[i] = st<T>(0);
      continue;
    }
    const T* zp = z + (udiv(i, s)) * k * s + (umod(i, s));
    loss[i] = st<T>(lse(zp, k, s) - ld(zp[lab * s]));
  }
}

template <typename T>
__device__ void ce_bwd(const T* z, const u32* t, const T* dl, T* dz, u64 n, u32 k, u64 s) {
  typedef typename Acc<T>::type A;
  GRID_STRIDE(i, n * s) {
    const u32 lab = t[i];
    const u64 off = (udiv(i, s)) * k * s + (umod(i, s));
    const T* zp = z + off;
    T* dp = dz + off;
    const bool valid = lab != IGNORE && lab < k;
    const A sc = valid ? ld(dl[i]) : (A)0;
    const A l = lse(zp, k, s);
    for (u32 c = 0; c < k; ++c) {
      A v = sc * exp(ld(zp[c * s]) - l);
      if (valid && c == lab) v -= sc;
      dp[c * s] = st<T>(v);
    }
  }
}

#define CE(T, S)                                                                                             \
  extern "C" __global__ void ce_fwd_##S(const T* z, const u32* t, T* loss, u32* bad, u64 n, u32 k, u64 s) {  \
    ce_fwd<T>(z, t, loss, bad, n, k, s);                                                                     \
  }                                                                                                          \
  extern "C" __global__ void ce_bwd_##S(const T* z, const u32* t, const T* dl, T* dz, u64 n, u32 k, u64 s) { \
    ce_bwd<T>(z, t, dl, dz, n, k, s);                                                                        \
  }
FOR_FLOATS(CE)
