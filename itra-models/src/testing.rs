//! Checks shared by this crate's unit and integration tests.

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, Distribution, Gradients, Int, Tensor, TensorData};

use crate::stats::{RUNNING_STAT_NAMES, trainable_params};
use crate::{Arch, Family, FeatureModel, MobileNetV2Form, ResNetStem};

/// Runs `model` forward on random images of `input_shape` (on an autodiff `device`), checks
/// the logits' shape, back-propagates a cross-entropy loss and asserts that every trainable
/// parameter received a finite gradient. Returns the features' shape.
pub fn assert_trains<M: Module + FeatureModel>(
    model: &M,
    input_shape: [usize; 4],
    num_classes: usize,
    device: &Device,
) -> [usize; 2] {
    assert!(device.is_autodiff(), "gradient checks need an autodiff device");
    let batch = input_shape[0];
    let images = Tensor::<4>::random(input_shape, Distribution::Normal(0.0, 1.0), device);
    let features = model.forward_features(images);
    let features_shape = features.dims();
    assert_eq!(features_shape, [batch, model.feat_dim()]);
    let logits = model.forward_head(features);
    assert_eq!(logits.dims(), [batch, num_classes]);
    let labels: Vec<i64> = (0..batch).map(|i| (i % num_classes) as i64).collect();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), device);
    let loss = CrossEntropyLossConfig::new().init(device).forward(logits, targets);
    let loss_value: f32 = loss.clone().into_scalar();
    assert!(loss_value.is_finite(), "loss is {loss_value}");

    let grads = loss.backward();
    let mut checker =
        GradientChecker { grads: &grads, path: Vec::new(), checked: 0, missing: Vec::new(), not_finite: Vec::new() };
    model.visit(&mut checker);
    assert!(checker.missing.is_empty(), "no gradient for {:?}", checker.missing);
    assert!(checker.not_finite.is_empty(), "non-finite gradient for {:?}", checker.not_finite);
    assert_eq!(checker.checked, trainable_params(model), "every trainable scalar is checked");
    features_shape
}

struct GradientChecker<'a> {
    grads: &'a Gradients,
    path: Vec<String>,
    checked: usize,
    missing: Vec<String>,
    not_finite: Vec<String>,
}

impl ModuleVisitor for GradientChecker<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_owned());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let name = self.path.last().map(String::as_str).unwrap_or_default();
        if RUNNING_STAT_NAMES.contains(&name) {
            return;
        }
        let path = self.path.join(".");
        match param.val().grad(self.grads) {
            None => self.missing.push(path),
            Some(grad) => {
                self.checked += grad.shape().num_elements();
                let finite = grad.is_finite().all().into_scalar::<bool>();
                if !finite {
                    self.not_finite.push(path);
                }
            }
        }
    }
}

/// `model` with every lazy parameter drawn now, in module order, and every dropout layer switched
/// off, forked onto `device`: one network for the same steps on two backends. (Dropout draws its
/// masks from each backend's own generator, so it would differ between them by construction.)
pub fn same_network_on<M: Module>(model: M, device: &Device) -> M {
    model.map(&mut Materialize { containers: Vec::new() }).fork(device)
}

struct Materialize {
    containers: Vec<String>,
}

impl burn::module::ModuleMapper for Materialize {
    fn enter_module(&mut self, _name: &str, container_type: &str) {
        self.containers.push(container_type.to_owned());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.containers.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        // `map` reads the value, which initialises a lazy parameter.
        param.map(|tensor| tensor)
    }

    fn map_flag(&mut self, flag: Param<burn::module::Flag>) -> Param<burn::module::Flag> {
        if self.containers.last().is_some_and(|kind| kind == "Struct:Dropout") { flag.with_value(false) } else { flag }
    }
}

/// The smallest input each form is exercised on: 28x28 for SmallCnn, 32x32 (five halvings to
/// 1x1) for VGG, `imagenet_side` for the ImageNet stems (32 halves to 1x1), 16x16 for the
/// stride-8 CIFAR stems (2x2 in the last stage), which keeps ResNet-101-CIFAR cheap.
pub fn small_input_shape(arch: Arch, imagenet_side: usize) -> [usize; 3] {
    let [channels, _, _] = arch.reference_input_shape();
    let side = match arch.family() {
        Family::SmallCnn => 28,
        Family::Vgg(_) => 32,
        Family::ResNet(_, ResNetStem::ImageNet) | Family::MobileNetV2(MobileNetV2Form::ImageNet) => imagenet_side,
        Family::ResNet(_, ResNetStem::Cifar) | Family::MobileNetV2(MobileNetV2Form::Cifar) => 16,
    };
    [channels, side, side]
}
