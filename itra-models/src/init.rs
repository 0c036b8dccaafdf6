//! Weight initialisers that reproduce torchvision's, written out because Burn's defaults differ.

use burn::nn::Initializer;

/// `nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")` as torchvision applies it
/// to every convolution of ResNet, VGG and MobileNetV2: `N(0, sqrt(2 / fan_out))`.
///
/// PyTorch's `fan_out` of a weight `[out, in / groups, kh, kw]` is `out * kh * kw`, whatever the
/// groups. Burn's `KaimingNormal { fan_out_only: true }` divides by the groups, which would give
/// depthwise convolutions (MobileNetV2) a standard deviation `sqrt(groups)` times too large, so
/// the deviation is computed here and handed to Burn as a plain normal.
pub fn conv_kaiming_normal_fan_out(out_channels: usize, kernel_size: [usize; 2]) -> Initializer {
    let fan_out = out_channels * kernel_size[0] * kernel_size[1];
    Initializer::Normal { mean: 0.0, std: (2.0 / fan_out as f64).sqrt() }
}

/// `nn.init.normal_(w, 0, 0.01)`, torchvision's initialiser for the linear layers of VGG and
/// MobileNetV2 (their biases are zeroed separately, see [`crate::layers::linear`]).
pub fn linear_normal_001() -> Initializer {
    Initializer::Normal { mean: 0.0, std: 0.01 }
}
