//! What the burn-train tests share.

use std::path::Path;

/// The per-step values burn-train's file logger wrote for metric `name` in `epoch`.
pub fn logged(dir: &Path, epoch: usize, name: &str) -> Vec<f64> {
    let path = dir.join("train").join(format!("epoch-{epoch}")).join(format!("{name}.log"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    text.lines()
        .filter(|line| !line.ends_with(",final"))
        .map(|line| line.split(',').next().unwrap().parse().unwrap())
        .collect()
}

/// What a run of `steps` logs, computed by hand: from `model`, the runner's step
/// (`ItraObjective::forward_step`) on `batch_of` each step's `S1` and `S2` indices, and Adam at
/// `lr` (burn-train's `Learner` in the tests). Returns each step's CE, matching term and total.
pub fn replay<I, M>(
    objective: &itra_core::ItraObjective,
    mut model: M,
    steps: &[(Vec<usize>, Vec<usize>)],
    batch_of: impl Fn(&[usize]) -> itra_core::LabelledBatch<I>,
    lr: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>)
where
    M: burn::module::Module + itra_core::FeatureClassifier<I>,
{
    let mut optim = burn::optim::AdamConfig::new().init();
    let (mut ce, mut term, mut total) = (Vec::new(), Vec::new(), Vec::new());
    for (s1, s2) in steps {
        let batch = itra_core::PairBatch { first: batch_of(s1), second: Some(batch_of(s2)) };
        let out = objective.forward_step(&model, batch).unwrap();
        ce.push(out.parts.ce.clone().into_scalar::<f64>());
        term.push(out.parts.regularizer.clone().unwrap().into_scalar::<f64>());
        total.push(out.parts.total.clone().into_scalar::<f64>());
        let grads = burn::optim::GradientsParams::from_grads(out.parts.total.backward(), &model);
        model = optim.step(lr, model, grads);
    }
    (ce, term, total)
}

/// Every float parameter of `module`, in visiting order.
pub fn weights<M: burn::module::Module>(module: &M) -> Vec<f32> {
    struct Collect<'a>(&'a mut Vec<f32>);

    impl burn::module::ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<burn::tensor::Tensor<D>>) {
            self.0.extend(param.val().into_data().convert::<f32>().iter::<f32>());
        }
    }

    let mut values = Vec::new();
    module.visit(&mut Collect(&mut values));
    values
}
