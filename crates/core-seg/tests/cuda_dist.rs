//! NCCL data parallelism with a one-rank communicator (feature `nccl`): the gradient all-reduce and the
//! parameter broadcast leave values unchanged, and SyncBN over one rank equals plain batch norm. Skips (with a
//! line) without a CUDA device. The multi-rank behaviour needs ≥ 2 GPUs: `cargo xtask train --gpus 2`.
#![cfg(feature = "nccl")]

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use core_seg::dist::{self, Launch};

fn gpu_with_comm(test: &str) -> Result<Option<Device>> {
    let Some(dev) = core_seg::testing::cuda_device_or_skip(test) else { return Ok(None) };
    let one = |k: &str| match k {
        "RANK" => Some("0".to_string()),
        "WORLD_SIZE" => Some("1".to_string()),
        _ => None,
    };
    let launch = Launch::from_vars(one)?.expect("a one-rank launch");
    dist::init(&dev, &launch)?;
    assert!(dist::has_comm());
    Ok(Some(dev))
}

#[test]
fn world_size_one_all_reduce_and_broadcast() -> Result<()> {
    let Some(dev) = gpu_with_comm("world_size_one_all_reduce_and_broadcast")? else { return Ok(()) };
    let a = Var::from_tensor(&Tensor::arange(0f32, 12.0, &dev)?.reshape((3, 4))?)?;
    let b = Var::from_tensor(&Tensor::new(&[1f32, -2.0], &dev)?)?;
    let unused = Var::from_tensor(&Tensor::zeros(5, DType::F32, &dev)?)?;
    let loss = ((a.as_tensor().sqr()?.sum_all()? + (b.as_tensor() * 3.0)?.sum_all()?)? * 0.5)?;
    let mut grads = loss.backward()?;
    let before = grads.get(a.as_tensor()).unwrap().to_vec2::<f32>()?;
    dist::all_reduce_grads(&[a.clone(), b.clone(), unused.clone()], &mut grads)?;
    assert_eq!(grads.get(a.as_tensor()).unwrap().to_vec2::<f32>()?, before);
    assert_eq!(grads.get(b.as_tensor()).unwrap().to_vec1::<f32>()?, vec![1.5, 1.5]);
    assert!(grads.get(unused.as_tensor()).is_none(), "a variable without a gradient anywhere keeps none");
    dist::broadcast_vars(&[a.clone(), b.clone()])?;
    assert_eq!(b.as_tensor().to_vec1::<f32>()?, vec![1.0, -2.0]);
    Ok(())
}

#[test]
fn sync_bn_world_one_equals_plain_bn() -> Result<()> {
    let Some(dev) = gpu_with_comm("sync_bn_world_one_equals_plain_bn")? else { return Ok(()) };
    let x = Var::from_tensor(&(Tensor::randn(0f32, 1.0, (4, 8, 9, 7), &dev)? * 2.0)?)?;
    let g = Tensor::ones(8, DType::F32, &dev)?;
    let b = Tensor::zeros(8, DType::F32, &dev)?;
    let r = Tensor::randn(0f32, 1.0, (4, 8, 9, 7), &dev)?;
    let run = |sync: bool| -> Result<(Vec<f32>, Vec<f32>)> {
        dist::set_sync_bn(sync);
        let (y, _, _) = core_seg::kernels::batch_norm_train(x.as_tensor(), &g, &b, 1e-5)?;
        let grads = (&y * &r)?.sum_all()?.backward()?;
        let dx = grads.get(x.as_tensor()).unwrap().flatten_all()?.to_vec1()?;
        Ok((y.flatten_all()?.to_vec1()?, dx))
    };
    let (plain, synced) = (run(false)?, run(true)?);
    dist::set_sync_bn(true);
    assert_eq!(plain, synced);
    Ok(())
}
