// Shared helpers of the CUDA kernels of core-seg, tv-loss and aux-mim (compiled to PTX by their build.rs with the
// `cuda` feature, through `cuda_build::build_ptx`, which puts this folder on the include path).
//
// Conventions: every kernel is `extern "C"` with a dtype suffix (`_f32`, `_f64`, `_bf16`); sizes are passed
// as `unsigned long long` element counts and `unsigned int` dims; kernels use grid-stride loops so any grid
// size is correct. Arithmetic is done in `acc_t<T>` (float for f32/bf16, double for f64), reductions over
// many elements in double. No kernel uses floating-point atomics: every result is deterministic.
#pragma once
#include <stdint.h>
#include <cuda_bf16.h>

typedef unsigned long long u64;
typedef unsigned int u32;

template <typename T> struct Acc { typedef float type; };
template <> struct Acc<double> { typedef double type; };

template <typename T> __device__ __forceinline__ typename Acc<T>::type ld(T v) { return (typename Acc<T>::type)v; }
template <> __device__ __forceinline__ float ld<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T st(typename Acc<T>::type v) { return (T)v; }
template <> __device__ __forceinline__ __nv_bfloat16 st<__nv_bfloat16>(float v) { return __float2bfloat16(v); }

template <typename T> __device__ __forceinline__ double ld64(T v) { return (double)ld<T>(v); }

// Index division that takes the 32-bit path when it can (64-bit division is a long instruction sequence).
__device__ __forceinline__ u64 udiv(u64 a, u64 b) {
  return (a | b) <= 0xffffffffull ? (u64)((u32)a / (u32)b) : a / b;
}
__device__ __forceinline__ u64 umod(u64 a, u64 b) {
  return (a | b) <= 0xffffffffull ? (u64)((u32)a % (u32)b) : a % b;
}

#define GRID_STRIDE(i, n) for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (u64)gridDim.x * blockDim.x)

// Block-wide sum of a double; `sh` holds blockDim.x doubles; blockDim.x must be a power of two.
// The summation order is fixed by the thread layout, so the result is deterministic.
__device__ __forceinline__ double block_sum(double v, double* sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  double r = sh[0];
  __syncthreads();
  return r;
}

// Instantiates `name##_f32/_f64/_bf16` from a macro `BODY(T, suffix)`.
#define FOR_FLOATS(BODY) BODY(float, f32) BODY(double, f64) BODY(__nv_bfloat16, bf16)
#define FOR_F32_F64(BODY) BODY(float, f32) BODY(double, f64)
