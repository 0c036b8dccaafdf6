//! Hot operations written in this project, behind Burn's backend-extension API.
//!
//! Burn-flex computes a convolution's weight gradient as a convolution of the transposed input
//! with the output gradient as its kernel, and its input gradient as a transposed convolution;
//! both pay layout copies and a generic 3-D path. [`conv2d`] replaces the forward and both
//! gradients with per-image im2col + GEMM kernels ([`conv`]) on flex; on every other backend
//! (CUDA, libtorch), for grouped convolutions and for non-`f32` data it is Burn's own `conv2d`.
//!
//! The routing: [`ItraKernelOps`] is a backend trait with a `Flex` implementation (the kernels)
//! and an `Autodiff<B>` implementation that records the forward and calls the backend's two
//! gradient kernels in the backward pass. `#[backend_extension]` generates the `Dispatch` glue.
//! [`set_own_kernels`] (or `ITRA_KERNELS=burn` in the environment; `ITRA_KERNELS=conv2d` keeps
//! one) switches back to Burn's operations, for A/B measurements.

mod buffer;
pub mod conv;
mod gemm;
pub mod norm;
pub mod norm_pool;
pub mod pool;
#[cfg(target_arch = "x86_64")]
mod pool_avx2;

use std::sync::atomic::{AtomicU8, Ordering};

use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::ops::ConvOptions;

pub use conv::ConvGeometry;
pub use norm::NormGeometry;
pub use pool::PoolGeometry;

/// Which of this crate's kernels are on: a bit per [`Kernel`], and `UNSET` until first read.
static OWN_KERNELS: AtomicU8 = AtomicU8::new(UNSET);
const UNSET: u8 = 0x80;

/// The operations this crate has kernels for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// [`conv2d`].
    Conv2d = 1,
    /// [`batch_norm`].
    BatchNorm = 2,
    /// [`max_pool2d`].
    MaxPool2d = 4,
}

const ALL: u8 = Kernel::Conv2d as u8 | Kernel::BatchNorm as u8 | Kernel::MaxPool2d as u8;

/// Whether `kernel` is used where it applies. On by default; `ITRA_KERNELS` in the environment
/// chooses otherwise: `burn` (none of ours), `conv2d`, `batch_norm`, `max_pool2d`, or a
/// comma-separated list.
pub fn own_kernel_enabled(kernel: Kernel) -> bool {
    let mut bits = OWN_KERNELS.load(Ordering::Relaxed);
    if bits == UNSET {
        bits = match std::env::var("ITRA_KERNELS") {
            Ok(value) => value.split(',').fold(0, |bits, name| match name.trim() {
                "conv2d" => bits | Kernel::Conv2d as u8,
                "batch_norm" => bits | Kernel::BatchNorm as u8,
                "max_pool2d" => bits | Kernel::MaxPool2d as u8,
                "all" => ALL,
                _ => bits,
            }),
            Err(_) => ALL,
        };
        OWN_KERNELS.store(bits, Ordering::Relaxed);
    }
    bits & kernel as u8 != 0
}

/// Switches all of this crate's kernels on or off for the whole process (benchmarks).
pub fn set_own_kernels(enabled: bool) {
    OWN_KERNELS.store(if enabled { ALL } else { 0 }, Ordering::Relaxed);
}

/// 2-D convolution, `x` `[batch, c_in, h, w]` with `weight` `[c_out, c_in / groups, kh, kw]`,
/// exactly as `burn::tensor::module::conv2d`, through this crate's kernels where they apply.
pub fn conv2d(x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>, options: ConvOptions<2>) -> Tensor<4> {
    let applies = own_kernel_enabled(Kernel::Conv2d)
        && !options.is_asymmetric()
        && x.dtype() == DType::F32
        && weight.dtype() == DType::F32
        && itra_core::backend::is_flex(&x.device());
    if !applies {
        return burn::tensor::module::conv2d(x, weight, bias, options);
    }
    let [_, c_in, h, w] = x.dims();
    let [c_out, c_in_w, kh, kw] = weight.dims();
    let geometry = geometry(&[1, c_in, h, w], &[c_out, c_in_w, kh, kw], &options);
    let dense = options.groups == 1 && c_in == c_in_w;
    if !(dense || is_depthwise(c_in, &[c_out, c_in_w], options.groups)) || !geometry.is_valid() {
        // Burn's op reports the shape error in its own words.
        return burn::tensor::module::conv2d(x, weight, bias, options);
    }
    let out = dispatch::conv2d(x, weight, options);
    match bias {
        Some(bias) => out + bias.reshape([1, c_out, 1, 1]),
        None => out,
    }
}

/// `bn` applied to `x` as `BatchNorm::forward` does (batch statistics and a running-statistics
/// update when training, the running statistics otherwise), followed by a ReLU when `relu` is set.
/// Training on flex goes through the fused kernels of [`norm`].
pub fn batch_norm(bn: &BatchNorm, x: Tensor<4>, relu: bool) -> Tensor<4> {
    if !fused_batch_norm_applies(bn, &x) {
        let out = bn.forward(x);
        return if relu { burn::tensor::activation::relu(out) } else { out };
    }
    let (out, mean, variance) = dispatch::batch_norm_train(x, bn.gamma.val(), bn.beta.val(), bn.epsilon, relu);
    update_running_statistics(bn, mean, variance);
    out
}

/// Whether [`batch_norm`] takes the fused kernels for `x` in `bn`.
fn fused_batch_norm_applies(bn: &BatchNorm, x: &Tensor<4>) -> bool {
    let device = x.device();
    device.is_autodiff()
        && bn.training.is_enabled()
        && own_kernel_enabled(Kernel::BatchNorm)
        && x.dtype() == DType::F32
        && bn.gamma.val().dtype() == DType::F32
        && x.dims()[1] == bn.gamma.dims()[0]
        && itra_core::backend::is_flex(&device)
}

/// The running statistics exactly as burn-nn's `BatchNorm::forward_train` updates them.
fn update_running_statistics(bn: &BatchNorm, mean: Tensor<1>, variance: Tensor<1>) {
    let device = mean.device();
    let running_mean = bn.running_mean.value_sync().to_device(&device);
    let running_var = bn.running_var.value_sync().to_device(&device);
    let running_mean = running_mean.mul_scalar(1.0 - bn.momentum).add(mean.detach().mul_scalar(bn.momentum));
    let running_var = running_var.mul_scalar(1.0 - bn.momentum).add(variance.detach().mul_scalar(bn.momentum));
    bn.running_mean.update(running_mean.detach());
    bn.running_var.update(running_var.detach());
}

/// `pool(relu(bn(x)))`, the same numbers as [`max_pool2d`] after [`batch_norm`] with its ReLU: in
/// one fused operation ([`norm_pool`]) when both of those would take this crate's kernels in
/// training and the pool is 2x2 with stride 2 and no padding; the two apart otherwise.
pub fn batch_norm_relu_max_pool2d(bn: &BatchNorm, pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    let applies = fused_batch_norm_applies(bn, &x)
        && own_kernel_enabled(Kernel::MaxPool2d)
        && symmetric_padding(pool) == Some([0, 0])
        && pool.kernel_size == [2, 2]
        && pool.stride == [2, 2]
        && pool.dilation == [1, 1]
        && !pool.ceil_mode
        && x.dims()[2] >= 2
        && x.dims()[3] >= 2;
    if !applies {
        // Also a plane smaller than the window: the pool reports that in its own words.
        return max_pool2d(pool, batch_norm(bn, x, true));
    }
    let (out, mean, variance) = dispatch::batch_norm_relu_pool2x2_train(x, bn.gamma.val(), bn.beta.val(), bn.epsilon);
    update_running_statistics(bn, mean, variance);
    out
}

/// `pool` applied to `x` as `MaxPool2d::forward` does, through [`pool`]'s kernels on flex for
/// explicit symmetric padding, dilation 1 and floor mode.
pub fn max_pool2d(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    let padding = symmetric_padding(pool);
    let [batch, channels, h, w] = x.dims();
    let applies = own_kernel_enabled(Kernel::MaxPool2d)
        && pool.dilation == [1, 1]
        && !pool.ceil_mode
        && x.dtype() == DType::F32
        && itra_core::backend::is_flex(&x.device());
    match padding {
        Some(padding)
            if applies
                && PoolGeometry {
                    planes: batch * channels,
                    h,
                    w,
                    kernel: pool.kernel_size,
                    stride: pool.stride,
                    padding,
                }
                .is_valid() =>
        {
            dispatch::max_pool2d(x, pool.kernel_size, pool.stride, padding)
        }
        _ => pool.forward(x),
    }
}

/// The pool's `[rows, columns]` padding when it is explicit and the same on both sides (or none).
fn symmetric_padding(pool: &MaxPool2d) -> Option<[usize; 2]> {
    match pool.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => Some([top, left]),
        PaddingConfig2d::Valid => Some([0, 0]),
        _ => None,
    }
}

/// `groups = c_in = c_out` with one input channel per filter: MobileNetV2's 3x3 convolutions.
fn is_depthwise(c_in: usize, weight: &[usize], groups: usize) -> bool {
    groups > 1 && groups == c_in && weight[0] == c_in && weight[1] == 1
}

fn geometry(x: &[usize], w: &[usize], options: &ConvOptions<2>) -> ConvGeometry {
    ConvGeometry {
        batch: x[0],
        c_in: x[1],
        h: x[2],
        w: x[3],
        c_out: w[0],
        kh: w[2],
        kw: w[3],
        stride: options.stride,
        padding: options.padding_begin(),
        dilation: options.dilation,
    }
}

#[cfg(feature = "flex")]
mod dispatch {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::autodiff::{Autodiff, NodeId};
    use burn::backend::flex::FlexTensor;
    use burn::backend::ops::{ActivationOps, FloatTensorOps, ModuleOps};
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{AutodiffBackend, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
    use burn::prelude::*;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::{DType, TensorData};

    use super::{conv, geometry, norm, norm_pool, pool};

    /// The operations this crate implements for a backend.
    #[backend_extension(Flex, Autodiff)]
    pub trait ItraKernelOps: Backend {
        /// Bias-free `groups = 1` convolution with symmetric padding.
        fn itra_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self>;
        /// Its gradient with respect to `x`.
        fn itra_conv2d_x_backward(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            options: ConvOptions<2>,
        ) -> FloatTensor<Self>;
        /// Its gradient with respect to `weight`.
        fn itra_conv2d_weight_backward(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            options: ConvOptions<2>,
        ) -> FloatTensor<Self>;
        /// Batch norm with batch statistics, then a ReLU when `relu`: `(output, mean, variance)`
        /// with Burn's biased variance.
        fn itra_batch_norm_train(
            x: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            beta: FloatTensor<Self>,
            epsilon: f64,
            relu: bool,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
        /// Its gradients `(x, gamma, beta)`, given the forward's output and statistics. The output
        /// is read only with `relu`; without it any tensor of `x`'s shape may stand in for it.
        #[allow(clippy::too_many_arguments)]
        fn itra_batch_norm_train_backward(
            x: FloatTensor<Self>,
            output: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            mean: FloatTensor<Self>,
            variance: FloatTensor<Self>,
            epsilon: f64,
            relu: bool,
            grad: FloatTensor<Self>,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
        /// Batch norm with batch statistics, ReLU, then a 2x2 stride-2 max pool (floor mode):
        /// `(pooled, mean, variance, scale_offset)`, the last `[2, channels]`, the normalisation's
        /// `a` and `b` for the backward.
        fn itra_batch_norm_relu_pool2x2_train(
            x: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            beta: FloatTensor<Self>,
            epsilon: f64,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
        /// Its gradients `(x, gamma, beta)`, given the forward's statistics and `scale_offset`.
        #[allow(clippy::too_many_arguments)]
        fn itra_batch_norm_relu_pool2x2_train_backward(
            x: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            mean: FloatTensor<Self>,
            variance: FloatTensor<Self>,
            scale_offset: FloatTensor<Self>,
            epsilon: f64,
            grad: FloatTensor<Self>,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
        /// 2-D max pooling, dilation 1, floor mode.
        fn itra_max_pool2d(
            x: FloatTensor<Self>,
            kernel: [usize; 2],
            stride: [usize; 2],
            padding: [usize; 2],
        ) -> FloatTensor<Self>;
        /// Its gradient with respect to `x`.
        fn itra_max_pool2d_backward(
            x: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            kernel: [usize; 2],
            stride: [usize; 2],
            padding: [usize; 2],
        ) -> FloatTensor<Self>;
    }

    /// The tensor's `f32` elements in row-major order: borrowed when it is already dense.
    fn dense(tensor: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
        match tensor.as_slice::<f32>() {
            Some(values) => std::borrow::Cow::Borrowed(values),
            None => std::borrow::Cow::Owned(
                tensor.to_contiguous().into_data().try_into_vec::<f32>().expect("flex kernels: f32 tensor"),
            ),
        }
    }

    /// The tensor's `f32` elements to overwrite, where it alone owns storage that holds exactly
    /// them in row-major order: a backward then writes its input gradient over a saved input the
    /// graph no longer needs, instead of allocating and zeroing a tensor of the same size.
    fn exclusive(tensor: &mut FlexTensor) -> Option<&mut [f32]> {
        let len = tensor.shape().num_elements();
        if tensor.dtype() != DType::F32 || tensor.layout().contiguous_offsets() != Some((0, len)) {
            return None;
        }
        tensor.try_storage_mut::<f32>().filter(|values| values.len() == len)
    }

    fn tensor(values: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
        FlexTensor::from_data(TensorData::new(values, shape))
    }

    fn dims(tensor: &FlexTensor) -> [usize; 4] {
        let shape = tensor.shape();
        [shape[0], shape[1], shape[2], shape[3]]
    }

    impl ItraKernelOps for Flex {
        fn itra_conv2d(x: FlexTensor, weight: FlexTensor, options: ConvOptions<2>) -> FlexTensor {
            if x.dtype() != DType::F32 {
                return <Flex as ModuleOps<Flex>>::conv2d(x, weight, None, options);
            }
            let g = geometry(&dims(&x), &dims(&weight), &options);
            let out = match kind(&g, &weight, &options) {
                ConvKind::Dense => conv::conv2d_forward(&g, &dense(&x), &dense(&weight)),
                ConvKind::Depthwise => conv::depthwise_forward(&g, &dense(&x), &dense(&weight)),
                ConvKind::Other => return <Flex as ModuleOps<Flex>>::conv2d(x, weight, None, options),
            };
            tensor(out, [g.batch, g.c_out, g.out_h(), g.out_w()])
        }

        fn itra_conv2d_x_backward(
            x: FlexTensor,
            weight: FlexTensor,
            grad: FlexTensor,
            options: ConvOptions<2>,
        ) -> FlexTensor {
            if x.dtype() != DType::F32 {
                return <Flex as ModuleOps<Flex>>::conv2d_x_backward(x, weight, grad, options);
            }
            let g = geometry(&dims(&x), &dims(&weight), &options);
            let dx = match kind(&g, &weight, &options) {
                ConvKind::Dense => conv::conv2d_x_backward(&g, &dense(&weight), &dense(&grad)),
                ConvKind::Depthwise => conv::depthwise_x_backward(&g, &dense(&weight), &dense(&grad)),
                ConvKind::Other => return <Flex as ModuleOps<Flex>>::conv2d_x_backward(x, weight, grad, options),
            };
            tensor(dx, [g.batch, g.c_in, g.h, g.w])
        }

        fn itra_conv2d_weight_backward(
            x: FlexTensor,
            weight: FlexTensor,
            grad: FlexTensor,
            options: ConvOptions<2>,
        ) -> FlexTensor {
            if x.dtype() != DType::F32 {
                return <Flex as ModuleOps<Flex>>::conv2d_weight_backward(x, weight, grad, options);
            }
            let g = geometry(&dims(&x), &dims(&weight), &options);
            let dw = match kind(&g, &weight, &options) {
                ConvKind::Dense => conv::conv2d_weight_backward(&g, &dense(&x), &dense(&grad)),
                ConvKind::Depthwise => conv::depthwise_weight_backward(&g, &dense(&x), &dense(&grad)),
                ConvKind::Other => return <Flex as ModuleOps<Flex>>::conv2d_weight_backward(x, weight, grad, options),
            };
            tensor(dw, dims(&weight))
        }

        fn itra_batch_norm_train(
            x: FlexTensor,
            gamma: FlexTensor,
            beta: FlexTensor,
            epsilon: f64,
            relu: bool,
        ) -> (FlexTensor, FlexTensor, FlexTensor) {
            let shape = x.shape();
            if x.dtype() != DType::F32 {
                let result = <Flex as ModuleOps<Flex>>::batch_norm_train(x, gamma, beta, epsilon);
                let output = if relu { <Flex as ActivationOps<Flex>>::relu(result.output) } else { result.output };
                return (output, result.mean, result.variance);
            }
            let g = norm_geometry(&shape);
            let (out, mean, var) =
                norm::batch_norm_train_forward(&g, &dense(&x), &dense(&gamma), &dense(&beta), epsilon, relu);
            (
                FlexTensor::from_data(TensorData::new(out, shape)),
                FlexTensor::from_data(TensorData::new(mean, [g.channels])),
                FlexTensor::from_data(TensorData::new(var, [g.channels])),
            )
        }

        fn itra_batch_norm_train_backward(
            x: FlexTensor,
            output: FlexTensor,
            gamma: FlexTensor,
            mean: FlexTensor,
            variance: FlexTensor,
            epsilon: f64,
            relu: bool,
            grad: FlexTensor,
        ) -> (FlexTensor, FlexTensor, FlexTensor) {
            let shape = x.shape();
            if x.dtype() != DType::F32 {
                let grad = if relu {
                    let dead = Flex::float_lower_equal_elem(output, 0.0.into(), burn::tensor::BoolStore::Native);
                    Flex::float_mask_fill(grad, dead, 0.0.into())
                } else {
                    grad
                };
                let result =
                    <Flex as ModuleOps<Flex>>::batch_norm_train_backward(x, gamma, mean, variance, epsilon, grad);
                return (result.x_grad, result.gamma_grad, result.beta_grad);
            }
            let g = norm_geometry(&shape);
            let (gamma, mean, variance) = (dense(&gamma), dense(&mean), dense(&variance));
            let (output, grad) = (dense(&output), dense(&grad));
            let mut x = x;
            let (dx, dgamma, dbeta) = match exclusive(&mut x) {
                Some(x_dx) => {
                    let (dgamma, dbeta) = norm::batch_norm_train_backward_in_place(
                        &g, x_dx, &output, &gamma, &mean, &variance, epsilon, relu, &grad,
                    );
                    (x, dgamma, dbeta)
                }
                None => {
                    let (dx, dgamma, dbeta) = norm::batch_norm_train_backward(
                        &g,
                        &dense(&x),
                        &output,
                        &gamma,
                        &mean,
                        &variance,
                        epsilon,
                        relu,
                        &grad,
                    );
                    (FlexTensor::from_data(TensorData::new(dx, shape)), dgamma, dbeta)
                }
            };
            (
                dx,
                FlexTensor::from_data(TensorData::new(dgamma, [g.channels])),
                FlexTensor::from_data(TensorData::new(dbeta, [g.channels])),
            )
        }

        fn itra_batch_norm_relu_pool2x2_train(
            x: FlexTensor,
            gamma: FlexTensor,
            beta: FlexTensor,
            epsilon: f64,
        ) -> (FlexTensor, FlexTensor, FlexTensor, FlexTensor) {
            let g = norm_pool_geometry(&dims(&x));
            let (out, mean, var, scale, offset) =
                norm_pool::forward(&g, &dense(&x), &dense(&gamma), &dense(&beta), epsilon);
            let channels = g.channels;
            (
                tensor(out, [g.batch, channels, g.out_h(), g.out_w()]),
                FlexTensor::from_data(TensorData::new(mean, [channels])),
                FlexTensor::from_data(TensorData::new(var, [channels])),
                FlexTensor::from_data(TensorData::new([scale, offset].concat(), [2, channels])),
            )
        }

        fn itra_batch_norm_relu_pool2x2_train_backward(
            x: FlexTensor,
            gamma: FlexTensor,
            mean: FlexTensor,
            variance: FlexTensor,
            scale_offset: FlexTensor,
            epsilon: f64,
            grad: FlexTensor,
        ) -> (FlexTensor, FlexTensor, FlexTensor) {
            let shape = dims(&x);
            let g = norm_pool_geometry(&shape);
            let (scale_offset, grad) = (dense(&scale_offset), dense(&grad));
            let (gamma, mean, variance) = (dense(&gamma), dense(&mean), dense(&variance));
            let scale_offset = scale_offset.split_at(g.channels);
            let mut x = x;
            let (dx, dgamma, dbeta) = match exclusive(&mut x) {
                Some(x_dx) => {
                    let (dgamma, dbeta) =
                        norm_pool::backward_in_place(&g, x_dx, &gamma, &mean, &variance, scale_offset, epsilon, &grad);
                    (x, dgamma, dbeta)
                }
                None => {
                    let (dx, dgamma, dbeta) =
                        norm_pool::backward(&g, &dense(&x), &gamma, &mean, &variance, scale_offset, epsilon, &grad);
                    (tensor(dx, shape), dgamma, dbeta)
                }
            };
            (
                dx,
                FlexTensor::from_data(TensorData::new(dgamma, [g.channels])),
                FlexTensor::from_data(TensorData::new(dbeta, [g.channels])),
            )
        }

        fn itra_max_pool2d(x: FlexTensor, kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2]) -> FlexTensor {
            if x.dtype() != DType::F32 {
                return <Flex as ModuleOps<Flex>>::max_pool2d(x, kernel, stride, padding, [1, 1], false);
            }
            let g = pool_geometry(&dims(&x), kernel, stride, padding);
            let out = pool::max_pool2d_forward(&g, &dense(&x));
            let [batch, channels, _, _] = dims(&x);
            tensor(out, [batch, channels, g.out_h(), g.out_w()])
        }

        fn itra_max_pool2d_backward(
            x: FlexTensor,
            grad: FlexTensor,
            kernel: [usize; 2],
            stride: [usize; 2],
            padding: [usize; 2],
        ) -> FlexTensor {
            if x.dtype() != DType::F32 {
                let indices = <Flex as ModuleOps<Flex>>::max_pool2d_with_indices(
                    x.clone(),
                    kernel,
                    stride,
                    padding,
                    [1, 1],
                    false,
                    burn::tensor::IntDType::I64,
                )
                .indices;
                return <Flex as ModuleOps<Flex>>::max_pool2d_with_indices_backward(
                    x,
                    kernel,
                    stride,
                    padding,
                    [1, 1],
                    false,
                    grad,
                    indices,
                )
                .x_grad;
            }
            let g = pool_geometry(&dims(&x), kernel, stride, padding);
            let dx = pool::max_pool2d_backward(&g, &dense(&x), &dense(&grad));
            tensor(dx, dims(&x))
        }
    }

    fn pool_geometry(
        dims: &[usize; 4],
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> pool::PoolGeometry {
        pool::PoolGeometry { planes: dims[0] * dims[1], h: dims[2], w: dims[3], kernel, stride, padding }
    }

    /// Which kernel computes a convolution of this shape.
    enum ConvKind {
        Dense,
        Depthwise,
        Other,
    }

    fn kind(g: &conv::ConvGeometry, weight: &FlexTensor, options: &ConvOptions<2>) -> ConvKind {
        let w = dims(weight);
        if options.groups == 1 && w[1] == g.c_in {
            ConvKind::Dense
        } else if super::is_depthwise(g.c_in, &w, options.groups) {
            ConvKind::Depthwise
        } else {
            ConvKind::Other
        }
    }

    fn norm_pool_geometry(dims: &[usize; 4]) -> norm_pool::NormPoolGeometry {
        norm_pool::NormPoolGeometry { batch: dims[0], channels: dims[1], h: dims[2], w: dims[3] }
    }

    fn norm_geometry(shape: &[usize]) -> norm::NormGeometry {
        norm::NormGeometry { batch: shape[0], channels: shape[1], plane: shape[2..].iter().product() }
    }

    /// Registers each gradient for its parent, where that parent tracks gradients (`Some` id).
    fn register_gradients<B: Backend, const N: usize>(
        grads: &mut Gradients,
        parents: [Option<NodeId>; N],
        gradients: [B::FloatTensorPrimitive; N],
    ) {
        for (parent, gradient) in parents.into_iter().zip(gradients) {
            if let Some(id) = parent {
                grads.register::<B>(id, gradient);
            }
        }
    }

    impl<B: Backend + ItraKernelOps, C: CheckpointStrategy> ItraKernelOps for Autodiff<B, C> {
        fn itra_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self> {
            #[derive(Debug)]
            struct Conv2dBackward;

            impl<B: Backend + ItraKernelOps> Backward<B, 2> for Conv2dBackward {
                type State = (NodeId, NodeId, ConvOptions<2>);

                fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                    let [node_x, node_weight] = ops.parents;
                    let grad = grads.consume::<B>(&ops.node);
                    let (x_state, weight_state, options) = ops.state;
                    let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
                    let weight = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(weight_state);
                    if let Some(node) = node_x {
                        let dx = B::itra_conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), options.clone());
                        grads.register::<B>(node.id, dx);
                    }
                    if let Some(node) = node_weight {
                        let dw = B::itra_conv2d_weight_backward(x, weight, grad, options);
                        grads.register::<B>(node.id, dw);
                    }
                }
            }

            match Conv2dBackward.prepare::<C>([x.node(), weight.node()]).compute_bound().stateful() {
                OpsKind::Tracked(mut prep) => {
                    let x_state = prep.checkpoint(&x);
                    let weight_state = prep.checkpoint(&weight);
                    let out = B::itra_conv2d(x.into_primitive(), weight.into_primitive(), options.clone());
                    prep.finish((x_state, weight_state, options), out)
                }
                OpsKind::UnTracked(prep) => {
                    prep.finish(B::itra_conv2d(x.into_primitive(), weight.into_primitive(), options))
                }
            }
        }

        fn itra_conv2d_x_backward(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            options: ConvOptions<2>,
        ) -> FloatTensor<Self> {
            // A gradient of a gradient: composed from Burn's differentiable operations.
            <Self as ModuleOps<Self>>::conv2d_x_backward(x, weight, grad, options)
        }

        fn itra_conv2d_weight_backward(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            options: ConvOptions<2>,
        ) -> FloatTensor<Self> {
            <Self as ModuleOps<Self>>::conv2d_weight_backward(x, weight, grad, options)
        }

        fn itra_batch_norm_train(
            x: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            beta: FloatTensor<Self>,
            epsilon: f64,
            relu: bool,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
            #[derive(Debug)]
            struct BatchNormBackward;

            impl<B: Backend + ItraKernelOps> Backward<B, 3> for BatchNormBackward {
                /// x, gamma (checkpointed), the output (kept only for the ReLU's gate, so that a
                /// batch norm without one holds no extra activation), mean, variance, epsilon, relu.
                type State = (
                    NodeId,
                    NodeId,
                    Option<B::FloatTensorPrimitive>,
                    B::FloatTensorPrimitive,
                    B::FloatTensorPrimitive,
                    f64,
                    bool,
                );

                fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                    let [node_x, node_gamma, node_beta] = ops.parents;
                    let grad = grads.consume::<B>(&ops.node);
                    let (x_state, gamma_state, output, mean, variance, epsilon, relu) = ops.state;
                    let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
                    // Without the ReLU the output is not read: the gradient, of the same shape,
                    // stands in for it, and `x` stays unshared for the backward to overwrite.
                    let output = output.unwrap_or_else(|| grad.clone());
                    let gamma = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(gamma_state);
                    let (dx, dgamma, dbeta) =
                        B::itra_batch_norm_train_backward(x, output, gamma, mean, variance, epsilon, relu, grad);
                    let parents = [node_x, node_gamma, node_beta].map(|node| node.map(|node| node.id));
                    register_gradients::<B, 3>(grads, parents, [dx, dgamma, dbeta]);
                }
            }

            match BatchNormBackward.prepare::<C>([x.node(), gamma.node(), beta.node()]).compute_bound().stateful() {
                OpsKind::Tracked(mut prep) => {
                    let x_state = prep.checkpoint(&x);
                    let gamma_state = prep.checkpoint(&gamma);
                    let (out, mean, variance) = B::itra_batch_norm_train(
                        x.into_primitive(),
                        gamma.into_primitive(),
                        beta.into_primitive(),
                        epsilon,
                        relu,
                    );
                    let kept = relu.then(|| out.clone());
                    let state = (x_state, gamma_state, kept, mean.clone(), variance.clone(), epsilon, relu);
                    let out = prep.finish(state, out);
                    (out, <Self as AutodiffBackend>::from_inner(mean), <Self as AutodiffBackend>::from_inner(variance))
                }
                OpsKind::UnTracked(prep) => {
                    let (out, mean, variance) = B::itra_batch_norm_train(
                        x.into_primitive(),
                        gamma.into_primitive(),
                        beta.into_primitive(),
                        epsilon,
                        relu,
                    );
                    (
                        prep.finish(out),
                        <Self as AutodiffBackend>::from_inner(mean),
                        <Self as AutodiffBackend>::from_inner(variance),
                    )
                }
            }
        }

        fn itra_batch_norm_train_backward(
            _x: FloatTensor<Self>,
            _output: FloatTensor<Self>,
            _gamma: FloatTensor<Self>,
            _mean: FloatTensor<Self>,
            _variance: FloatTensor<Self>,
            _epsilon: f64,
            _relu: bool,
            _grad: FloatTensor<Self>,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
            // As Burn's own batch norm: its backward is not itself differentiable.
            panic!(
                "itra_batch_norm_train_backward cannot be differentiated (neither can Burn's batch_norm_train_backward)"
            );
        }

        fn itra_batch_norm_relu_pool2x2_train(
            x: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            beta: FloatTensor<Self>,
            epsilon: f64,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
            #[derive(Debug)]
            struct NormPoolBackward;

            impl<B: Backend + ItraKernelOps> Backward<B, 3> for NormPoolBackward {
                /// x, gamma (checkpointed), mean, variance, scale_offset, epsilon: no activation
                /// besides the input is kept.
                type State =
                    (NodeId, NodeId, B::FloatTensorPrimitive, B::FloatTensorPrimitive, B::FloatTensorPrimitive, f64);

                fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                    let [node_x, node_gamma, node_beta] = ops.parents;
                    let grad = grads.consume::<B>(&ops.node);
                    let (x_state, gamma_state, mean, variance, scale_offset, epsilon) = ops.state;
                    let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
                    let gamma = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(gamma_state);
                    let (dx, dgamma, dbeta) = B::itra_batch_norm_relu_pool2x2_train_backward(
                        x,
                        gamma,
                        mean,
                        variance,
                        scale_offset,
                        epsilon,
                        grad,
                    );
                    let parents = [node_x, node_gamma, node_beta].map(|node| node.map(|node| node.id));
                    register_gradients::<B, 3>(grads, parents, [dx, dgamma, dbeta]);
                }
            }

            let inner = <Self as AutodiffBackend>::from_inner;
            match NormPoolBackward.prepare::<C>([x.node(), gamma.node(), beta.node()]).compute_bound().stateful() {
                OpsKind::Tracked(mut prep) => {
                    let x_state = prep.checkpoint(&x);
                    let gamma_state = prep.checkpoint(&gamma);
                    let (out, mean, variance, scale_offset) = B::itra_batch_norm_relu_pool2x2_train(
                        x.into_primitive(),
                        gamma.into_primitive(),
                        beta.into_primitive(),
                        epsilon,
                    );
                    let state = (x_state, gamma_state, mean.clone(), variance.clone(), scale_offset.clone(), epsilon);
                    (prep.finish(state, out), inner(mean), inner(variance), inner(scale_offset))
                }
                OpsKind::UnTracked(prep) => {
                    let (out, mean, variance, scale_offset) = B::itra_batch_norm_relu_pool2x2_train(
                        x.into_primitive(),
                        gamma.into_primitive(),
                        beta.into_primitive(),
                        epsilon,
                    );
                    (prep.finish(out), inner(mean), inner(variance), inner(scale_offset))
                }
            }
        }

        fn itra_batch_norm_relu_pool2x2_train_backward(
            _x: FloatTensor<Self>,
            _gamma: FloatTensor<Self>,
            _mean: FloatTensor<Self>,
            _variance: FloatTensor<Self>,
            _scale_offset: FloatTensor<Self>,
            _epsilon: f64,
            _grad: FloatTensor<Self>,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
            panic!("itra_batch_norm_relu_pool2x2_train_backward cannot be differentiated (as batch norm's backward)");
        }

        fn itra_max_pool2d(
            x: FloatTensor<Self>,
            kernel: [usize; 2],
            stride: [usize; 2],
            padding: [usize; 2],
        ) -> FloatTensor<Self> {
            #[derive(Debug)]
            struct MaxPoolBackward;

            impl<B: Backend + ItraKernelOps> Backward<B, 1> for MaxPoolBackward {
                type State = (NodeId, [usize; 2], [usize; 2], [usize; 2]);

                fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                    let [node_x] = ops.parents;
                    let grad = grads.consume::<B>(&ops.node);
                    let (x_state, kernel, stride, padding) = ops.state;
                    let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
                    if let Some(node) = node_x {
                        grads.register::<B>(node.id, B::itra_max_pool2d_backward(x, grad, kernel, stride, padding));
                    }
                }
            }

            match MaxPoolBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
                OpsKind::Tracked(mut prep) => {
                    let x_state = prep.checkpoint(&x);
                    let out = B::itra_max_pool2d(x.into_primitive(), kernel, stride, padding);
                    prep.finish((x_state, kernel, stride, padding), out)
                }
                OpsKind::UnTracked(prep) => {
                    prep.finish(B::itra_max_pool2d(x.into_primitive(), kernel, stride, padding))
                }
            }
        }

        fn itra_max_pool2d_backward(
            _x: FloatTensor<Self>,
            _grad: FloatTensor<Self>,
            _kernel: [usize; 2],
            _stride: [usize; 2],
            _padding: [usize; 2],
        ) -> FloatTensor<Self> {
            panic!("itra_max_pool2d_backward cannot be differentiated (neither can Burn's max-pool backward)");
        }
    }

    /// `ItraKernelOps::itra_conv2d` on high-level tensors.
    pub(super) fn conv2d(x: Tensor<4>, weight: Tensor<4>, options: ConvOptions<2>) -> Tensor<4> {
        Tensor::from_dispatch(<Dispatch as ItraKernelOps>::itra_conv2d(
            x.into_dispatch(),
            weight.into_dispatch(),
            options,
        ))
    }

    /// `ItraKernelOps::itra_batch_norm_train` on high-level tensors.
    pub(super) fn batch_norm_train(
        x: Tensor<4>,
        gamma: Tensor<1>,
        beta: Tensor<1>,
        epsilon: f64,
        relu: bool,
    ) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
        let (out, mean, variance) = <Dispatch as ItraKernelOps>::itra_batch_norm_train(
            x.into_dispatch(),
            gamma.into_dispatch(),
            beta.into_dispatch(),
            epsilon,
            relu,
        );
        (Tensor::from_dispatch(out), Tensor::from_dispatch(mean), Tensor::from_dispatch(variance))
    }

    /// `ItraKernelOps::itra_batch_norm_relu_pool2x2_train` on high-level tensors: `(pooled, mean,
    /// variance)`.
    pub(super) fn batch_norm_relu_pool2x2_train(
        x: Tensor<4>,
        gamma: Tensor<1>,
        beta: Tensor<1>,
        epsilon: f64,
    ) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
        let (out, mean, variance, _) = <Dispatch as ItraKernelOps>::itra_batch_norm_relu_pool2x2_train(
            x.into_dispatch(),
            gamma.into_dispatch(),
            beta.into_dispatch(),
            epsilon,
        );
        (Tensor::from_dispatch(out), Tensor::from_dispatch(mean), Tensor::from_dispatch(variance))
    }

    /// `ItraKernelOps::itra_max_pool2d` on high-level tensors.
    pub(super) fn max_pool2d(x: Tensor<4>, kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2]) -> Tensor<4> {
        Tensor::from_dispatch(<Dispatch as ItraKernelOps>::itra_max_pool2d(x.into_dispatch(), kernel, stride, padding))
    }
}

#[cfg(not(feature = "flex"))]
mod dispatch {
    use burn::prelude::*;
    use burn::tensor::ops::ConvOptions;

    /// Without flex there is nothing to route to: Burn's operation.
    pub(super) fn conv2d(x: Tensor<4>, weight: Tensor<4>, options: ConvOptions<2>) -> Tensor<4> {
        burn::tensor::module::conv2d(x, weight, None, options)
    }

    pub(super) fn batch_norm_train(
        _x: Tensor<4>,
        _gamma: Tensor<1>,
        _beta: Tensor<1>,
        _epsilon: f64,
        _relu: bool,
    ) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
        unreachable!("`batch_norm` routes here only on flex")
    }

    pub(super) fn max_pool2d(
        _x: Tensor<4>,
        _kernel: [usize; 2],
        _stride: [usize; 2],
        _padding: [usize; 2],
    ) -> Tensor<4> {
        unreachable!("`max_pool2d` routes here only on flex")
    }

    pub(super) fn batch_norm_relu_pool2x2_train(
        _x: Tensor<4>,
        _gamma: Tensor<1>,
        _beta: Tensor<1>,
        _epsilon: f64,
    ) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
        unreachable!("`batch_norm_relu_max_pool2d` routes here only on flex")
    }
}

#[cfg(feature = "flex")]
pub use dispatch::ItraKernelOps;

/// `len` reproducible pseudo-random values, uniform in `[lo, hi)`: the kernels' test inputs.
#[cfg(test)]
pub(crate) fn test_values(len: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            lo + (hi - lo) * ((state >> 40) as f32 / (1u64 << 24) as f32)
        })
        .collect()
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// Loss `Σ conv(x, w) ⊙ r` and the gradients of `x`, `w` and the bias, through `op`.
    fn run(
        op: fn(Tensor<4>, Tensor<4>, Option<Tensor<1>>, ConvOptions<2>) -> Tensor<4>,
        inputs: &(Tensor<4>, Tensor<4>, Tensor<1>, Tensor<4>),
        options: &ConvOptions<2>,
        with_bias: bool,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>, Option<Vec<f32>>) {
        let (x, w, b, r) = inputs;
        let x = x.clone().require_grad();
        let w = w.clone().require_grad();
        let b = b.clone().require_grad();
        let out = op(x.clone(), w.clone(), with_bias.then(|| b.clone()), options.clone());
        let grads = (out.clone() * r.clone()).sum().backward();
        let values = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().expect("f32");
        let x_grad = x.grad(&grads).expect("x has a gradient");
        let w_grad = w.grad(&grads).expect("w has a gradient");
        let b_grad =
            with_bias.then(|| b.grad(&grads).expect("b has a gradient").into_data().try_to_vec::<f32>().expect("f32"));
        (values(out), values(x_grad), values(w_grad), b_grad)
    }

    /// Our `conv2d` and Burn's on the same inputs: the output and every gradient agree.
    fn assert_conv2d_matches_burn(
        case: &str,
        inputs: &(Tensor<4>, Tensor<4>, Tensor<1>, Tensor<4>),
        options: &ConvOptions<2>,
        bias: bool,
    ) {
        let ours = run(conv2d, inputs, options, bias);
        let burn = run(burn::tensor::module::conv2d, inputs, options, bias);
        assert_close("forward", case, &ours.0, &burn.0);
        assert_close("x gradient", case, &ours.1, &burn.1);
        assert_close("weight gradient", case, &ours.2, &burn.2);
        if bias {
            assert_close(
                "bias gradient",
                case,
                ours.3.as_deref().unwrap_or_default(),
                burn.3.as_deref().unwrap_or_default(),
            );
        }
    }

    fn assert_close(what: &str, case: &str, ours: &[f32], burn: &[f32]) {
        assert_eq!(ours.len(), burn.len(), "{what} {case}");
        for (i, (a, b)) in ours.iter().zip(burn).enumerate() {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{what} {case} [{i}]: ours {a}, burn {b}");
        }
    }

    /// Values and all three gradients against Burn's own `conv2d` on the same autodiff device,
    /// over odd sizes, strides, paddings, dilations, 1x1 and rectangular kernels.
    #[test]
    fn conv2d_matches_burns_values_and_gradients() {
        let device = Device::flex().autodiff();
        // (batch, c_in, h, w, c_out, [kh, kw], stride, padding, dilation, bias)
        let cases: &[(usize, usize, usize, usize, usize, [usize; 2], [usize; 2], [usize; 2], [usize; 2], bool)] = &[
            (3, 2, 7, 9, 5, [3, 3], [1, 1], [1, 1], [1, 1], false),
            (2, 3, 8, 5, 4, [3, 3], [2, 2], [1, 1], [1, 1], true),
            (5, 4, 6, 6, 3, [1, 1], [1, 1], [0, 0], [1, 1], false),
            (2, 4, 9, 7, 6, [1, 1], [2, 2], [0, 0], [1, 1], true),
            (1, 3, 11, 10, 2, [7, 7], [2, 2], [3, 3], [1, 1], false),
            (4, 2, 5, 8, 3, [2, 3], [1, 2], [0, 1], [1, 1], true),
            (2, 2, 9, 9, 3, [3, 3], [1, 1], [2, 2], [2, 2], false),
            (7, 1, 13, 13, 4, [3, 3], [1, 1], [1, 1], [1, 1], false),
        ];
        for &(batch, c_in, h, w, c_out, k, stride, padding, dilation, bias) in cases {
            let case =
                format!("x {batch}x{c_in}x{h}x{w}, w {c_out}x{c_in}x{k:?}, s {stride:?} p {padding:?} d {dilation:?}");
            let options = ConvOptions::new(stride, padding, dilation, 1);
            let x = Tensor::<4>::random([batch, c_in, h, w], Distribution::Uniform(-1.0, 1.0), &device);
            let wt = Tensor::<4>::random([c_out, c_in, k[0], k[1]], Distribution::Uniform(-1.0, 1.0), &device);
            let b = Tensor::<1>::random([c_out], Distribution::Uniform(-1.0, 1.0), &device);
            let oh = (h + 2 * padding[0] - dilation[0] * (k[0] - 1) - 1) / stride[0] + 1;
            let ow = (w + 2 * padding[1] - dilation[1] * (k[1] - 1) - 1) / stride[1] + 1;
            let r = Tensor::<4>::random([batch, c_out, oh, ow], Distribution::Uniform(-1.0, 1.0), &device);
            assert_conv2d_matches_burn(&case, &(x, wt, b, r), &options, bias);
        }
    }

    /// Without autodiff the extension runs the flex kernel directly.
    #[test]
    fn conv2d_without_autodiff_matches_burn() {
        let device = Device::flex();
        let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let x = Tensor::<4>::random([3, 4, 10, 9], Distribution::Uniform(-1.0, 1.0), &device);
        let w = Tensor::<4>::random([6, 4, 3, 3], Distribution::Uniform(-1.0, 1.0), &device);
        let ours = conv2d(x.clone(), w.clone(), None, options.clone()).into_data().try_to_vec::<f32>().expect("f32");
        let burn = burn::tensor::module::conv2d(x, w, None, options).into_data().try_to_vec::<f32>().expect("f32");
        assert_close("forward", "inference", &ours, &burn);
    }

    /// Grouped convolutions that are not depthwise are not ours: they must give Burn's numbers.
    #[test]
    fn grouped_conv2d_falls_back_to_burn() {
        let device = Device::flex();
        let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 2);
        let x = Tensor::<4>::random([2, 4, 6, 6], Distribution::Uniform(-1.0, 1.0), &device);
        let w = Tensor::<4>::random([6, 2, 3, 3], Distribution::Uniform(-1.0, 1.0), &device);
        let ours = conv2d(x.clone(), w.clone(), None, options.clone()).into_data().try_to_vec::<f32>().expect("f32");
        let burn = burn::tensor::module::conv2d(x, w, None, options).into_data().try_to_vec::<f32>().expect("f32");
        assert_eq!(ours, burn);
    }

    /// Depthwise convolutions (MobileNetV2's) against Burn's grouped convolution: values and the
    /// three gradients, stride 1 and 2.
    #[test]
    fn depthwise_conv2d_matches_burns_values_and_gradients() {
        let device = Device::flex().autodiff();
        for &(batch, c, h, w, stride, bias) in &[(3, 4, 7, 9, 1, false), (2, 6, 8, 7, 2, true), (2, 3, 5, 5, 1, true)] {
            let case = format!("depthwise {batch}x{c}x{h}x{w} s {stride}");
            let options = ConvOptions::new([stride, stride], [1, 1], [1, 1], c);
            let x = Tensor::<4>::random([batch, c, h, w], Distribution::Uniform(-1.0, 1.0), &device);
            let wt = Tensor::<4>::random([c, 1, 3, 3], Distribution::Uniform(-1.0, 1.0), &device);
            let b = Tensor::<1>::random([c], Distribution::Uniform(-1.0, 1.0), &device);
            let (oh, ow) = ((h + 2 - 3) / stride + 1, (w + 2 - 3) / stride + 1);
            let r = Tensor::<4>::random([batch, c, oh, ow], Distribution::Uniform(-1.0, 1.0), &device);
            assert_conv2d_matches_burn(&case, &(x, wt, b, r), &options, bias);
        }
    }

    /// Two separate batch norms with the same parameters, gamma uniform in `gamma` and beta in
    /// `[-0.5, 0.5)` (a clone would share its running statistics with the original).
    fn twin_batch_norms(channels: usize, gamma: (f64, f64), device: &Device) -> (BatchNorm, BatchNorm) {
        use burn::nn::BatchNormConfig;
        let gamma = Tensor::<1>::random([channels], Distribution::Uniform(gamma.0, gamma.1), device);
        let beta = Tensor::<1>::random([channels], Distribution::Uniform(-0.5, 0.5), device);
        let layer = || {
            let mut bn = BatchNormConfig::new(channels).init(device);
            bn.gamma = burn::module::Param::from_tensor(gamma.clone().require_grad());
            bn.beta = burn::module::Param::from_tensor(beta.clone().require_grad());
            bn
        };
        (layer(), layer())
    }

    /// What [`batch_norm_results`] returns, in order.
    const BATCH_NORM_RESULTS: [&str; 6] =
        ["output", "x gradient", "gamma gradient", "beta gradient", "running mean", "running variance"];

    /// Backpropagates `Σ out ⊙ r` and reads back the output, the gradients of `x`, gamma and beta,
    /// and `bn`'s running statistics.
    fn batch_norm_results(bn: &BatchNorm, out: Tensor<4>, x: &Tensor<4>, r: &Tensor<4>) -> [Vec<f32>; 6] {
        let grads = (out.clone() * r.clone()).sum().backward();
        let v4 = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().expect("f32");
        let v1 = |t: Tensor<1>| t.into_data().try_to_vec::<f32>().expect("f32");
        [
            v4(out),
            v4(x.grad(&grads).expect("x gradient")),
            v1(bn.gamma.grad(&grads).expect("gamma gradient")),
            v1(bn.beta.grad(&grads).expect("beta gradient")),
            v1(bn.running_mean.value_sync()),
            v1(bn.running_var.value_sync()),
        ]
    }

    /// The fused batch norm (+ReLU) against burn-nn's `BatchNorm::forward` (+ `relu`): output,
    /// the gradients of the input, gamma and beta, and the running statistics it leaves behind.
    #[test]
    fn batch_norm_matches_burns_values_gradients_and_running_statistics() {
        let device = Device::flex().autodiff();
        for (batch, channels, h, w) in [(4, 3, 5, 7), (1, 2, 3, 3), (8, 5, 1, 1), (3, 4, 9, 2)] {
            for relu in [false, true] {
                let case = format!("{batch}x{channels}x{h}x{w} relu={relu}");
                let (bn, theirs) = twin_batch_norms(channels, (0.5, 1.5), &device);
                let x = Tensor::<4>::random([batch, channels, h, w], Distribution::Uniform(-2.0, 3.0), &device);
                let r = Tensor::<4>::random([batch, channels, h, w], Distribution::Uniform(-1.0, 1.0), &device);
                let run = |bn: &BatchNorm, ours: bool| {
                    let x = x.clone().require_grad();
                    let out = if ours {
                        batch_norm(bn, x.clone(), relu)
                    } else {
                        let out = bn.forward(x.clone());
                        if relu { burn::tensor::activation::relu(out) } else { out }
                    };
                    batch_norm_results(bn, out, &x, &r)
                };
                let (ours, burn) = (run(&bn, true), run(&theirs, false));
                for ((name, a), b) in BATCH_NORM_RESULTS.iter().zip(&ours).zip(&burn) {
                    assert_close(name, &case, a, b);
                }
            }
        }
    }

    /// The fused batch norm + ReLU + 2x2 pool against this crate's batch norm and pool apart, which
    /// the tests above hold to Burn's: values, every gradient and the running statistics, bit for
    /// bit, and the fused path is the one taken.
    #[test]
    fn batch_norm_relu_max_pool_equals_the_layers_apart() {
        use burn::nn::pool::MaxPool2dConfig;
        let device = Device::flex().autodiff();
        let pool = MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init();
        for (batch, channels, h, w) in [(4, 3, 6, 8), (2, 2, 7, 5), (8, 32, 28, 28)] {
            let case = format!("{batch}x{channels}x{h}x{w}");
            let (fused, apart) = twin_batch_norms(channels, (-1.5, 1.5), &device);
            let x = Tensor::<4>::random([batch, channels, h, w], Distribution::Uniform(-2.0, 3.0), &device);
            let r = Tensor::<4>::random([batch, channels, h / 2, w / 2], Distribution::Uniform(-1.0, 1.0), &device);
            let run = |bn: &BatchNorm, together: bool| {
                let x = x.clone().require_grad();
                let out = if together {
                    batch_norm_relu_max_pool2d(bn, &pool, x.clone())
                } else {
                    max_pool2d(&pool, batch_norm(bn, x.clone(), true))
                };
                batch_norm_results(bn, out, &x, &r)
            };
            let (ours, theirs) = (run(&fused, true), run(&apart, false));
            let bits = |v: &Vec<f32>| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            for ((name, a), b) in BATCH_NORM_RESULTS.iter().zip(&ours).zip(&theirs) {
                assert_eq!(bits(a), bits(b), "{name} of {case}");
            }
        }
        // The comparison is of two paths: the fused one is taken for these layers on this device.
        let x = Tensor::<4>::random([2, 3, 4, 4], Distribution::Uniform(-1.0, 1.0), &device).require_grad();
        let bn = burn::nn::BatchNormConfig::new(3).init(&device);
        assert!(fused_batch_norm_applies(&bn, &x), "the fused kernels apply on flex with autodiff");
    }

    /// The batch norm backwards write the input gradient over the saved input when it alone holds
    /// its storage (no allocation: the gradient comes back in the input's own buffer), and leave an
    /// input shared with another tensor untouched; both give the same bits. Without the ReLU the
    /// gradient stands in for the unread output, as the autodiff backward passes it.
    #[test]
    fn the_batch_norm_backwards_reuse_an_unshared_input_and_spare_a_shared_one() {
        use burn::backend::Flex;
        use burn::backend::flex::FlexTensor;
        let [batch, channels, h, w] = [3, 4, 6, 10];
        let flex = |values: Vec<f32>, shape: &[usize]| FlexTensor::from_data(TensorData::new(values, shape.to_vec()));
        let values = |t: &FlexTensor| t.as_slice::<f32>().expect("dense f32").to_vec();
        let address = |t: &FlexTensor| t.as_slice::<f32>().expect("dense f32").as_ptr();
        let x = test_values(batch * channels * h * w, 7, -2.0, 2.0);
        let (gamma, beta) = (test_values(channels, 8, 0.5, 1.5), test_values(channels, 9, -0.5, 0.5));
        let shape = [batch, channels, h, w];
        let pooled_grad =
            flex(test_values(batch * channels * h * w / 4, 10, -1.0, 1.0), &[batch, channels, h / 2, w / 2]);
        let grad = flex(test_values(x.len(), 11, -1.0, 1.0), &shape);
        let (_, mean, var, scale_offset) = <Flex as ItraKernelOps>::itra_batch_norm_relu_pool2x2_train(
            flex(x.clone(), &shape),
            flex(gamma.clone(), &[channels]),
            flex(beta.clone(), &[channels]),
            1e-5,
        );
        let (output, _, _) = <Flex as ItraKernelOps>::itra_batch_norm_train(
            flex(x.clone(), &shape),
            flex(gamma.clone(), &[channels]),
            flex(beta.clone(), &[channels]),
            1e-5,
            true,
        );
        type Backward<'a> = dyn Fn(FlexTensor) -> (FlexTensor, FlexTensor, FlexTensor) + 'a;
        let fused: &Backward<'_> = &|x| {
            <Flex as ItraKernelOps>::itra_batch_norm_relu_pool2x2_train_backward(
                x,
                flex(gamma.clone(), &[channels]),
                mean.clone(),
                var.clone(),
                scale_offset.clone(),
                1e-5,
                pooled_grad.clone(),
            )
        };
        // The unfused backward, with and without the ReLU; without it the gradient stands in for
        // the unread output, as the autodiff backward passes it.
        let unfused = |relu: bool| {
            let (output, grad, gamma, mean, var, flex) = (&output, &grad, &gamma, &mean, &var, &flex);
            move |x| {
                <Flex as ItraKernelOps>::itra_batch_norm_train_backward(
                    x,
                    if relu { output.clone() } else { grad.clone() },
                    flex(gamma.clone(), &[channels]),
                    mean.clone(),
                    var.clone(),
                    1e-5,
                    relu,
                    grad.clone(),
                )
            }
        };
        let (apart, linear) = (unfused(true), unfused(false));
        let (apart, linear): (&Backward<'_>, &Backward<'_>) = (&apart, &linear);
        for (name, backward) in [("fused", fused), ("apart", apart), ("without the ReLU", linear)] {
            let unshared = flex(x.clone(), &shape);
            let buffer = address(&unshared);
            let (dx, dgamma, dbeta) = backward(unshared);
            assert_eq!(address(&dx), buffer, "{name}: the gradient is written over the unshared input");
            let shared = flex(x.clone(), &shape);
            let kept = shared.clone();
            let (dx_shared, dgamma_shared, dbeta_shared) = backward(shared);
            assert_ne!(address(&dx_shared), address(&kept), "{name}: a shared input gets a new gradient buffer");
            assert_eq!(values(&kept), x, "{name}: the shared input is unchanged");
            for (what, a, b) in
                [("dx", &dx, &dx_shared), ("dgamma", &dgamma, &dgamma_shared), ("dbeta", &dbeta, &dbeta_shared)]
            {
                let bits = |t: &FlexTensor| values(t).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(a), bits(b), "{name}: {what}");
            }
            assert_ne!(values(&dx), x, "{name}: the gradient is not the input");
        }
    }

    /// The max pool against burn-nn's `MaxPool2d::forward`: values and input gradients, for the
    /// small CNN's 2x2/2, ResNet's 3x3/2 padded stem pool and odd sizes.
    #[test]
    fn max_pool2d_matches_burns_values_and_gradients() {
        use burn::nn::pool::MaxPool2dConfig;
        let device = Device::flex().autodiff();
        let cases: &[([usize; 4], [usize; 2], [usize; 2], usize)] = &[
            ([3, 2, 8, 8], [2, 2], [2, 2], 0),
            ([2, 3, 7, 9], [2, 2], [2, 2], 0),
            ([2, 2, 9, 11], [3, 3], [2, 2], 1),
            ([1, 4, 6, 5], [3, 3], [1, 1], 1),
        ];
        for &(shape, kernel, stride, padding) in cases {
            let case = format!("{shape:?} k {kernel:?} s {stride:?} p {padding}");
            let pool = MaxPool2dConfig::new(kernel)
                .with_strides(stride)
                .with_padding(PaddingConfig2d::Explicit(padding, padding, padding, padding))
                .init();
            let x = Tensor::<4>::random(shape, Distribution::Uniform(-1.0, 1.0), &device);
            let run = |ours: bool| {
                let x = x.clone().require_grad();
                let out = if ours { max_pool2d(&pool, x.clone()) } else { pool.forward(x.clone()) };
                let r = Tensor::<4>::random(out.dims(), Distribution::Uniform(-1.0, 1.0), &device);
                let r = r.clone().detach();
                (out, x, r)
            };
            let (out_ours, x_ours, r) = run(true);
            let (out_burn, x_burn, _) = run(false);
            let v4 = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().expect("f32");
            let grads_ours = (out_ours.clone() * r.clone()).sum().backward();
            let grads_burn = (out_burn.clone() * r).sum().backward();
            assert_close("forward", &case, &v4(out_ours), &v4(out_burn));
            assert_close(
                "x gradient",
                &case,
                &v4(x_ours.grad(&grads_ours).expect("x gradient")),
                &v4(x_burn.grad(&grads_burn).expect("x gradient")),
            );
        }
    }
}
