//! The matching loss as one fused CPU operation on burn-flex: forward and gradient in a single
//! host pass, behind Burn's backend-extension API.
//!
//! [`crate::MmdLoss`]'s tensor form is about twenty operations on `[m, m]` float64 matrices
//! (`m = m1 + m2`), each with its autodiff node, its allocation and, on the way back, its
//! gradient. On the CPU, for the batch sizes of the paper, that bookkeeping costs more than the
//! arithmetic. Here the same computation (same formulas, same float64 precision, same
//! conventions) runs as one operation: the pooled Gram matrix through flex's float64 GEMM, then
//! the distances, the median bandwidth, the kernel values of same-group pairs, the per-group
//! MMDs and, when an input is tracked, its gradient, computed analytically in the same pass and
//! kept for the backward step, which only scales it by the incoming gradient.
//!
//! The gradient: with `c_i` the centred rows, `D_ij = ||c_i - c_j||^2`, `G_ij = dL/dD_ij`,
//! which is `-scale * w_i w_j K_ij / (2 sigma MMD_g)` for two rows of group `g` whose
//! `MMD^2_g >= eps` (zero otherwise), `dL/dc_i = 4 (sum_j G_ij c_i - (G C)_i)`. `sigma` is
//! detached, as everywhere. With [`Matching::Mmd2`] the groups contribute `MMD^2_g` itself, so
//! `G_ij = scale * w_i w_j K_ij * (-1/sigma)`: the same without `1 / (2 MMD_g)` and with no floor.
//!
//! Only flex (with or without autodiff) and `f32`/`f64` features take this path; every other
//! backend runs the tensor form.

use burn::tensor::{DType, Tensor};

use crate::kernel::Bandwidth;
use crate::mmd::Matching;

/// The per-row description of a weighted MMD: which group a pooled row belongs to and with what
/// weight (`1/n1_g` for a row of `H1`, `-1/n2_g` for one of `H2`), and how the group MMDs are
/// combined: `scale * sum_g sqrt(max(MMD^2_g, eps))`, or `scale * sum_g MMD^2_g` for
/// [`Matching::Mmd2`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct MmdPlan {
    /// The group of each pooled row (rows of `H1`, then of `H2`); [`NO_GROUP`] for a row that
    /// enters no group.
    pub group: Vec<u32>,
    /// The weight of each pooled row in its group.
    pub weight: Vec<f64>,
    /// The number of groups.
    pub groups: usize,
    pub scale: f64,
    pub eps: f64,
    /// `Some(sigma)` for a fixed bandwidth, `None` for the median.
    pub fixed_sigma: Option<f64>,
    /// Whether a group contributes its MMD or its `MMD^2`.
    pub matching: Matching,
}

/// The group of a row that belongs to none (a class absent from the other batch).
pub(crate) const NO_GROUP: u32 = u32::MAX;

impl MmdPlan {
    pub fn new(group: Vec<u32>, weight: Vec<f64>, groups: usize, scale: f64, eps: f64, bandwidth: Bandwidth) -> Self {
        let fixed_sigma = match bandwidth {
            Bandwidth::Fixed(sigma) => Some(sigma),
            Bandwidth::Median => None,
        };
        MmdPlan { group, weight, groups, scale, eps, fixed_sigma, matching: Matching::Mmd }
    }

    /// The same plan with each group contributing as `matching` says.
    pub fn with_matching(mut self, matching: Matching) -> Self {
        self.matching = matching;
        self
    }

    /// A group's contribution to the value, before `scale`.
    #[cfg(feature = "flex")]
    fn term(&self, mmd_squared: f64) -> f64 {
        match self.matching {
            Matching::Mmd => mmd_squared.max(self.eps).sqrt(),
            Matching::Mmd2 => mmd_squared,
        }
    }

    /// `dL/dMMD^2_g` of a group: `scale / (2 MMD_g)` above the floor and 0 below it for
    /// [`Matching::Mmd`], `scale` for [`Matching::Mmd2`].
    #[cfg(feature = "flex")]
    fn slope(&self, mmd_squared: f64) -> f64 {
        match self.matching {
            Matching::Mmd if mmd_squared >= self.eps => self.scale * 0.5 / mmd_squared.sqrt(),
            Matching::Mmd => 0.0,
            Matching::Mmd2 => self.scale,
        }
    }

    /// The dense `[rows, groups]` weight matrix `W` of the tensor form (at least one column).
    pub fn dense_weights(&self) -> Vec<f64> {
        let columns = self.groups.max(1);
        let mut dense = vec![0.0; self.group.len() * columns];
        for (row, (&group, &weight)) in self.group.iter().zip(&self.weight).enumerate() {
            if group != NO_GROUP {
                dense[row * columns + group as usize] = weight;
            }
        }
        dense
    }
}

/// Whether [`weighted_mmd`] runs for features like `h1`.
pub(crate) fn applies(h1: &Tensor<2>) -> bool {
    matches!(h1.dtype(), DType::F32 | DType::F64) && crate::backend::is_flex(&h1.device())
}

/// What the fused operation reports besides the value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Facts {
    pub sigma: f64,
    /// The input holding the first non-finite feature (`0` for `H1`, `1` for `H2`) and its value.
    pub first_non_finite: Option<(usize, f64)>,
}

/// `scale * sum_g sqrt(max(MMD^2_g, eps))` (or `scale * sum_g MMD^2_g`) of the pooled rows of
/// `h1` and `h2`, as one fused operation. The caller checks [`applies`] first.
#[cfg(feature = "flex")]
pub(crate) fn weighted_mmd(h1: Tensor<2>, h2: Tensor<2>, plan: MmdPlan) -> (Tensor<1>, Facts) {
    let (value, facts) = dispatch::weighted_mmd(h1, h2, plan);
    let facts: Vec<f64> = facts.into_data().iter::<f64>().collect();
    let first_non_finite = match facts[1] as usize {
        0 => None,
        which => Some((which - 1, facts[2])),
    };
    (value, Facts { sigma: facts[0], first_non_finite })
}

#[cfg(not(feature = "flex"))]
pub(crate) fn weighted_mmd(_h1: Tensor<2>, _h2: Tensor<2>, _plan: MmdPlan) -> (Tensor<1>, Facts) {
    unreachable!("`applies` is false without the `flex` feature")
}

/// The host computation, in float64, on row-major flex tensors.
#[cfg(feature = "flex")]
pub(crate) mod host {
    use burn::backend::Flex;
    use burn::backend::flex::FlexTensor;
    use burn::backend::ops::FloatTensorOps;
    use burn::tensor::TensorData;

    use super::{MmdPlan, NO_GROUP};
    use crate::kernel::{median, sigma_from_median};

    /// Everything the forward pass produces.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Forward {
        pub value: f64,
        pub sigma: f64,
        /// `dL/dz` for rows `0..grad_rows` of the pooled matrix, row-major `[grad_rows, d]`.
        pub grad: Option<Vec<f64>>,
    }

    fn matrix(values: Vec<f64>, rows: usize, cols: usize) -> FlexTensor {
        FlexTensor::from_data(TensorData::new(values, [rows, cols]))
    }

    fn slice(tensor: &FlexTensor) -> &[f64] {
        tensor.as_slice::<f64>().expect("fused MMD: dense float64 matrix")
    }

    fn into_vec(tensor: FlexTensor) -> Vec<f64> {
        tensor.into_data().try_into_vec::<f64>().expect("fused MMD: float64 matrix")
    }

    /// The forward pass of the weighted MMD of the pooled `[m, d]` matrix `z`, with the gradient
    /// for its first `grad_rows` rows when `grad_rows > 0`.
    pub fn forward(mut z: Vec<f64>, m: usize, d: usize, plan: &MmdPlan, grad_rows: usize) -> Forward {
        debug_assert_eq!(z.len(), m * d);
        debug_assert_eq!(plan.group.len(), m);
        // Centre on the (detached) mean: distances are unchanged, cancellation is not.
        let mut mean = vec![0.0; d];
        for row in z.chunks_exact(d) {
            mean.iter_mut().zip(row).for_each(|(acc, &v)| *acc += v);
        }
        mean.iter_mut().for_each(|v| *v /= m as f64);
        for row in z.chunks_exact_mut(d) {
            row.iter_mut().zip(&mean).for_each(|(v, &mu)| *v -= mu);
        }
        let c = matrix(z, m, d);
        let norms: Vec<f64> = slice(&c).chunks_exact(d).map(|row| row.iter().map(|v| v * v).sum()).collect();
        // Squared distances `n_i + n_j - 2 <c_i, c_j>` in the Gram matrix's buffer; the raw value,
        // before clamping at zero, decides whether the clamp passes the gradient (as
        // `clamp_min` does: where `>= 0`).
        let mut buffer = into_vec(Flex::float_matmul(c.clone(), Flex::float_transpose(c.clone())));
        for (row, &ni) in buffer.chunks_exact_mut(m).zip(&norms) {
            row.iter_mut().zip(&norms).for_each(|(v, &nj)| *v = (ni + nj) - *v * 2.0);
        }
        let sigma = match plan.fixed_sigma {
            Some(sigma) => sigma,
            None => {
                // The unordered pairs `i < j` of the clamped distances, as the tensor form reads.
                let mut pairs = Vec::with_capacity(m * m.saturating_sub(1) / 2);
                for (i, row) in buffer.chunks_exact(m).enumerate() {
                    pairs.extend(row[i + 1..].iter().map(|&v| v.max(0.0)));
                }
                sigma_from_median(median(pairs))
            }
        };
        let factor = -1.0 / sigma;

        // One pass over the pairs: the kernel value of each same-group pair (no other pair enters
        // any group's MMD) accumulates into its group's MMD^2, and the buffer's entry becomes
        // `w_i w_j dK_ij/dD_ij = w_i w_j K_ij factor` (0 where the group differs or the clamp
        // stops the gradient), which the gradient's pass scales by `dL/dMMD^2_g`.
        let mut mmd_squared = vec![0.0; plan.groups];
        for (i, row) in buffer.chunks_exact_mut(m).enumerate() {
            let gi = plan.group[i];
            if gi == NO_GROUP {
                row.fill(0.0);
                continue;
            }
            let wi = plan.weight[i];
            let mut acc = 0.0;
            for ((v, &gj), &wj) in row.iter_mut().zip(&plan.group).zip(&plan.weight) {
                if gj == gi {
                    let k = (v.max(0.0) * factor).exp();
                    acc += k * wj;
                    *v = if *v >= 0.0 { wi * wj * k * factor } else { 0.0 };
                } else {
                    *v = 0.0;
                }
            }
            mmd_squared[gi as usize] += wi * acc;
        }
        let value = plan.scale * mmd_squared.iter().map(|&v| plan.term(v)).sum::<f64>();
        if grad_rows == 0 {
            return Forward { value, sigma, grad: None };
        }

        // dL/dMMD^2_g (see `MmdPlan::slope`); then `G_ij = dL/dD_ij` for the rows that need a
        // gradient.
        let slope: Vec<f64> = mmd_squared.iter().map(|&v| plan.slope(v)).collect();
        buffer.truncate(grad_rows * m);
        let mut row_sums = vec![0.0; grad_rows];
        for (i, row) in buffer.chunks_exact_mut(m).enumerate() {
            let gi = plan.group[i];
            let slope = if gi == NO_GROUP { 0.0 } else { slope[gi as usize] };
            row.iter_mut().for_each(|v| *v *= slope);
            row_sums[i] = row.iter().sum();
        }
        // dL/dc_i = 4 (sum_j G_ij c_i - (G C)_i).
        let mut grad = into_vec(Flex::float_matmul(matrix(buffer, grad_rows, m), c.clone()));
        let c = slice(&c);
        for (i, out) in grad.chunks_exact_mut(d).enumerate() {
            let ci = &c[i * d..(i + 1) * d];
            for (o, &cv) in out.iter_mut().zip(ci) {
                *o = 4.0 * (row_sums[i] * cv - *o);
            }
        }
        Forward { value, sigma, grad: Some(grad) }
    }
}

#[cfg(feature = "flex")]
mod dispatch {
    use burn::backend::autodiff::Autodiff;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::flex::FlexTensor;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{AutodiffBackend, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
    use burn::prelude::*;
    use burn::tensor::{DType, TensorData};

    use super::MmdPlan;
    use super::host;

    /// The fused matching loss.
    #[backend_extension(Flex, Autodiff)]
    pub trait ItraLossOps: Backend {
        /// `(value [1] in the features' dtype, facts [3] in f64: sigma, 0 or 1 + the input
        /// holding the first non-finite feature, that value)`.
        fn itra_weighted_mmd(
            h1: FloatTensor<Self>,
            h2: FloatTensor<Self>,
            plan: MmdPlan,
        ) -> (FloatTensor<Self>, FloatTensor<Self>);
        /// The same, with the gradient of the value with respect to `h1` and `h2` when asked.
        #[allow(clippy::type_complexity)]
        fn itra_weighted_mmd_with_grad(
            h1: FloatTensor<Self>,
            h2: FloatTensor<Self>,
            plan: MmdPlan,
            grad_h1: bool,
            grad_h2: bool,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, Option<FloatTensor<Self>>, Option<FloatTensor<Self>>);
    }

    /// Appends the features to `z` as float64, row-major.
    fn append_features(z: &mut Vec<f64>, tensor: &FlexTensor) {
        if let Some(values) = tensor.as_slice::<f32>() {
            z.extend(values.iter().map(|&v| f64::from(v)));
        } else if let Some(values) = tensor.as_slice::<f64>() {
            z.extend_from_slice(values);
        } else {
            z.extend(tensor.to_contiguous().into_data().iter::<f64>());
        }
    }

    fn run(
        h1: &FlexTensor,
        h2: &FlexTensor,
        plan: &MmdPlan,
        grads: [bool; 2],
    ) -> (FlexTensor, FlexTensor, [Option<FlexTensor>; 2]) {
        let dtype = h1.dtype();
        let [m1, d] = [h1.shape()[0], h1.shape()[1]];
        let m2 = h2.shape()[0];
        let mut z = Vec::with_capacity((m1 + m2) * d);
        append_features(&mut z, h1);
        append_features(&mut z, h2);
        // The first non-finite feature, and whether it is in H1 (1) or H2 (2).
        let first = z.iter().position(|v| !v.is_finite()).map(|i| (if i < m1 * d { 1.0 } else { 2.0 }, z[i]));
        // The gradient rows needed: those of H1, or all of them when H2 is tracked.
        let grad_rows = if grads[1] {
            m1 + m2
        } else if grads[0] {
            m1
        } else {
            0
        };
        let mut forward = host::forward(z, m1 + m2, d, plan, grad_rows);
        if first.is_some() {
            // A NaN or infinity poisons the value and the gradient, as in the tensor form (whose
            // clamps and median would otherwise turn some of it into finite numbers here).
            forward.value = f64::NAN;
            if let Some(grad) = forward.grad.as_mut() {
                grad.fill(f64::NAN);
            }
        }
        let (which, bad) = first.unwrap_or((0.0, 0.0));
        let facts = FlexTensor::from_data(TensorData::new(vec![forward.sigma, which, bad], [3]));
        let value = FlexTensor::from_data(TensorData::new(vec![forward.value], [1]).convert_dtype(dtype));
        let mut out = [None, None];
        if let Some(grad) = forward.grad {
            // Each gradient in its input's dtype.
            let tensor = |rows: std::ops::Range<usize>, dtype: DType| {
                let values = grad[rows.start * d..rows.end * d].to_vec();
                FlexTensor::from_data(TensorData::new(values, [rows.len(), d]).convert_dtype(dtype))
            };
            out[0] = grads[0].then(|| tensor(0..m1, dtype));
            out[1] = grads[1].then(|| tensor(m1..m1 + m2, h2.dtype()));
        }
        (value, facts, out)
    }

    impl ItraLossOps for Flex {
        fn itra_weighted_mmd(h1: FlexTensor, h2: FlexTensor, plan: MmdPlan) -> (FlexTensor, FlexTensor) {
            let (value, facts, _) = run(&h1, &h2, &plan, [false, false]);
            (value, facts)
        }

        fn itra_weighted_mmd_with_grad(
            h1: FlexTensor,
            h2: FlexTensor,
            plan: MmdPlan,
            grad_h1: bool,
            grad_h2: bool,
        ) -> (FlexTensor, FlexTensor, Option<FlexTensor>, Option<FlexTensor>) {
            let (value, facts, [g1, g2]) = run(&h1, &h2, &plan, [grad_h1, grad_h2]);
            (value, facts, g1, g2)
        }
    }

    impl<B: Backend + ItraLossOps, C: CheckpointStrategy> ItraLossOps for Autodiff<B, C> {
        fn itra_weighted_mmd(
            h1: FloatTensor<Self>,
            h2: FloatTensor<Self>,
            plan: MmdPlan,
        ) -> (FloatTensor<Self>, FloatTensor<Self>) {
            #[derive(Debug)]
            struct MmdBackward;

            impl<B: Backend> Backward<B, 2> for MmdBackward {
                /// The gradients of the value with respect to `h1` and `h2`, from the forward.
                type State = (Option<B::FloatTensorPrimitive>, Option<B::FloatTensorPrimitive>);

                fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
                    let [node_h1, node_h2] = ops.parents;
                    let grad = grads.consume::<B>(&ops.node);
                    let upstream = B::float_reshape(grad, [1, 1].into());
                    let (grad_h1, grad_h2) = ops.state;
                    for (node, local) in [(node_h1, grad_h1), (node_h2, grad_h2)] {
                        if let (Some(node), Some(local)) = (node, local) {
                            grads.register::<B>(node.id, B::float_mul(local, upstream.clone()));
                        }
                    }
                }
            }

            let wanted = [h1.is_tracked(), h2.is_tracked()];
            match MmdBackward.prepare::<C>([h1.node(), h2.node()]).compute_bound().stateful() {
                OpsKind::Tracked(prep) => {
                    let (value, facts, g1, g2) = B::itra_weighted_mmd_with_grad(
                        h1.into_primitive(),
                        h2.into_primitive(),
                        plan,
                        wanted[0],
                        wanted[1],
                    );
                    (prep.finish((g1, g2), value), <Self as AutodiffBackend>::from_inner(facts))
                }
                OpsKind::UnTracked(prep) => {
                    let (value, facts) = B::itra_weighted_mmd(h1.into_primitive(), h2.into_primitive(), plan);
                    (prep.finish(value), <Self as AutodiffBackend>::from_inner(facts))
                }
            }
        }

        fn itra_weighted_mmd_with_grad(
            _h1: FloatTensor<Self>,
            _h2: FloatTensor<Self>,
            _plan: MmdPlan,
            _grad_h1: bool,
            _grad_h2: bool,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, Option<FloatTensor<Self>>, Option<FloatTensor<Self>>) {
            // Only the inner backend's form is called, from `itra_weighted_mmd`'s forward.
            panic!("itra_weighted_mmd_with_grad is the inner backend's operation; call itra_weighted_mmd")
        }
    }

    /// [`ItraLossOps::itra_weighted_mmd`] on high-level tensors.
    pub(super) fn weighted_mmd(h1: Tensor<2>, h2: Tensor<2>, plan: MmdPlan) -> (Tensor<1>, Tensor<1>) {
        let (value, facts) = <Dispatch as ItraLossOps>::itra_weighted_mmd(h1.into_dispatch(), h2.into_dispatch(), plan);
        (Tensor::from_dispatch(value), Tensor::from_dispatch(facts))
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use burn::tensor::{Device, FloatDType, Tensor, TensorData};

    use crate::{Bandwidth, Matching, MmdLossConfig, Normalize};

    /// Deterministic pseudo-random features in `[-scale, scale)` (a 64-bit LCG).
    fn features(rows: usize, width: usize, seed: u64, scale: f32, device: &Device) -> Tensor<2> {
        let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let values: Vec<f32> = (0..rows * width)
            .map(|_| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect();
        Tensor::from_data(TensorData::new(values, [rows, width]), device)
    }

    fn host(t: Tensor<2>) -> Vec<f64> {
        t.into_data().iter::<f64>().collect()
    }

    /// `|a - b| <= tol * max(1, max |b|)` elementwise.
    fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        let scale = want.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= tol * scale, "{what}[{i}]: fused {g:e}, tensor form {w:e} (scale {scale:e})");
        }
    }

    struct Case {
        m1: usize,
        m2: usize,
        width: usize,
        scale: f32,
        /// Labels for ITRA-c, `None` for ITRA.
        labels: Option<(Vec<usize>, Vec<usize>, usize)>,
        config: MmdLossConfig,
        /// Whether `h2` carries a gradient (full mode) or not (detached, cached).
        h2_tracked: bool,
    }

    /// Value, sigma, classes and both gradients of the fused form equal the tensor form's.
    fn compare(case: &Case, seed: u64, dtype: FloatDType) {
        let device = Device::flex().autodiff();
        let mut results = Vec::new();
        for fused in [true, false] {
            let h1 = features(case.m1, case.width, seed, case.scale, &device).cast(dtype).require_grad();
            let mut h2 = features(case.m2, case.width, seed + 1, case.scale, &device).cast(dtype);
            if case.h2_tracked {
                h2 = h2.require_grad();
            }
            let loss = case.config.clone().with_fused(fused).init();
            let out = match &case.labels {
                None => loss.try_forward(h1.clone(), h2.clone()),
                Some((y1, y2, k)) => loss.try_forward_class_conditional_host(h1.clone(), y1, h2.clone(), y2, *k),
            }
            .expect("valid inputs");
            let value: f64 = out.value.clone().into_scalar();
            assert_eq!(out.value.dtype(), dtype.into(), "the value keeps the features' dtype");
            let grads = out.value.backward();
            let g1 = h1.grad(&grads).map(host);
            let g2 = h2.grad(&grads).map(host);
            results.push((value, out.sigma, out.classes_matched, g1, g2));
        }
        let (fused, tensor) = (&results[0], &results[1]);
        let tol = if dtype == FloatDType::F64 { 1e-10 } else { 1e-5 };
        assert_close("value", &[fused.0], &[tensor.0], tol);
        assert_close("sigma", &[fused.1], &[tensor.1], 1e-12);
        assert_eq!(fused.2, tensor.2, "classes matched");
        let zeros1 = vec![0.0; case.m1 * case.width];
        let zeros2 = vec![0.0; case.m2 * case.width];
        assert_close("grad h1", fused.3.as_deref().unwrap_or(&zeros1), tensor.3.as_deref().unwrap_or(&zeros1), tol);
        assert_eq!(fused.4.is_some(), case.h2_tracked, "h2 has a gradient exactly when tracked");
        assert_close("grad h2", fused.4.as_deref().unwrap_or(&zeros2), tensor.4.as_deref().unwrap_or(&zeros2), tol);
    }

    fn labels(count: usize, classes: usize, seed: usize) -> Vec<usize> {
        (0..count).map(|i| (i * 7 + seed * 3 + i / 3) % classes).collect()
    }

    #[test]
    fn itra_matches_the_tensor_form() {
        for (seed, (m1, m2, width, scale)) in
            [(5, 7, 3, 1.0), (16, 16, 32, 3.0), (33, 17, 9, 0.05), (1, 1, 4, 1.0)].into_iter().enumerate()
        {
            for h2_tracked in [true, false] {
                let case = Case { m1, m2, width, scale, labels: None, config: MmdLossConfig::new(), h2_tracked };
                compare(&case, seed as u64, FloatDType::F32);
            }
        }
    }

    #[test]
    fn mmd2_matches_the_tensor_form() {
        let mmd2 = || MmdLossConfig::new().with_matching(Matching::Mmd2);
        for (seed, (m1, m2, width, scale)) in
            [(5, 7, 3, 1.0), (16, 16, 32, 3.0), (1, 1, 4, 1.0)].into_iter().enumerate()
        {
            for h2_tracked in [true, false] {
                let case = Case { m1, m2, width, scale, labels: None, config: mmd2(), h2_tracked };
                compare(&case, seed as u64, FloatDType::F32);
                compare(&case, seed as u64, FloatDType::F64);
            }
        }
        // ITRA-c with absent classes, both normalisations, and no class in common.
        let y1 = [labels(20, 4, 1), vec![4, 4]].concat();
        let y2 = [labels(18, 4, 2), vec![5]].concat();
        for normalize in [Normalize::Present, Normalize::AllClasses] {
            let case = Case {
                m1: y1.len(),
                m2: y2.len(),
                width: 12,
                scale: 2.0,
                labels: Some((y1.clone(), y2.clone(), 6)),
                config: mmd2().with_normalize(normalize),
                h2_tracked: true,
            };
            compare(&case, 21, FloatDType::F32);
            compare(&case, 22, FloatDType::F64);
        }
        let disjoint = Case {
            m1: 9,
            m2: 6,
            width: 5,
            scale: 1.0,
            labels: Some((vec![0; 9], vec![1; 6], 2)),
            config: mmd2().with_bandwidth(Bandwidth::Fixed(0.7)),
            h2_tracked: true,
        };
        compare(&disjoint, 4, FloatDType::F32);
    }

    #[test]
    fn mmd2_is_the_square_of_mmd_and_has_no_floor() {
        // Above the floor, MMD^2 = MMD squared, in both forms, and its gradient is
        // 2 MMD times MMD's.
        let device = Device::flex().autodiff();
        for fused in [true, false] {
            let run = |matching| {
                let h1 = features(7, 5, 1, 1.0, &device).cast(FloatDType::F64).require_grad();
                let h2 = features(6, 5, 2, 1.0, &device).cast(FloatDType::F64).require_grad();
                let loss = MmdLossConfig::new().with_matching(matching).with_fused(fused).init();
                let out = loss.forward(h1.clone(), h2);
                let value: f64 = out.value.clone().into_scalar();
                (value, host(h1.grad(&out.value.backward()).expect("h1 is tracked")))
            };
            let (mmd, grad_mmd) = run(Matching::Mmd);
            let (mmd2, grad_mmd2) = run(Matching::Mmd2);
            assert!((mmd2 - mmd * mmd).abs() < 1e-12, "fused={fused}: {mmd2} vs {mmd}^2");
            let want: Vec<f64> = grad_mmd.iter().map(|g| 2.0 * mmd * g).collect();
            assert_close("grad of mmd2", &grad_mmd2, &want, 1e-10);

            // Identical batches: MMD sits on its floor sqrt(eps); MMD^2 is 0 (to rounding),
            // and its gradient 0 as well, without any floor to stop it.
            let rows = features(4, 3, 9, 1.0, &device).cast(FloatDType::F64);
            let h1 = rows.clone().require_grad();
            let loss = MmdLossConfig::new().with_matching(Matching::Mmd2).with_fused(fused).init();
            let out = loss.forward(h1.clone(), rows.require_grad());
            let value: f64 = out.value.clone().into_scalar();
            assert!(value.abs() < 1e-12, "identical batches, fused={fused}: {value}");
            let g1 = host(h1.grad(&out.value.backward()).expect("h1 is tracked"));
            assert!(g1.iter().all(|g| g.abs() < 1e-12), "fused={fused}: {g1:?}");
        }
    }

    #[test]
    fn itra_c_matches_the_tensor_form() {
        // Class 4 only in S1 and class 5 only in S2: rows in no group.
        let y1 = [labels(20, 4, 1), vec![4, 4]].concat();
        let y2 = [labels(18, 4, 2), vec![5]].concat();
        for normalize in [Normalize::Present, Normalize::AllClasses] {
            for h2_tracked in [true, false] {
                let case = Case {
                    m1: y1.len(),
                    m2: y2.len(),
                    width: 12,
                    scale: 2.0,
                    labels: Some((y1.clone(), y2.clone(), 6)),
                    config: MmdLossConfig::new().with_normalize(normalize),
                    h2_tracked,
                };
                compare(&case, 11, FloatDType::F32);
                compare(&case, 12, FloatDType::F64);
            }
        }
    }

    #[test]
    fn edge_cases_match_the_tensor_form() {
        // A fixed bandwidth; no class in both batches (value 0, no gradient); a class whose MMD
        // sits on the floor (one identical row on each side).
        let fixed = Case {
            m1: 9,
            m2: 6,
            width: 5,
            scale: 1.0,
            labels: Some((labels(9, 3, 0), labels(6, 3, 1), 3)),
            config: MmdLossConfig::new().with_bandwidth(Bandwidth::Fixed(0.7)),
            h2_tracked: true,
        };
        compare(&fixed, 3, FloatDType::F32);
        let disjoint = Case { labels: Some((vec![0; 9], vec![1; 6], 2)), ..fixed };
        compare(&disjoint, 4, FloatDType::F32);

        let device = Device::flex().autodiff();
        let rows = features(4, 3, 9, 1.0, &device);
        for fused in [true, false] {
            let h1 = rows.clone().require_grad();
            let h2 = rows.clone().require_grad();
            let out = MmdLossConfig::new().with_fused(fused).init().forward(h1.clone(), h2.clone());
            let value: f64 = out.value.clone().into_scalar();
            assert!((value - 1e-4).abs() < 1e-9, "identical batches sit on the floor, fused={fused}: {value}");
            let grads = out.value.backward();
            let g1 = h1.grad(&grads).map_or(vec![0.0], host);
            assert!(g1.iter().all(|&g| g == 0.0), "no gradient below the floor, fused={fused}");
        }
    }

    #[test]
    fn works_without_autodiff_and_reports_non_finite_features() {
        let device = Device::flex();
        let h1 = features(6, 4, 1, 1.0, &device);
        let h2 = features(5, 4, 2, 1.0, &device);
        let fused: f64 = MmdLossConfig::new().init().forward(h1.clone(), h2.clone()).value.into_scalar();
        let tensor: f64 = MmdLossConfig::new().with_fused(false).init().forward(h1.clone(), h2).value.into_scalar();
        assert_close("value", &[fused], &[tensor], 1e-6);

        let mut values: Vec<f32> = h1.into_data().iter::<f32>().collect();
        values[7] = f32::INFINITY;
        let bad = Tensor::<2>::from_data(TensorData::new(values, [6, 4]), &device);
        let good = features(5, 4, 2, 1.0, &device);
        let loss = MmdLossConfig::new().init();
        let err = loss.try_forward(good.clone(), bad.clone()).expect_err("infinity in h2");
        assert_eq!(err.to_string(), "h2 contains a non-finite value (infinity)");
        let err = loss.try_forward(bad.clone(), good.clone()).expect_err("infinity in h1");
        assert_eq!(err.to_string(), "h1 contains a non-finite value (infinity)");
        // Unchecked, the value is not finite either: nothing turns the infinity into a number.
        let unchecked = MmdLossConfig::new().with_check_finite(false).init();
        let value: f64 = unchecked.forward(bad, good).value.into_scalar();
        assert!(value.is_nan(), "an unchecked infinity gives a NaN loss, not {value}");
    }
}
