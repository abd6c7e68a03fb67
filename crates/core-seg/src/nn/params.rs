//! A parameter store whose initial values come from the project RNG.
//!
//! Candle's `VarMap` initialises new variables with the device RNG, which cannot be seeded on CPU. A
//! [`ParamStore`] wraps a `VarMap` and implements [`SimpleBackend`]: the first request for a name draws the
//! initial value from a [`SegRng`] (Kaiming, uniform, normal or constant, as the layer asks) and stores it as
//! a `Var`; later requests return the same `Var`. Creation order is deterministic, so the same seed gives
//! the same weights.

use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};

use crate::rng::SegRng;

/// Seeded parameter store: a [`VarMap`] plus the RNG that initialises new entries.
#[derive(Clone)]
pub struct ParamStore {
    varmap: VarMap,
    rng: Arc<Mutex<SegRng>>,
}

impl ParamStore {
    pub fn new(seed: u64) -> Self {
        Self { varmap: VarMap::new(), rng: Arc::new(Mutex::new(SegRng::stream(seed, &[0x1417]))) }
    }

    /// The same variables, but entries created through this handle draw their initial values from their own
    /// stream `SegRng::stream(seed, path)`: an auxiliary branch initialised this way gets the same weights
    /// whatever was created before it, and leaves the model's initialisation untouched.
    pub fn with_stream(&self, seed: u64, path: &[u64]) -> Self {
        Self { varmap: self.varmap.clone(), rng: Arc::new(Mutex::new(SegRng::stream(seed, path))) }
    }

    /// The underlying variables (parameters and BN buffers), by PyTorch name.
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// A `VarBuilder` whose new variables are drawn from this store's RNG.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), dtype, device.clone())
    }

    /// All variables, sorted by name.
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        let data = self.varmap.data().lock().expect("varmap lock");
        let mut v: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn draw(&self, shape: &Shape, init: Init) -> Vec<f64> {
        let n = shape.elem_count();
        let mut rng = self.rng.lock().expect("rng lock");
        match init {
            Init::Const(c) => vec![c; n],
            Init::Uniform { lo, up } => (0..n).map(|_| rng.uniform_range(lo, up)).collect(),
            Init::Randn { mean, stdev } => (0..n).map(|_| mean + stdev * rng.normal()).collect(),
            Init::Kaiming { dist, fan, non_linearity } => {
                let std = gain(non_linearity) / (fan_of(fan, shape) as f64).sqrt();
                match dist {
                    NormalOrUniform::Normal => (0..n).map(|_| std * rng.normal()).collect(),
                    NormalOrUniform::Uniform => {
                        let b = 3f64.sqrt() * std;
                        (0..n).map(|_| rng.uniform_range(-b, b)).collect()
                    }
                }
            }
        }
    }
}

fn gain(nl: NonLinearity) -> f64 {
    match nl {
        NonLinearity::ReLU => 2f64.sqrt(),
        NonLinearity::Tanh => 5.0 / 3.0,
        NonLinearity::Linear | NonLinearity::Sigmoid => 1.0,
        NonLinearity::SELU => 0.75,
        NonLinearity::ExplicitGain(g) => g,
    }
}

/// PyTorch's fan: `fan_in = dims[1]·receptive`, `fan_out = dims[0]·receptive`.
fn fan_of(fan: FanInOut, shape: &Shape) -> usize {
    let dims = shape.dims();
    let receptive: usize = dims.iter().skip(2).product();
    match (fan, dims.len()) {
        (_, 0) => 1,
        (_, 1) => dims[0],
        (FanInOut::FanIn, _) => dims[1] * receptive,
        (FanInOut::FanOut, _) => dims[0] * receptive,
    }
}

impl SimpleBackend for ParamStore {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let mut data = self.varmap.data().lock().expect("varmap lock");
        if let Some(v) = data.get(name) {
            let t = v.as_tensor();
            if t.shape() != &s {
                candle_core::bail!("parameter `{name}`: stored shape {:?}, requested {:?}", t.shape(), s);
            }
            return t.to_dtype(dtype);
        }
        let values = self.draw(&s, h);
        let t = Tensor::from_vec(values, s, dev)?.to_dtype(dtype)?;
        let var = Var::from_tensor(&t)?;
        let out = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, _dev: &Device) -> candle_core::Result<Tensor> {
        let data = self.varmap.data().lock().expect("varmap lock");
        match data.get(name) {
            Some(v) => v.as_tensor().to_dtype(dtype),
            None => candle_core::bail!("parameter `{name}` not found"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap.data().lock().expect("varmap lock").contains_key(name)
    }
}

/// Number of trainable scalars: every variable except BN running statistics.
pub fn count_parameters(store: &ParamStore) -> usize {
    store
        .named_vars()
        .iter()
        .filter(|(n, _)| !n.ends_with("running_mean") && !n.ends_with("running_var"))
        .map(|(_, v)| v.elem_count())
        .sum()
}
