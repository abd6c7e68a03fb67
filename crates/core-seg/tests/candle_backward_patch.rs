//! Guards for the patched Candle backward pass (`third_party/candle-core/PATCHES.md`): a tensor's first gradient is
//! stored as is (not added to a fresh zeros tensor), and gradients shared that way stay correct when one of the
//! tensors later accumulates more.

use candle_core::{Device, Result, Tensor, Var};

fn var(v: &[f64]) -> Result<Var> {
    Var::new(v, &Device::Cpu)
}

fn values(t: &Tensor) -> Result<Vec<f64>> {
    t.to_vec1::<f64>()
}

#[test]
fn first_gradient_is_stored_as_is() -> Result<()> {
    let (a, b) = (var(&[1.0, 2.0, 3.0])?, var(&[4.0, 5.0, 6.0])?);
    let g = (a.as_tensor() + b.as_tensor())?.sum_all()?.backward()?;
    let (ga, gb) = (g.get(&a).expect("grad a"), g.get(&b).expect("grad b"));
    // Upstream Candle stores `zeros + grad` per operand: two distinct tensors. Fails if `[patch.crates-io]` is lost.
    assert_eq!(ga.id(), gb.id(), "both operands of an add should hold the one propagated gradient");
    assert_eq!(values(ga)?, vec![1.0; 3]);
    Ok(())
}

#[test]
fn shared_first_gradients_stay_independent_when_one_accumulates() -> Result<()> {
    // L = Σ (a + b)·c + Σ a·d + Σ (e + e): ∂L/∂a = c + d, ∂L/∂b = c, ∂L/∂e = 2.
    let (a, b, e) = (var(&[1.0, -2.0, 0.5])?, var(&[3.0, 0.0, -1.0])?, var(&[7.0, 8.0, 9.0])?);
    let c = Tensor::new(&[0.5f64, -1.5, 2.0], &Device::Cpu)?;
    let d = Tensor::new(&[10.0f64, 20.0, -30.0], &Device::Cpu)?;
    let (at, bt, et) = (a.as_tensor(), b.as_tensor(), e.as_tensor());
    let l1 = ((at + bt)? * &c)?.sum_all()?;
    let l2 = (at * &d)?.sum_all()?;
    let l3 = (et + et)?.sum_all()?;
    let g = ((l1 + l2)? + l3)?.backward()?;
    assert_eq!(values(g.get(&a).expect("grad a"))?, vec![10.5, 18.5, -28.0]);
    assert_eq!(values(g.get(&b).expect("grad b"))?, vec![0.5, -1.5, 2.0]);
    assert_eq!(values(g.get(&e).expect("grad e"))?, vec![2.0; 3]);
    Ok(())
}
