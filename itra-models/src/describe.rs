//! Parameter and multiply-accumulate counts computed from the layer shapes, without building
//! a model.
//!
//! MACs count the multiply-adds of convolutions and linear layers for one image, ignoring
//! biases, batch norm, activations, pooling and residual additions: the convention behind
//! torchvision's "GFLOPS" column (1.81 for `resnet18` at 224x224).

use crate::mobilenetv2::{self, MobileNetV2Form};
use crate::resnet::{ResNetDepth, ResNetStem};
use crate::vgg::{self, VggForm};
use crate::{Arch, Family, ModelError, small_cnn};

/// What `itra models --json` reports for one architecture.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArchInfo {
    /// [`Arch::name`].
    pub name: String,
    /// Trainable scalars, as PyTorch's `sum(p.numel() for p in model.parameters())`.
    pub params: u64,
    /// Multiply-accumulates of one forward pass on one image.
    pub macs: u64,
    /// Width of the features the classifier reads.
    pub feat_dim: usize,
}

/// The counts of `arch` for `num_classes` classes and `input_shape = [channels, height, width]`.
///
/// # Errors
/// The same as [`crate::build`] for the same arguments.
pub fn describe(arch: Arch, num_classes: usize, input_shape: [usize; 3]) -> Result<ArchInfo, ModelError> {
    let invalid = |expected| ModelError::UnsupportedInput { arch: arch.name(), input_shape, expected };
    if num_classes == 0 {
        return Err(ModelError::NoClasses { arch: arch.name() });
    }
    let [channels, height, width] = input_shape;
    if channels == 0 || height == 0 || width == 0 {
        return Err(invalid("a non-empty image"));
    }
    let input = Maps { channels, height, width };
    let mut tally = Tally::default();
    let feat_dim = match arch.family() {
        Family::SmallCnn => {
            if height != small_cnn::INPUT_SIDE || width != small_cnn::INPUT_SIDE {
                return Err(invalid("28x28 images"));
            }
            small_cnn_tally(&mut tally, input, num_classes)
        }
        Family::ResNet(depth, stem) => resnet_tally(&mut tally, input, depth, stem, num_classes),
        Family::Vgg(form) => vgg_tally(&mut tally, input, form, num_classes),
        Family::MobileNetV2(form) => mobilenetv2_tally(&mut tally, input, form, num_classes),
    };
    if tally.collapsed {
        return Err(invalid(arch.min_input_description()));
    }
    Ok(ArchInfo { name: arch.name().to_owned(), params: tally.params, macs: tally.macs, feat_dim })
}

/// The shape of a batch of one image's feature maps.
#[derive(Clone, Copy, Debug)]
struct Maps {
    channels: usize,
    height: usize,
    width: usize,
}

impl Maps {
    fn positions(self) -> u64 {
        (self.height * self.width) as u64
    }

    /// The output of a `kernel`-sized window with `stride` and `padding`, as PyTorch's
    /// `floor((side + 2 padding - kernel) / stride) + 1`; `None` when the window does not fit.
    fn window(self, kernel: usize, stride: usize, padding: usize) -> Option<Maps> {
        let side = |size: usize| (size + 2 * padding).checked_sub(kernel).map(|room| room / stride + 1);
        Some(Maps { channels: self.channels, height: side(self.height)?, width: side(self.width)? })
    }
}

#[derive(Default)]
struct Tally {
    params: u64,
    macs: u64,
    /// Set when some layer's output would have no positions.
    collapsed: bool,
}

impl Tally {
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        x: Maps,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        groups: usize,
        bias: bool,
    ) -> Maps {
        let weights = (out_channels * x.channels / groups * kernel * kernel) as u64;
        self.params += weights + if bias { out_channels as u64 } else { 0 };
        let out = self.window(x, kernel, stride, padding);
        self.macs += weights * out.positions();
        Maps { channels: out_channels, ..out }
    }

    fn batch_norm(&mut self, x: Maps) -> Maps {
        self.params += 2 * x.channels as u64;
        x
    }

    fn pool(&mut self, x: Maps, kernel: usize, stride: usize, padding: usize) -> Maps {
        self.window(x, kernel, stride, padding)
    }

    fn window(&mut self, x: Maps, kernel: usize, stride: usize, padding: usize) -> Maps {
        x.window(kernel, stride, padding).unwrap_or_else(|| {
            self.collapsed = true;
            // Carry on with one position so the parameter count is still meaningful.
            Maps { height: 1, width: 1, ..x }
        })
    }

    fn linear(&mut self, d_input: usize, d_output: usize) {
        self.params += (d_input * d_output + d_output) as u64;
        self.macs += (d_input * d_output) as u64;
    }
}

fn small_cnn_tally(tally: &mut Tally, x: Maps, num_classes: usize) -> usize {
    let x = tally.conv(x, 32, 3, 1, 1, 1, false);
    let x = tally.batch_norm(x);
    let x = tally.pool(x, 2, 2, 0);
    let x = tally.conv(x, 64, 3, 1, 1, 1, false);
    let x = tally.batch_norm(x);
    let x = tally.pool(x, 2, 2, 0);
    tally.linear(x.channels * x.height * x.width, small_cnn::FEAT_DIM);
    tally.linear(small_cnn::FEAT_DIM, num_classes);
    small_cnn::FEAT_DIM
}

fn resnet_tally(tally: &mut Tally, x: Maps, depth: ResNetDepth, stem: ResNetStem, num_classes: usize) -> usize {
    let mut x = match stem {
        ResNetStem::ImageNet => {
            let x = tally.conv(x, 64, 7, 2, 3, 1, false);
            let x = tally.batch_norm(x);
            tally.pool(x, 3, 2, 1)
        }
        ResNetStem::Cifar => {
            let x = tally.conv(x, 64, 3, 1, 1, 1, false);
            tally.batch_norm(x)
        }
    };
    let expansion = depth.expansion();
    for (stage, blocks) in depth.blocks().into_iter().enumerate() {
        let planes = 64 << stage;
        for block in 0..blocks {
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            let input = x;
            x = if depth.bottleneck() {
                let y = tally.conv(input, planes, 1, 1, 0, 1, false);
                let y = tally.batch_norm(y);
                let y = tally.conv(y, planes, 3, stride, 1, 1, false);
                let y = tally.batch_norm(y);
                let y = tally.conv(y, planes * expansion, 1, 1, 0, 1, false);
                tally.batch_norm(y)
            } else {
                let y = tally.conv(input, planes, 3, stride, 1, 1, false);
                let y = tally.batch_norm(y);
                let y = tally.conv(y, planes, 3, 1, 1, 1, false);
                tally.batch_norm(y)
            };
            if stride != 1 || input.channels != planes * expansion {
                let shortcut = tally.conv(input, planes * expansion, 1, stride, 0, 1, false);
                tally.batch_norm(shortcut);
            }
        }
    }
    tally.linear(depth.feat_dim(), num_classes);
    depth.feat_dim()
}

fn vgg_tally(tally: &mut Tally, mut x: Maps, form: VggForm, num_classes: usize) -> usize {
    for entry in vgg::VGG13_LAYOUT {
        x = match entry {
            Some(out_channels) => {
                let y = tally.conv(x, out_channels, 3, 1, 1, 1, true);
                tally.batch_norm(y)
            }
            None => tally.pool(x, 2, 2, 0),
        };
    }
    match form {
        VggForm::ImageNet => {
            let side = vgg::IMAGENET_POOL_SIDE;
            tally.linear(x.channels * side * side, vgg::IMAGENET_HIDDEN);
            tally.linear(vgg::IMAGENET_HIDDEN, vgg::IMAGENET_HIDDEN);
            tally.linear(vgg::IMAGENET_HIDDEN, num_classes);
            vgg::IMAGENET_HIDDEN
        }
        VggForm::Cifar => {
            tally.linear(x.channels, num_classes);
            x.channels
        }
    }
}

fn mobilenetv2_tally(tally: &mut Tally, x: Maps, form: MobileNetV2Form, num_classes: usize) -> usize {
    let x = tally.conv(x, mobilenetv2::STEM_CHANNELS, 3, form.stem_stride(), 1, 1, false);
    let mut x = tally.batch_norm(x);
    for (index, &(expand_ratio, out_channels, repeats, _)) in mobilenetv2::STAGES.iter().enumerate() {
        for repeat in 0..repeats {
            let stride = if repeat == 0 { form.stage_stride(index) } else { 1 };
            let hidden = x.channels * expand_ratio;
            let mut y = x;
            if expand_ratio != 1 {
                y = tally.conv(y, hidden, 1, 1, 0, 1, false);
                y = tally.batch_norm(y);
            }
            y = tally.conv(y, hidden, 3, stride, 1, hidden, false);
            y = tally.batch_norm(y);
            y = tally.conv(y, out_channels, 1, 1, 0, 1, false);
            x = tally.batch_norm(y);
        }
    }
    let x = tally.conv(x, mobilenetv2::FEAT_DIM, 1, 1, 0, 1, false);
    tally.batch_norm(x);
    tally.linear(mobilenetv2::FEAT_DIM, num_classes);
    mobilenetv2::FEAT_DIM
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{build, trainable_params};
    use burn::tensor::Device;

    #[test]
    fn analytic_params_equal_the_built_models() {
        let device = Device::flex();
        for &arch in Arch::ALL {
            let shape = arch.reference_input_shape();
            for num_classes in [10, 1000] {
                let info = describe(arch, num_classes, shape).unwrap();
                let model = build(arch, num_classes, shape, &device).unwrap();
                assert_eq!(info.params, trainable_params(&model) as u64, "{arch}");
                assert_eq!(info.name, arch.name());
            }
        }
    }

    #[test]
    fn imagenet_macs_match_torchvision_gflops_column() {
        // torchvision's model table, "GFLOPS" at 224x224 (multiply-adds, in billions, 2 d.p.).
        let expected = [
            (Arch::ResNet18, 1.81),
            (Arch::ResNet34, 3.66),
            (Arch::ResNet50, 4.09),
            (Arch::ResNet101, 7.80),
            (Arch::Vgg13, 11.31),
            (Arch::MobileNetV2, 0.30),
        ];
        for (arch, gmacs) in expected {
            let info = describe(arch, 1000, [3, 224, 224]).unwrap();
            let rounded = (info.macs as f64 / 1e7).round() / 100.0;
            assert_eq!(rounded, gmacs, "{arch}: {} MACs", info.macs);
        }
    }

    #[test]
    fn small_cnn_macs_follow_from_the_layers() {
        // conv1 28*28*32*9 = 225,792; conv2 14*14*64*32*9 = 3,612,672;
        // fc1 3136*256 = 802,816; fc2 256*10 = 2,560.
        let info = describe(Arch::SmallCnn, 10, [1, 28, 28]).unwrap();
        assert_eq!(info.macs, 225_792 + 3_612_672 + 802_816 + 2_560);
        assert_eq!(info.feat_dim, 256);
    }

    #[test]
    fn stl10_sized_inputs_keep_the_cifar_feature_width() {
        for arch in [Arch::ResNet18Cifar, Arch::Vgg13Cifar, Arch::MobileNetV2Cifar] {
            let small = describe(arch, 10, [3, 32, 32]).unwrap();
            let stl = describe(arch, 10, [3, 96, 96]).unwrap();
            assert_eq!(small.feat_dim, stl.feat_dim);
            assert_eq!(small.params, stl.params);
            assert!(stl.macs > 8 * small.macs, "{arch}");
        }
    }
}
