//! MobileNetV2 (Sandler et al., 2018) in torchvision's ImageNet form and in a CIFAR form.
//!
//! The layers sit at torchvision's `nn.Sequential` indices: `features.0.0` is the stem
//! convolution, `features.N.conv.M` the layers of block N, `features.18.0` the last 1x1
//! convolution and `classifier.1` the linear head. Tuples stand for the small `Sequential`s
//! (`Conv2dNormActivation` = `(conv, bn)`, its ReLU6 having no parameters), and the enum levels
//! of the paths are skipped when loading (see [`crate::weights`]).

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Dropout, DropoutConfig, Linear};
use burn::tensor::activation::relu6;
use burn::tensor::{Device, Tensor};

use crate::FeatureModel;
use crate::init::linear_normal_001;
use crate::layers::{batch_norm, batch_norm_forward, conv_forward, conv2d, global_avg_pool, linear};

/// The inverted-residual stages of the paper's Table 2: expansion `t`, output channels `c`,
/// repeats `n`, stride of the first block `s` (ImageNet form).
pub const STAGES: [(usize, usize, usize, usize); 7] =
    [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)];
/// Output channels of the stem.
pub const STEM_CHANNELS: usize = 32;
/// Output channels of the last 1x1 convolution, the feature width.
pub const FEAT_DIM: usize = 1280;
/// Dropout before the linear head, as torchvision.
pub const DROPOUT: f64 = 0.2;

/// The two forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MobileNetV2Form {
    /// torchvision: stride-2 stem, total stride 32.
    ImageNet,
    /// Stride 1 in the stem and in the first down-sampling stage (`t=6, c=24`), total stride 8,
    /// as kuangliu/pytorch-cifar does for 32x32 images. Unlike kuangliu, the blocks stay
    /// torchvision's (no expansion convolution when `t = 1`, no projection shortcuts), so the two
    /// forms share parameter names and differ only in the head's width.
    Cifar,
}

impl MobileNetV2Form {
    /// Stride of the stem convolution.
    pub fn stem_stride(self) -> usize {
        match self {
            Self::ImageNet => 2,
            Self::Cifar => 1,
        }
    }

    /// Stride of the first block of stage `index` of [`STAGES`].
    pub fn stage_stride(self, index: usize) -> usize {
        match (self, index) {
            (Self::Cifar, 1) => 1,
            _ => STAGES[index].3,
        }
    }
}

/// torchvision's `Conv2dNormActivation(.., activation_layer=nn.ReLU6)`: convolution, batch norm
/// (ReLU6 applied in `forward`).
pub type ConvBnRelu6 = (Conv2d, BatchNorm);

fn conv_bn_relu6(channels: [usize; 2], kernel: usize, stride: usize, groups: usize, device: &Device) -> ConvBnRelu6 {
    (conv2d(channels, kernel, stride, (kernel - 1) / 2, groups, false, device), batch_norm(channels[1], device))
}

fn forward_conv_bn_relu6((conv, bn): &ConvBnRelu6, x: Tensor<4>) -> Tensor<4> {
    relu6(batch_norm_forward(bn, conv_forward(conv, x), false))
}

/// One entry of an inverted residual's `conv`.
// Burn's Module derive does not see through `Box`, and a model holds few of these.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum InvertedResidualLayer {
    /// The 1x1 expansion or the 3x3 depthwise convolution, with ReLU6.
    ConvBnRelu6(ConvBnRelu6),
    /// The linear 1x1 projection.
    Conv(Conv2d),
    /// The projection's batch norm.
    Norm(BatchNorm),
}

/// Expand (1x1, unless `t = 1`), depthwise 3x3, project (1x1, linear); residual when the
/// stride is 1 and the channels match.
#[derive(Module, Debug)]
pub struct InvertedResidual {
    pub conv: Vec<InvertedResidualLayer>,
    pub use_res_connect: bool,
}

impl InvertedResidual {
    fn new(in_channels: usize, out_channels: usize, stride: usize, expand_ratio: usize, device: &Device) -> Self {
        let hidden = in_channels * expand_ratio;
        let mut conv = Vec::new();
        if expand_ratio != 1 {
            conv.push(InvertedResidualLayer::ConvBnRelu6(conv_bn_relu6([in_channels, hidden], 1, 1, 1, device)));
        }
        conv.push(InvertedResidualLayer::ConvBnRelu6(conv_bn_relu6([hidden, hidden], 3, stride, hidden, device)));
        conv.push(InvertedResidualLayer::Conv(conv2d([hidden, out_channels], 1, 1, 0, 1, false, device)));
        conv.push(InvertedResidualLayer::Norm(batch_norm(out_channels, device)));
        Self { conv, use_res_connect: stride == 1 && in_channels == out_channels }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = self.conv.iter().fold(x.clone(), |x, layer| match layer {
            InvertedResidualLayer::ConvBnRelu6(layer) => forward_conv_bn_relu6(layer, x),
            InvertedResidualLayer::Conv(layer) => conv_forward(layer, x),
            InvertedResidualLayer::Norm(layer) => batch_norm_forward(layer, x, false),
        });
        if self.use_res_connect { x + out } else { out }
    }
}

/// One entry of `features`.
// Burn's Module derive does not see through `Box`, and a model holds few of these.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum MobileNetV2Layer {
    /// The stem and the last 1x1 convolution.
    ConvBnRelu6(ConvBnRelu6),
    Block(InvertedResidual),
}

/// MobileNetV2 with width multiplier 1.
///
/// # Shapes
/// - input: `[batch, channels, height, width]`, at least 32x32 (ImageNet form) or 8x8 (CIFAR)
/// - features: `[batch, 1280]`, globally average-pooled
/// - logits: `[batch, num_classes]`
#[derive(Module, Debug)]
pub struct MobileNetV2 {
    pub features: Vec<MobileNetV2Layer>,
    /// `Sequential(Dropout(0.2), Linear(1280, K))`; dropout acts in `forward_head`, after the
    /// features.
    pub classifier: (Dropout, Linear),
}

impl MobileNetV2 {
    /// A fresh network with torchvision's initialisation: Kaiming-normal fan-out convolutions,
    /// batch norm 1/0, linear `N(0, 0.01)` with zero bias.
    pub fn new(form: MobileNetV2Form, in_channels: usize, num_classes: usize, device: &Device) -> Self {
        let mut features = vec![MobileNetV2Layer::ConvBnRelu6(conv_bn_relu6(
            [in_channels, STEM_CHANNELS],
            3,
            form.stem_stride(),
            1,
            device,
        ))];
        let mut channels = STEM_CHANNELS;
        for (index, &(expand_ratio, out_channels, repeats, _)) in STAGES.iter().enumerate() {
            for repeat in 0..repeats {
                let stride = if repeat == 0 { form.stage_stride(index) } else { 1 };
                features.push(MobileNetV2Layer::Block(InvertedResidual::new(
                    channels,
                    out_channels,
                    stride,
                    expand_ratio,
                    device,
                )));
                channels = out_channels;
            }
        }
        features.push(MobileNetV2Layer::ConvBnRelu6(conv_bn_relu6([channels, FEAT_DIM], 1, 1, 1, device)));
        Self {
            features,
            classifier: (
                DropoutConfig::new(DROPOUT).init(),
                linear(FEAT_DIM, num_classes, Some(linear_normal_001()), device),
            ),
        }
    }
}

impl FeatureModel for MobileNetV2 {
    fn forward_features(&self, images: Tensor<4>) -> Tensor<2> {
        let maps = self.features.iter().fold(images, |x, layer| match layer {
            MobileNetV2Layer::ConvBnRelu6(layer) => forward_conv_bn_relu6(layer, x),
            MobileNetV2Layer::Block(block) => block.forward(x),
        });
        global_avg_pool(maps)
    }

    fn forward_head(&self, features: Tensor<2>) -> Tensor<2> {
        let (dropout, linear) = &self.classifier;
        linear.forward(dropout.forward(features))
    }

    fn feat_dim(&self) -> usize {
        FEAT_DIM
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trainable_params;

    #[test]
    fn imagenet_count_equals_torchvision() {
        // Reference: `sum(p.numel() for p in torchvision.models.mobilenet_v2().parameters())`.
        let model = MobileNetV2::new(MobileNetV2Form::ImageNet, 3, 1000, &Device::flex());
        assert_eq!(trainable_params(&model), 3_504_872);
    }

    #[test]
    fn cifar_count_differs_only_in_the_head() {
        // Strides do not change parameter counts, so the CIFAR form with 10 classes has
        // torchvision's 3,504,872 - (1280*1000 + 1000) + (1280*10 + 10) = 2,236,682.
        let model = MobileNetV2::new(MobileNetV2Form::Cifar, 3, 10, &Device::flex());
        assert_eq!(trainable_params(&model), 3_504_872 - 1_281_000 + 12_810);
        assert_eq!(trainable_params(&model), 2_236_682);
    }
}
