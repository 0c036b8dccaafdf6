//! Small constructors shared by the architectures, so each family states only its shapes.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor};

use crate::init::conv_kaiming_normal_fan_out;

/// A square convolution with symmetric padding, torchvision's initialisation and optional bias.
///
/// The bias, when present, is zero, as torchvision's `nn.init.constant_(m.bias, 0)`.
pub fn conv2d(
    channels: [usize; 2],
    kernel: usize,
    stride: usize,
    padding: usize,
    groups: usize,
    bias: bool,
    device: &Device,
) -> Conv2d {
    let conv = Conv2dConfig::new(channels, [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(padding, padding, padding, padding))
        .with_groups(groups)
        .with_bias(false)
        .with_initializer(conv_kaiming_normal_fan_out(channels[1], [kernel, kernel]))
        .init(device);
    if bias { Conv2d { bias: Some(Initializer::Zeros.init([channels[1]], device)), ..conv } } else { conv }
}

/// Applies `conv` to `x` through [`crate::kernels::conv2d`]: this crate's kernels on flex for
/// symmetric explicit padding, Burn's `Conv2d::forward` otherwise. Same numbers, same parameters.
pub fn conv_forward(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            let options = ConvOptions::new(conv.stride, [top, left], conv.dilation, conv.groups);
            crate::kernels::conv2d(x, conv.weight.val(), conv.bias.as_ref().map(|b| b.val()), options)
        }
        _ => conv.forward(x),
    }
}

/// Applies `bn` to `x`, then a ReLU when `relu`, through [`crate::kernels::batch_norm`]: one
/// fused pass on flex when training, `BatchNorm::forward` (+ `relu`) otherwise.
pub fn batch_norm_forward(bn: &BatchNorm, x: Tensor<4>, relu: bool) -> Tensor<4> {
    crate::kernels::batch_norm(bn, x, relu)
}

/// Applies `pool` to `x` through [`crate::kernels::max_pool2d`]: this crate's kernel on flex,
/// `MaxPool2d::forward` otherwise.
pub fn max_pool_forward(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    crate::kernels::max_pool2d(pool, x)
}

/// Applies `bn`, a ReLU and `pool` to `x` through [`crate::kernels::batch_norm_relu_max_pool2d`]:
/// one fused operation on flex when training with a 2x2 pool, the three apart otherwise. The same
/// numbers as [`max_pool_forward`] after [`batch_norm_forward`].
pub fn batch_norm_relu_max_pool(bn: &BatchNorm, pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    crate::kernels::batch_norm_relu_max_pool2d(bn, pool, x)
}

/// Batch norm with PyTorch's defaults (`eps = 1e-5`, momentum 0.1, weight 1, bias 0).
pub fn batch_norm(num_features: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(num_features).init(device)
}

/// A linear layer. `None` keeps PyTorch's `nn.Linear` default, which Burn's default matches:
/// weight and bias `U(-1/sqrt(d_input), 1/sqrt(d_input))` (Burn's `KaimingUniform` with gain
/// `1/sqrt(3)` gives the same bound). `Some(init)` draws the weight from `init` and zeroes the
/// bias, as torchvision does for VGG and MobileNetV2.
pub fn linear(d_input: usize, d_output: usize, weight_init: Option<Initializer>, device: &Device) -> Linear {
    match weight_init {
        None => LinearConfig::new(d_input, d_output).init(device),
        Some(init) => {
            let linear = LinearConfig::new(d_input, d_output).with_initializer(init).with_bias(false).init(device);
            Linear { bias: Some(Initializer::Zeros.init([d_output], device)), ..linear }
        }
    }
}

/// Global average pooling `[batch, channels, h, w] -> [batch, channels]`.
pub fn global_avg_pool(x: Tensor<4>) -> Tensor<2> {
    let [batch, channels, _, _] = x.dims();
    x.mean_dim(3).mean_dim(2).reshape([batch, channels])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_and_std(values: &[f32]) -> (f64, f64) {
        let count = values.len() as f64;
        let mean = values.iter().map(|&v| v as f64).sum::<f64>() / count;
        let variance = values.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / count;
        (mean, variance.sqrt())
    }

    #[test]
    fn depthwise_conv_uses_pytorch_fan_out() {
        // torch.nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu") on a
        // [256, 1, 3, 3] depthwise weight: std = sqrt(2 / (256 * 3 * 3)) = 0.0295.
        let device = Device::flex();
        device.seed(3);
        let conv = conv2d([256, 256], 3, 1, 1, 256, false, &device);
        let weights = conv.weight.val().into_data().try_to_vec::<f32>().unwrap();
        let (mean, std) = mean_and_std(&weights);
        let expected = (2.0f64 / (256.0 * 9.0)).sqrt();
        assert!(mean.abs() < 0.1 * expected, "mean {mean}");
        assert!((std / expected - 1.0).abs() < 0.05, "std {std}, expected {expected}");
        assert!(conv.bias.is_none());
    }

    #[test]
    fn normal_linear_has_zero_bias() {
        // torch.nn.init.normal_(w, 0, 0.01); torch.nn.init.zeros_(b)
        let device = Device::flex();
        device.seed(4);
        let layer = linear(512, 64, Some(crate::init::linear_normal_001()), &device);
        let weights = layer.weight.val().into_data().try_to_vec::<f32>().unwrap();
        let (_, std) = mean_and_std(&weights);
        assert!((std / 0.01 - 1.0).abs() < 0.05, "std {std}");
        let bias = layer.bias.unwrap().val().into_data().try_to_vec::<f32>().unwrap();
        assert!(bias.iter().all(|&b| b == 0.0));
    }

    #[test]
    fn default_linear_is_pytorch_uniform() {
        // torch.nn.Linear(400, 8): weight and bias U(-1/sqrt(400), 1/sqrt(400)) = U(-0.05, 0.05).
        let device = Device::flex();
        device.seed(5);
        let layer = linear(400, 8, None, &device);
        let weights = layer.weight.val().into_data().try_to_vec::<f32>().unwrap();
        assert!(weights.iter().all(|w| w.abs() <= 0.05));
        // Uniform on [-a, a] has std a / sqrt(3).
        let (_, std) = mean_and_std(&weights);
        assert!((std / (0.05 / 3f64.sqrt()) - 1.0).abs() < 0.1, "std {std}");
    }
}
