//! Parameter counting comparable with PyTorch's `sum(p.numel() for p in model.parameters())`.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// The number of trainable scalars in `module`, excluding batch-norm running statistics.
///
/// Burn's [`Module::num_params`] also counts `running_mean` and `running_var` (they are visited
/// like parameters), while PyTorch's `parameters()` leaves buffers out; this count matches
/// PyTorch's. It does not initialise lazy parameters, so it is cheap even for VGG.
pub fn trainable_params<M: Module>(module: &M) -> usize {
    let mut counter = TrainableCounter::default();
    module.visit(&mut counter);
    counter.total
}

/// Names of Burn's batch-norm buffers, which PyTorch does not count as parameters.
pub(crate) const RUNNING_STAT_NAMES: [&str; 2] = ["running_mean", "running_var"];

#[derive(Default)]
struct TrainableCounter {
    path: Vec<String>,
    total: usize,
}

impl ModuleVisitor for TrainableCounter {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_owned());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let is_buffer = self.path.last().is_some_and(|name| RUNNING_STAT_NAMES.contains(&name.as_str()));
        if !is_buffer {
            self.total += param.lazy_shape().num_elements();
        }
    }
}
