//! ResNet-18/34/50/101 (He et al., 2016) in torchvision's ImageNet form and in the CIFAR form
//! of the widely used `kuangliu/pytorch-cifar` code.
//!
//! Field names follow torchvision (`conv1`, `bn1`, `layer1.0.conv1`, `layer2.0.downsample.0`,
//! `fc`), so a torchvision `state_dict` loads with Burn's PyTorch adapter and
//! [`crate::weights`], which skips the `Basic`/`Bottleneck` enum level of the paths.
//! The bottleneck puts its stride on the 3x3 convolution ("ResNet v1.5"), as torchvision and
//! kuangliu do; the paper puts it on the first 1x1 convolution.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, Linear, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::FeatureModel;
use crate::layers::{batch_norm, batch_norm_forward, conv_forward, conv2d, global_avg_pool, linear, max_pool_forward};

/// Which residual block a depth uses and how many of them each of the four stages holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResNetDepth {
    R18,
    R34,
    R50,
    R101,
}

impl ResNetDepth {
    /// Blocks per stage (`layer1..layer4`).
    pub fn blocks(self) -> [usize; 4] {
        match self {
            Self::R18 => [2, 2, 2, 2],
            Self::R34 | Self::R50 => [3, 4, 6, 3],
            Self::R101 => [3, 4, 23, 3],
        }
    }

    /// Whether the stages use bottleneck blocks (channel expansion 4) instead of basic blocks.
    pub fn bottleneck(self) -> bool {
        matches!(self, Self::R50 | Self::R101)
    }

    /// Output channels of a block per `planes`: 1 for basic blocks, 4 for bottlenecks.
    pub fn expansion(self) -> usize {
        if self.bottleneck() { 4 } else { 1 }
    }

    /// Width of the pooled features: `512 * expansion`.
    pub fn feat_dim(self) -> usize {
        512 * self.expansion()
    }
}

/// The stem and its resolution changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResNetStem {
    /// 7x7 stride-2 convolution then 3x3 stride-2 max-pool: input side / 4 (torchvision).
    ImageNet,
    /// 3x3 stride-1 convolution, no max-pool: input side kept (kuangliu/pytorch-cifar).
    Cifar,
}

/// A 1x1 projection on the shortcut: torchvision's `downsample = Sequential(conv1x1, BN)`,
/// whence the tuple (paths `downsample.0.weight`, `downsample.1.running_mean`).
pub type Downsample = (Conv2d, BatchNorm);

/// Two 3x3 convolutions with an identity or projected shortcut (expansion 1).
#[derive(Module, Debug)]
pub struct BasicBlock {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub conv2: Conv2d,
    pub bn2: BatchNorm,
    pub downsample: Option<Downsample>,
}

/// 1x1 reduce, 3x3 (strided), 1x1 expand by 4, with an identity or projected shortcut.
#[derive(Module, Debug)]
pub struct Bottleneck {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub conv2: Conv2d,
    pub bn2: BatchNorm,
    pub conv3: Conv2d,
    pub bn3: BatchNorm,
    pub downsample: Option<Downsample>,
}

/// A residual block of either kind, so every depth shares one [`ResNet`] type.
// Burn's Module derive does not see through `Box`, and a model holds few of these.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum ResidualBlock {
    Basic(BasicBlock),
    Bottleneck(Bottleneck),
}

fn downsample(channels: [usize; 2], stride: usize, device: &Device) -> Option<Downsample> {
    (stride != 1 || channels[0] != channels[1])
        .then(|| (conv2d(channels, 1, stride, 0, 1, false, device), batch_norm(channels[1], device)))
}

fn shortcut(downsample: &Option<Downsample>, x: Tensor<4>) -> Tensor<4> {
    match downsample {
        Some((conv, bn)) => batch_norm_forward(bn, conv_forward(conv, x), false),
        None => x,
    }
}

impl BasicBlock {
    fn new(in_channels: usize, planes: usize, stride: usize, device: &Device) -> Self {
        Self {
            conv1: conv2d([in_channels, planes], 3, stride, 1, 1, false, device),
            bn1: batch_norm(planes, device),
            conv2: conv2d([planes, planes], 3, 1, 1, 1, false, device),
            bn2: batch_norm(planes, device),
            downsample: downsample([in_channels, planes], stride, device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = shortcut(&self.downsample, x.clone());
        let out = batch_norm_forward(&self.bn1, conv_forward(&self.conv1, x), true);
        let out = batch_norm_forward(&self.bn2, conv_forward(&self.conv2, out), false);
        relu(out + identity)
    }
}

impl Bottleneck {
    fn new(in_channels: usize, planes: usize, stride: usize, device: &Device) -> Self {
        let out_channels = planes * 4;
        Self {
            conv1: conv2d([in_channels, planes], 1, 1, 0, 1, false, device),
            bn1: batch_norm(planes, device),
            conv2: conv2d([planes, planes], 3, stride, 1, 1, false, device),
            bn2: batch_norm(planes, device),
            conv3: conv2d([planes, out_channels], 1, 1, 0, 1, false, device),
            bn3: batch_norm(out_channels, device),
            downsample: downsample([in_channels, out_channels], stride, device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = shortcut(&self.downsample, x.clone());
        let out = batch_norm_forward(&self.bn1, conv_forward(&self.conv1, x), true);
        let out = batch_norm_forward(&self.bn2, conv_forward(&self.conv2, out), true);
        let out = batch_norm_forward(&self.bn3, conv_forward(&self.conv3, out), false);
        relu(out + identity)
    }
}

impl ResidualBlock {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::Basic(block) => block.forward(x),
            Self::Bottleneck(block) => block.forward(x),
        }
    }
}

/// A residual network: stem, four stages, global average pooling (the features) and `fc`.
///
/// # Shapes
/// - input: `[batch, channels, height, width]`, at least 32x32 for the ImageNet stem
/// - features: `[batch, 512 * expansion]`
/// - logits: `[batch, num_classes]`
#[derive(Module, Debug)]
pub struct ResNet {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    /// Present in the ImageNet form only.
    pub maxpool: Option<MaxPool2d>,
    pub layer1: Vec<ResidualBlock>,
    pub layer2: Vec<ResidualBlock>,
    pub layer3: Vec<ResidualBlock>,
    pub layer4: Vec<ResidualBlock>,
    pub fc: Linear,
}

impl ResNet {
    /// A fresh network with torchvision's initialisation: Kaiming-normal (fan-out, ReLU gain)
    /// convolutions, batch norm 1/0, and PyTorch's default `fc` (`U(±1/sqrt(fan_in))`). As
    /// torchvision's default `zero_init_residual=False`, the last BN of each block starts at 1.
    pub fn new(depth: ResNetDepth, stem: ResNetStem, in_channels: usize, num_classes: usize, device: &Device) -> Self {
        let (conv1, maxpool) = match stem {
            ResNetStem::ImageNet => (
                conv2d([in_channels, 64], 7, 2, 3, 1, false, device),
                Some(
                    MaxPool2dConfig::new([3, 3])
                        .with_strides([2, 2])
                        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                        .init(),
                ),
            ),
            ResNetStem::Cifar => (conv2d([in_channels, 64], 3, 1, 1, 1, false, device), None),
        };
        let mut in_planes = 64;
        let mut stage = |planes: usize, blocks: usize, stride: usize| -> Vec<ResidualBlock> {
            (0..blocks)
                .map(|index| {
                    let block_stride = if index == 0 { stride } else { 1 };
                    let block = if depth.bottleneck() {
                        ResidualBlock::Bottleneck(Bottleneck::new(in_planes, planes, block_stride, device))
                    } else {
                        ResidualBlock::Basic(BasicBlock::new(in_planes, planes, block_stride, device))
                    };
                    in_planes = planes * depth.expansion();
                    block
                })
                .collect()
        };
        let [blocks1, blocks2, blocks3, blocks4] = depth.blocks();
        let layer1 = stage(64, blocks1, 1);
        let layer2 = stage(128, blocks2, 2);
        let layer3 = stage(256, blocks3, 2);
        let layer4 = stage(512, blocks4, 2);
        Self {
            conv1,
            bn1: batch_norm(64, device),
            maxpool,
            layer1,
            layer2,
            layer3,
            layer4,
            fc: linear(depth.feat_dim(), num_classes, None, device),
        }
    }
}

impl FeatureModel for ResNet {
    fn forward_features(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = batch_norm_forward(&self.bn1, conv_forward(&self.conv1, images), true);
        if let Some(maxpool) = &self.maxpool {
            x = max_pool_forward(maxpool, x);
        }
        for block in self.layer1.iter().chain(&self.layer2).chain(&self.layer3).chain(&self.layer4) {
            x = block.forward(x);
        }
        global_avg_pool(x)
    }

    fn forward_head(&self, features: Tensor<2>) -> Tensor<2> {
        self.fc.forward(features)
    }

    fn feat_dim(&self) -> usize {
        self.fc.weight.lazy_shape().dims::<2>()[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trainable_params;

    fn count(depth: ResNetDepth, stem: ResNetStem, num_classes: usize) -> usize {
        trainable_params(&ResNet::new(depth, stem, 3, num_classes, &Device::flex()))
    }

    #[test]
    fn imagenet_counts_equal_torchvision() {
        // Reference: `sum(p.numel() for p in torchvision.models.resnetN().parameters())`,
        // also the "Params" column of torchvision's model table.
        assert_eq!(count(ResNetDepth::R18, ResNetStem::ImageNet, 1000), 11_689_512);
        assert_eq!(count(ResNetDepth::R34, ResNetStem::ImageNet, 1000), 21_797_672);
        assert_eq!(count(ResNetDepth::R50, ResNetStem::ImageNet, 1000), 25_557_032);
        assert_eq!(count(ResNetDepth::R101, ResNetStem::ImageNet, 1000), 44_549_160);
    }

    #[test]
    fn cifar_count_equals_kuangliu() {
        // Reference: kuangliu/pytorch-cifar `ResNet18()` (10 classes) has 11,173,962
        // parameters = torchvision's 11,689,512 - 7x7x3x64 stem (9,408) + 3x3x3x64 stem (1,728)
        // - fc 512x1000+1000 (513,000) + 512x10+10 (5,130).
        assert_eq!(count(ResNetDepth::R18, ResNetStem::Cifar, 10), 11_173_962);
        assert_eq!(11_689_512 - 9_408 + 1_728 - 513_000 + 5_130, 11_173_962);
    }
}
