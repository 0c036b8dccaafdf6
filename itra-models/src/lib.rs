//! Image classifiers for the ITRA experiments, each split into a feature extractor and a linear
//! head so that feature-level losses (MMD, ITRA, center loss) can act on the classifier's input.
//!
//! [`Arch`] lists every architecture, [`build`] makes a fresh one as a [`VisionModel`], and
//! [`describe()`] gives its parameter and multiply-accumulate counts without building it. This
//! crate does no I/O except loading and saving weights ([`weights`]).
//!
//! # Forms
//! Each family comes in torchvision's ImageNet form (parameter counts equal torchvision's) and
//! a CIFAR form for small images, after `kuangliu/pytorch-cifar`: a stride-1 stem without
//! max-pool for ResNet, a single linear layer on the 512 pooled maps for VGG, stride 1 in the
//! stem and the first down-sampling stage for MobileNetV2. **STL-10 (96x96) uses the CIFAR
//! forms**: its images are close to CIFAR's scale, and the ImageNet stems would shrink them to
//! 3x3 maps by the last stage. Every CIFAR form ends with a *global* average pool, so 96x96
//! inputs give the same feature width as 32x32 ones (kuangliu's fixed 4x4 pool would not).
//!
//! # Initialisation
//! As torchvision: convolutions Kaiming-normal with fan-out and ReLU gain (fan-out computed as
//! PyTorch does, see [`init::conv_kaiming_normal_fan_out`]), batch norm weight 1 and bias 0,
//! ResNet and [`SmallCnn`] linear layers PyTorch's default `U(±1/sqrt(fan_in))` (Burn's
//! `LinearConfig` default draws the same), VGG and MobileNetV2 linear layers `N(0, 0.01)` with
//! zero bias. The CIFAR forms use the same scheme as the ImageNet forms, although kuangliu's
//! code keeps PyTorch's layer defaults.
//!
//! # Differences from PyTorch that remain
//! - Burn's batch norm updates `running_var` with the biased batch variance, PyTorch with the
//!   unbiased one (a factor `n / (n - 1)`, `n` = batch x height x width: negligible for the
//!   batch sizes of the experiments, noticeable only on 1x1 maps with tiny batches).
//! - Dropout (VGG's hidden layers, MobileNetV2's head) draws from Burn's generator, so masks
//!   differ from PyTorch's even with equal seeds.

use std::fmt;
use std::str::FromStr;

use burn::module::Module;
use burn::tensor::{Device, Tensor};

pub mod describe;
pub mod init;
pub mod kernels;
pub mod layers;
pub mod mobilenetv2;
pub mod resnet;
pub mod small_cnn;
pub mod stats;
#[doc(hidden)]
pub mod testing;
pub mod text;
pub mod vgg;
pub mod weights;

pub use describe::{ArchInfo, describe};
pub use mobilenetv2::{MobileNetV2, MobileNetV2Form};
pub use resnet::{ResNet, ResNetDepth, ResNetStem};
pub use small_cnn::SmallCnn;
pub use stats::trainable_params;
pub use text::{TextFeatureModel, TextModel, TokenBatch};
pub use vgg::{Vgg, VggForm};

/// A classifier whose last hidden layer is exposed.
///
/// `forward(x) == forward_head(forward_features(x))` always holds; the head is a single linear
/// layer (after dropout in MobileNetV2) in every architecture of this crate.
pub trait FeatureModel {
    /// The last hidden representation, the input of the classifier.
    ///
    /// # Shapes
    /// - images: `[batch, channels, height, width]`
    /// - output: `[batch, feat_dim]`
    fn forward_features(&self, images: Tensor<4>) -> Tensor<2>;

    /// The logits computed from features.
    ///
    /// # Shapes
    /// - features: `[batch, feat_dim]`
    /// - output: `[batch, num_classes]`
    fn forward_head(&self, features: Tensor<2>) -> Tensor<2>;

    /// The width of [`forward_features`](FeatureModel::forward_features)'s output.
    fn feat_dim(&self) -> usize;

    /// The logits, `[batch, num_classes]`.
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward_head(self.forward_features(images))
    }
}

/// Any architecture of this crate, so training code holds one concrete module type.
///
/// Burn puts the variant name in parameter paths (`ResNet.layer1.0.Basic.conv1.weight`);
/// [`weights`] skips enum levels so files carry torchvision's names.
// Burn's Module derive does not see through `Box`, and a model holds few of these.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum VisionModel {
    SmallCnn(SmallCnn),
    ResNet(ResNet),
    Vgg(Vgg),
    MobileNetV2(MobileNetV2),
}

macro_rules! delegate {
    ($self:ident, $model:ident => $call:expr) => {
        match $self {
            VisionModel::SmallCnn($model) => $call,
            VisionModel::ResNet($model) => $call,
            VisionModel::Vgg($model) => $call,
            VisionModel::MobileNetV2($model) => $call,
        }
    };
}

impl FeatureModel for VisionModel {
    fn forward_features(&self, images: Tensor<4>) -> Tensor<2> {
        delegate!(self, model => model.forward_features(images))
    }

    fn forward_head(&self, features: Tensor<2>) -> Tensor<2> {
        delegate!(self, model => model.forward_head(features))
    }

    fn feat_dim(&self) -> usize {
        delegate!(self, model => model.feat_dim())
    }
}

/// Every network of this crate is an [`itra_core::FeatureClassifier`] of image batches, so that
/// [`itra_core::ItraObjective::forward_step`] and the burn-train integration take it as it is.
macro_rules! feature_classifier {
    ($($model:ty),*) => {$(
        impl itra_core::FeatureClassifier<Tensor<4>> for $model {
            fn features(&self, input: Tensor<4>) -> Tensor<2> {
                FeatureModel::forward_features(self, input)
            }

            fn head(&self, features: Tensor<2>) -> Tensor<2> {
                FeatureModel::forward_head(self, features)
            }

            fn feat_dim(&self) -> usize {
                FeatureModel::feat_dim(self)
            }
        }
    )*};
}

feature_classifier!(VisionModel, SmallCnn, ResNet, Vgg, MobileNetV2);

/// The registered architectures. Serialised under their [`name`](Arch::name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Arch {
    /// [`SmallCnn`], for 28x28 inputs.
    #[serde(rename = "small-cnn")]
    SmallCnn,
    /// torchvision `resnet18`.
    #[serde(rename = "resnet18")]
    ResNet18,
    /// ResNet-18 with the CIFAR stem (kuangliu/pytorch-cifar).
    #[serde(rename = "resnet18-cifar")]
    ResNet18Cifar,
    /// torchvision `resnet34`.
    #[serde(rename = "resnet34")]
    ResNet34,
    /// ResNet-34 with the CIFAR stem.
    #[serde(rename = "resnet34-cifar")]
    ResNet34Cifar,
    /// torchvision `resnet50`.
    #[serde(rename = "resnet50")]
    ResNet50,
    /// ResNet-50 with the CIFAR stem.
    #[serde(rename = "resnet50-cifar")]
    ResNet50Cifar,
    /// torchvision `resnet101`.
    #[serde(rename = "resnet101")]
    ResNet101,
    /// ResNet-101 with the CIFAR stem.
    #[serde(rename = "resnet101-cifar")]
    ResNet101Cifar,
    /// torchvision `vgg13_bn`.
    #[serde(rename = "vgg13")]
    Vgg13,
    /// VGG-13-BN with one linear layer on the 512 pooled maps (kuangliu/pytorch-cifar).
    #[serde(rename = "vgg13-cifar")]
    Vgg13Cifar,
    /// torchvision `mobilenet_v2`.
    #[serde(rename = "mobilenetv2")]
    MobileNetV2,
    /// MobileNetV2 with stride 1 in the stem and the first down-sampling stage.
    #[serde(rename = "mobilenetv2-cifar")]
    MobileNetV2Cifar,
}

/// An architecture's family and form, what its constructor needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    SmallCnn,
    ResNet(ResNetDepth, ResNetStem),
    Vgg(VggForm),
    MobileNetV2(MobileNetV2Form),
}

impl Arch {
    /// Every architecture, in the order `itra models` lists them.
    pub const ALL: &'static [Arch] = &[
        Arch::SmallCnn,
        Arch::ResNet18,
        Arch::ResNet18Cifar,
        Arch::ResNet34,
        Arch::ResNet34Cifar,
        Arch::ResNet50,
        Arch::ResNet50Cifar,
        Arch::ResNet101,
        Arch::ResNet101Cifar,
        Arch::Vgg13,
        Arch::Vgg13Cifar,
        Arch::MobileNetV2,
        Arch::MobileNetV2Cifar,
    ];

    /// The name used on the command line and in configuration files.
    pub fn name(&self) -> &'static str {
        match self {
            Arch::SmallCnn => "small-cnn",
            Arch::ResNet18 => "resnet18",
            Arch::ResNet18Cifar => "resnet18-cifar",
            Arch::ResNet34 => "resnet34",
            Arch::ResNet34Cifar => "resnet34-cifar",
            Arch::ResNet50 => "resnet50",
            Arch::ResNet50Cifar => "resnet50-cifar",
            Arch::ResNet101 => "resnet101",
            Arch::ResNet101Cifar => "resnet101-cifar",
            Arch::Vgg13 => "vgg13",
            Arch::Vgg13Cifar => "vgg13-cifar",
            Arch::MobileNetV2 => "mobilenetv2",
            Arch::MobileNetV2Cifar => "mobilenetv2-cifar",
        }
    }

    /// The family and form.
    pub fn family(&self) -> Family {
        use ResNetDepth::*;
        use ResNetStem::{Cifar, ImageNet};
        match self {
            Arch::SmallCnn => Family::SmallCnn,
            Arch::ResNet18 => Family::ResNet(R18, ImageNet),
            Arch::ResNet18Cifar => Family::ResNet(R18, Cifar),
            Arch::ResNet34 => Family::ResNet(R34, ImageNet),
            Arch::ResNet34Cifar => Family::ResNet(R34, Cifar),
            Arch::ResNet50 => Family::ResNet(R50, ImageNet),
            Arch::ResNet50Cifar => Family::ResNet(R50, Cifar),
            Arch::ResNet101 => Family::ResNet(R101, ImageNet),
            Arch::ResNet101Cifar => Family::ResNet(R101, Cifar),
            Arch::Vgg13 => Family::Vgg(VggForm::ImageNet),
            Arch::Vgg13Cifar => Family::Vgg(VggForm::Cifar),
            Arch::MobileNetV2 => Family::MobileNetV2(MobileNetV2Form::ImageNet),
            Arch::MobileNetV2Cifar => Family::MobileNetV2(MobileNetV2Form::Cifar),
        }
    }

    /// The images the architecture was designed for, `[channels, height, width]`: a default
    /// for listings such as `itra models`.
    pub fn reference_input_shape(&self) -> [usize; 3] {
        match self.family() {
            Family::SmallCnn => [1, 28, 28],
            Family::ResNet(_, ResNetStem::ImageNet)
            | Family::Vgg(VggForm::ImageNet)
            | Family::MobileNetV2(MobileNetV2Form::ImageNet) => [3, 224, 224],
            Family::ResNet(_, ResNetStem::Cifar)
            | Family::Vgg(VggForm::Cifar)
            | Family::MobileNetV2(MobileNetV2Form::Cifar) => [3, 32, 32],
        }
    }

    pub(crate) fn min_input_description(&self) -> &'static str {
        match self.family() {
            Family::SmallCnn => "28x28 images",
            Family::Vgg(_) => "at least 32x32 images (five 2x2 max-pools)",
            Family::ResNet(..) | Family::MobileNetV2(_) => "images large enough for every layer",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = ModelError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Arch::ALL.iter().copied().find(|arch| arch.name() == name).ok_or_else(|| ModelError::UnknownArch {
            name: name.to_owned(),
            valid: Arch::ALL.iter().map(Arch::name).collect::<Vec<_>>().join(", "),
        })
    }
}

/// Why a model could not be built or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown architecture `{name}`; valid names are: {valid}")]
    UnknownArch { name: String, valid: String },
    #[error("{arch} needs at least one class")]
    NoClasses { arch: &'static str },
    #[error("{arch} cannot take input of shape {input_shape:?} (channels, height, width): expected {expected}")]
    UnsupportedInput { arch: &'static str, input_shape: [usize; 3], expected: &'static str },
    #[error(transparent)]
    Weights(#[from] weights::WeightsError),
}

/// A freshly initialised `arch` for `num_classes` classes and images of shape
/// `input_shape = [channels, height, width]`. The first convolution takes `channels` inputs.
///
/// Parameters are initialised lazily, on first use.
///
/// # Errors
/// [`ModelError::NoClasses`] when `num_classes` is zero and [`ModelError::UnsupportedInput`]
/// when the architecture cannot take `input_shape`.
pub fn build(
    arch: Arch,
    num_classes: usize,
    input_shape: [usize; 3],
    device: &Device,
) -> Result<VisionModel, ModelError> {
    describe(arch, num_classes, input_shape)?;
    let [channels, _, _] = input_shape;
    Ok(match arch.family() {
        Family::SmallCnn => VisionModel::SmallCnn(SmallCnn::new(channels, num_classes, device)),
        Family::ResNet(depth, stem) => VisionModel::ResNet(ResNet::new(depth, stem, channels, num_classes, device)),
        Family::Vgg(form) => VisionModel::Vgg(Vgg::vgg13_bn(form, channels, num_classes, device)),
        Family::MobileNetV2(form) => VisionModel::MobileNetV2(MobileNetV2::new(form, channels, num_classes, device)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_from_str_and_serde() {
        for &arch in Arch::ALL {
            assert_eq!(arch.name().parse::<Arch>().unwrap(), arch);
            assert_eq!(arch.to_string(), arch.name());
            let json = serde_json::to_string(&arch).unwrap();
            assert_eq!(json, format!("\"{}\"", arch.name()));
            assert_eq!(serde_json::from_str::<Arch>(&json).unwrap(), arch);
        }
    }

    #[test]
    fn unknown_name_lists_the_valid_ones() {
        let message = "resnet7".parse::<Arch>().unwrap_err().to_string();
        assert!(message.contains("resnet7"), "{message}");
        for arch in Arch::ALL {
            assert!(message.contains(arch.name()), "{message}");
        }
    }

    #[test]
    fn build_rejects_inputs_the_architecture_cannot_take() {
        let device = Device::flex();
        let error = build(Arch::SmallCnn, 10, [1, 32, 32], &device).unwrap_err();
        assert!(matches!(error, ModelError::UnsupportedInput { .. }), "{error}");
        assert!(matches!(build(Arch::SmallCnn, 0, [1, 28, 28], &device), Err(ModelError::NoClasses { .. })));
        assert!(build(Arch::Vgg13Cifar, 10, [3, 16, 16], &device).is_err());
        assert!(build(Arch::SmallCnn, 10, [1, 28, 28], &device).is_ok());
    }
}
