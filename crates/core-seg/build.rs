//! Compiles this crate's CUDA kernels (`cuda/*.cu`) to PTX with the `cuda` feature (see `cuda_build`).

fn main() {
    cuda_build::build_ptx("cuda");
}
