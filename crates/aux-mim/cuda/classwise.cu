// Class-wise MIM input masking (aux-mim `build_inputs`): X~[n, ch, p] = vis[n, p] ? x[rows[n], ch, p] : 0,
// one fused gather + mask (instead of index_select, a broadcast copy of the mask and where_cond).
// Sample selection (class counts, RNG draws) stays on the host: it is sequential, RNG-driven and tiny.
#include "common.cuh"

template <typename T>
__device__ void cw_masked_gather(const T* x, const u32* rows, const uint8_t* vis, T* out, u32 n, u32 c, u64 hw) {
  GRID_STRIDE(i, (u64)n * c * hw) {
    const u64 p = umod(i, hw), r = udiv(i, hw);
    const u64 ch = umod(r, c), s = udiv(r, c);
    out[i] = vis[s * hw + p] ? x[((u64)rows[s] * c + ch) * hw + p] : st<T>(0);
  }
}

#define CW(T, S)                                                                                             \
  extern "C" __global__ void cw_masked_gather_##S(const T* x, const u32* rows, const uint8_t* vis, T* out,    \
                                                  u32 n, u32 c, u64 hw) {                                    \
    cw_masked_gather<T>(x, rows, vis, out, n, c, hw);                                                        \
  }
FOR_FLOATS(CW)
