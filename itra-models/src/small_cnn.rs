//! A two-block CNN for 28x28 grey-scale images (KMNIST, Fashion-MNIST).

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, Linear};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::FeatureModel;
use crate::layers::{batch_norm, batch_norm_relu_max_pool, conv_forward, conv2d, linear};

/// Side of the square input the flattened feature size is computed for.
pub const INPUT_SIDE: usize = 28;
/// Width of the feature layer, the input of the classifier.
pub const FEAT_DIM: usize = 256;
/// Channels times positions after the second pooling: `64 * 7 * 7`.
const FLAT_DIM: usize = 64 * (INPUT_SIDE / 4) * (INPUT_SIDE / 4);

/// `conv3x3(c->32)+BN+ReLU+maxpool2`, `conv3x3(32->64)+BN+ReLU+maxpool2`, flatten,
/// `Linear(3136->256)+ReLU` (the features), `Linear(256->K)` (the head).
///
/// Convolutions carry no bias because batch norm follows them. There is no dropout, so the
/// features are deterministic given the batch statistics.
///
/// # Shapes
/// - input: `[batch, channels, 28, 28]`
/// - features: `[batch, 256]`
/// - logits: `[batch, num_classes]`
#[derive(Module, Debug)]
pub struct SmallCnn {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub conv2: Conv2d,
    pub bn2: BatchNorm,
    pub pool: MaxPool2d,
    /// The feature layer.
    pub fc1: Linear,
    /// The classifier.
    pub fc2: Linear,
}

impl SmallCnn {
    /// A fresh network for `in_channels`-channel 28x28 images and `num_classes` classes.
    pub fn new(in_channels: usize, num_classes: usize, device: &Device) -> Self {
        Self {
            conv1: conv2d([in_channels, 32], 3, 1, 1, 1, false, device),
            bn1: batch_norm(32, device),
            conv2: conv2d([32, 64], 3, 1, 1, 1, false, device),
            bn2: batch_norm(64, device),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            fc1: linear(FLAT_DIM, FEAT_DIM, None, device),
            fc2: linear(FEAT_DIM, num_classes, None, device),
        }
    }
}

impl FeatureModel for SmallCnn {
    fn forward_features(&self, images: Tensor<4>) -> Tensor<2> {
        let x = batch_norm_relu_max_pool(&self.bn1, &self.pool, conv_forward(&self.conv1, images));
        let x = batch_norm_relu_max_pool(&self.bn2, &self.pool, conv_forward(&self.conv2, x));
        relu(self.fc1.forward(x.flatten::<2>(1, 3)))
    }

    fn forward_head(&self, features: Tensor<2>) -> Tensor<2> {
        self.fc2.forward(features)
    }

    fn feat_dim(&self) -> usize {
        FEAT_DIM
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::assert_trains;
    use crate::trainable_params;

    #[test]
    fn parameter_count_matches_layer_arithmetic() {
        let model = SmallCnn::new(1, 10, &Device::flex());
        // conv1 32*1*3*3 = 288, bn1 2*32 = 64, conv2 64*32*3*3 = 18_432, bn2 2*64 = 128,
        // fc1 3136*256 + 256 = 803_072, fc2 256*10 + 10 = 2_570.
        assert_eq!(trainable_params(&model), 288 + 64 + 18_432 + 128 + 803_072 + 2_570);
        assert_eq!(trainable_params(&model), 824_554);
    }

    #[test]
    fn forward_and_backward_on_two_images() {
        let device = Device::flex().autodiff();
        let model = SmallCnn::new(1, 10, &device);
        let features = assert_trains(&model, [2, 1, 28, 28], 10, &device);
        assert_eq!(features, [2, FEAT_DIM]);
    }
}
