//! Small constructors shared by the architectures, so each family states only its shapes.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
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
    if bias {
        Conv2d {
            bias: Some(Initializer::Zeros.init([channels[1]], device)),
            ..conv
        }
    } else {
        conv
    }
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
            let linear = LinearConfig::new(d_input, d_output)
                .with_initializer(init)
                .with_bias(false)
                .init(device);
            Linear {
                bias: Some(Initializer::Zeros.init([d_output], device)),
                ..linear
            }
        }
    }
}

/// Global average pooling `[batch, channels, h, w] -> [batch, channels]`.
pub fn global_avg_pool(x: Tensor<4>) -> Tensor<2> {
    let [batch, channels, _, _] = x.dims();
    x.mean_dim(3).mean_dim(2).reshape([batch, channels])
}
