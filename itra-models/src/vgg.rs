//! VGG-13 with batch norm (Simonyan & Zisserman, 2015; torchvision `vgg13_bn`), in torchvision's
//! ImageNet form and in the CIFAR form of `kuangliu/pytorch-cifar` (`VGG('VGG13')`).
//!
//! `features` and `classifier` list their layers at torchvision's `nn.Sequential` indices,
//! parameter-free ones included, so `features.7` is the third convolution in both. The
//! [`VggLayer`] enum level of the paths is skipped when loading (see [`crate::weights`]).

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, Dropout, DropoutConfig, Linear, Relu};
use burn::tensor::{Device, Tensor};

use crate::FeatureModel;
use crate::init::linear_normal_001;
use crate::layers::{batch_norm, batch_norm_forward, conv_forward, conv2d, global_avg_pool, linear, max_pool_forward};

/// Configuration "B" of the paper: output channels of each 3x3 convolution, `None` for a 2x2
/// max-pool.
pub const VGG13_LAYOUT: [Option<usize>; 15] = [
    Some(64),
    Some(64),
    None,
    Some(128),
    Some(128),
    None,
    Some(256),
    Some(256),
    None,
    Some(512),
    Some(512),
    None,
    Some(512),
    Some(512),
    None,
];

/// Width of the hidden classifier layers of the ImageNet form.
pub const IMAGENET_HIDDEN: usize = 4096;
/// Side of the adaptive average pool's output in the ImageNet form.
pub const IMAGENET_POOL_SIDE: usize = 7;

/// The two forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VggForm {
    /// torchvision: adaptive 7x7 average pool, `Linear(25088, 4096) ReLU Dropout(0.5)
    /// Linear(4096, 4096) ReLU Dropout(0.5) Linear(4096, K)`; features are the 4096-d input
    /// of the last linear layer, so in training they have passed through dropout.
    ImageNet,
    /// kuangliu: global average pool of the last 512 maps (the features), `Linear(512, K)`.
    ///
    /// kuangliu flattens a 1x1 map (its `AvgPool2d(1, 1)` is the identity at 32x32); global
    /// pooling is the same there and lets 96x96 STL-10 images through. kuangliu names the
    /// linear layer `classifier`, here it is `classifier.0` for uniformity with the ImageNet
    /// form.
    Cifar,
}

/// One entry of `features`.
#[derive(Module, Debug)]
pub enum VggLayer {
    Conv(Conv2d),
    Norm(BatchNorm),
    Relu(Relu),
    MaxPool(MaxPool2d),
}

impl VggLayer {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::Conv(layer) => conv_forward(layer, x),
            Self::Norm(layer) => batch_norm_forward(layer, x, false),
            Self::Relu(layer) => layer.forward(x),
            Self::MaxPool(layer) => max_pool_forward(layer, x),
        }
    }
}

/// One entry of `classifier`.
#[derive(Module, Debug)]
pub enum VggClassifierLayer {
    Linear(Linear),
    Relu(Relu),
    Dropout(Dropout),
}

impl VggClassifierLayer {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        match self {
            Self::Linear(layer) => layer.forward(x),
            Self::Relu(layer) => layer.forward(x),
            Self::Dropout(layer) => layer.forward(x),
        }
    }
}

/// VGG-13 with batch norm.
///
/// # Shapes
/// - input: `[batch, channels, height, width]`, at least 32x32
/// - features: `[batch, 4096]` (ImageNet form) or `[batch, 512]` (CIFAR form)
/// - logits: `[batch, num_classes]`
#[derive(Module, Debug)]
pub struct Vgg {
    pub features: Vec<VggLayer>,
    /// Present in the ImageNet form only.
    pub avgpool: Option<AdaptiveAvgPool2d>,
    /// Hidden layers then, last, the linear head.
    pub classifier: Vec<VggClassifierLayer>,
}

impl Vgg {
    /// VGG-13-BN with torchvision's initialisation: Kaiming-normal (fan-out, ReLU gain)
    /// convolutions with zero bias, batch norm 1/0, linear layers `N(0, 0.01)` with zero bias.
    /// kuangliu's CIFAR code keeps PyTorch's default initialisation instead; torchvision's is used
    /// for both forms so that they differ only in shape.
    pub fn vgg13_bn(form: VggForm, in_channels: usize, num_classes: usize, device: &Device) -> Self {
        let mut features = Vec::new();
        let mut channels = in_channels;
        for entry in VGG13_LAYOUT {
            match entry {
                Some(out_channels) => {
                    features.push(VggLayer::Conv(conv2d([channels, out_channels], 3, 1, 1, 1, true, device)));
                    features.push(VggLayer::Norm(batch_norm(out_channels, device)));
                    features.push(VggLayer::Relu(Relu::new()));
                    channels = out_channels;
                }
                None => features.push(VggLayer::MaxPool(MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init())),
            }
        }
        let dense = |d_input, d_output| {
            VggClassifierLayer::Linear(linear(d_input, d_output, Some(linear_normal_001()), device))
        };
        let (avgpool, classifier) = match form {
            VggForm::ImageNet => (
                Some(AdaptiveAvgPool2dConfig::new([IMAGENET_POOL_SIDE, IMAGENET_POOL_SIDE]).init()),
                vec![
                    dense(channels * IMAGENET_POOL_SIDE * IMAGENET_POOL_SIDE, IMAGENET_HIDDEN),
                    VggClassifierLayer::Relu(Relu::new()),
                    VggClassifierLayer::Dropout(DropoutConfig::new(0.5).init()),
                    dense(IMAGENET_HIDDEN, IMAGENET_HIDDEN),
                    VggClassifierLayer::Relu(Relu::new()),
                    VggClassifierLayer::Dropout(DropoutConfig::new(0.5).init()),
                    dense(IMAGENET_HIDDEN, num_classes),
                ],
            ),
            VggForm::Cifar => (None, vec![dense(channels, num_classes)]),
        };
        Self { features, avgpool, classifier }
    }

    fn head(&self) -> &Linear {
        match self.classifier.last() {
            Some(VggClassifierLayer::Linear(head)) => head,
            _ => unreachable!("the classifier of every form ends with a linear layer"),
        }
    }
}

impl FeatureModel for Vgg {
    fn forward_features(&self, images: Tensor<4>) -> Tensor<2> {
        let mut maps = images;
        let mut layers = self.features.iter().peekable();
        while let Some(layer) = layers.next() {
            maps = match (layer, layers.peek()) {
                // Batch norm and the ReLU after it in one fused pass.
                (VggLayer::Norm(norm), Some(VggLayer::Relu(_))) => {
                    layers.next();
                    batch_norm_forward(norm, maps, true)
                }
                _ => layer.forward(maps),
            };
        }
        match &self.avgpool {
            Some(avgpool) => {
                let pooled = avgpool.forward(maps).flatten::<2>(1, 3);
                let hidden = &self.classifier[..self.classifier.len() - 1];
                hidden.iter().fold(pooled, |x, layer| layer.forward(x))
            }
            None => global_avg_pool(maps),
        }
    }

    fn forward_head(&self, features: Tensor<2>) -> Tensor<2> {
        self.head().forward(features)
    }

    fn feat_dim(&self) -> usize {
        self.head().weight.lazy_shape().dims::<2>()[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trainable_params;

    #[test]
    fn imagenet_count_equals_torchvision_vgg13_bn() {
        // Reference: `sum(p.numel() for p in torchvision.models.vgg13_bn().parameters())`.
        let model = Vgg::vgg13_bn(VggForm::ImageNet, 3, 1000, &Device::flex());
        assert_eq!(trainable_params(&model), 133_053_736);
    }

    #[test]
    fn cifar_count_follows_from_the_layers() {
        // kuangliu/pytorch-cifar `VGG('VGG13')`, 10 classes:
        // convolutions with bias: 3*64*9+64 = 1,792; 64*64*9+64 = 36,928; 64*128*9+128 = 73,856;
        // 128*128*9+128 = 147,584; 128*256*9+256 = 295,168; 256*256*9+256 = 590,080;
        // 256*512*9+512 = 1,180,160; three of 512*512*9+512 = 2,359,808 -> 9,404,992.
        // Batch norm 2*(64+64+128+128+256+256+512+512+512+512) = 5,888. Linear 512*10+10 = 5,130.
        let convolutions = 1_792 + 36_928 + 73_856 + 147_584 + 295_168 + 590_080 + 1_180_160 + 3 * 2_359_808;
        assert_eq!(convolutions, 9_404_992);
        let model = Vgg::vgg13_bn(VggForm::Cifar, 3, 10, &Device::flex());
        assert_eq!(trainable_params(&model), convolutions + 5_888 + 5_130);
        assert_eq!(trainable_params(&model), 9_416_010);
    }
}
