//! Every registered architecture end to end: build, forward, backward, a short training run
//! and the torchvision-named weight round trip.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use itra_models::testing::assert_trains;
use itra_models::{Arch, FeatureModel, build, describe, trainable_params};

fn test_input_shape(arch: Arch) -> [usize; 3] {
    itra_models::testing::small_input_shape(arch, 32)
}

#[test]
fn every_registered_arch_runs_forward_and_backward() {
    let device = Device::flex().autodiff();
    device.seed(0);
    let num_classes = 3;
    for &arch in Arch::ALL {
        let input_shape = test_input_shape(arch);
        let model = build(arch, num_classes, input_shape, &device).unwrap();
        let info = describe(arch, num_classes, input_shape).unwrap();
        assert_eq!(trainable_params(&model) as u64, info.params, "{arch}");
        assert_eq!(model.feat_dim(), info.feat_dim, "{arch}");
        let [channels, height, width] = input_shape;
        let features = assert_trains(&model, [2, channels, height, width], num_classes, &device);
        assert_eq!(features, [2, info.feat_dim], "{arch}");
    }
}

#[test]
fn resnet18_cifar_loss_falls_under_sgd() {
    let device = Device::flex().autodiff();
    device.seed(7);
    let batch = 8;
    let num_classes = 2;
    let mut model = build(Arch::ResNet18Cifar, num_classes, [3, 32, 32], &device).unwrap();
    // Two classes separated by the sign of the mean intensity: learnable in a few steps.
    let labels: Vec<i64> = (0..batch).map(|i| (i % 2) as i64).collect();
    let signs: Vec<f32> = labels.iter().map(|&label| if label == 1 { 1.0 } else { -1.0 }).collect();
    let shift = Tensor::<1>::from_data(TensorData::new(signs, [batch]), &device).reshape([batch, 1, 1, 1]);
    let images = Tensor::<4>::random([batch, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device) + shift;
    let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), &device);
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut optimizer = SgdConfig::new().init();

    let mut losses = Vec::new();
    for _ in 0..5 {
        let loss = loss_fn.forward(model.forward(images.clone()), targets.clone());
        losses.push(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(0.01, model, grads);
    }
    assert!(losses.iter().all(|loss| loss.is_finite()), "{losses:?}");
    assert!(losses[losses.len() - 1] < 0.5 * losses[0], "loss did not fall: {losses:?}");
}

#[test]
fn valid_copy_is_deterministic_and_matches_head_of_features() {
    let device = Device::flex().autodiff();
    let model = build(Arch::MobileNetV2Cifar, 4, [3, 16, 16], &device).unwrap().valid();
    let images = Tensor::<4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device.clone().inner());
    let logits = model.forward(images.clone());
    let again = model.forward_head(model.forward_features(images));
    logits.into_data().assert_eq(&again.into_data(), true);
}

mod torchvision_weights {
    use super::*;
    use itra_models::weights::{WeightsError, load_torchvision_safetensors, save_torchvision_safetensors};
    use safetensors::{Dtype, SafeTensors, tensor::TensorView};
    use std::path::Path;

    /// A model whose running statistics have moved away from 0/1, as a validation copy.
    fn trained_statistics(arch: Arch, device: &Device) -> itra_models::VisionModel {
        let model = build(arch, 3, [3, 32, 32], device).unwrap();
        let images = Tensor::<4>::random([2, 3, 32, 32], Distribution::Normal(0.5, 2.0), device);
        let _ = model.forward(images);
        model.valid()
    }

    /// Rewrites the file at `path` with `edit` applied to its `(name, dtype, shape, bytes)`
    /// entries, as a PyTorch exporter would have written them.
    fn rewrite(path: &Path, edit: impl FnOnce(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>)) {
        let bytes = std::fs::read(path).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let mut entries: Vec<_> = file
            .tensors()
            .into_iter()
            .map(|(name, view)| (name, view.dtype(), view.shape().to_vec(), view.data().to_vec()))
            .collect();
        edit(&mut entries);
        let views = entries
            .iter()
            .map(|(name, dtype, shape, data)| (name.clone(), TensorView::new(*dtype, shape.clone(), data).unwrap()));
        std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
    }

    #[test]
    fn resnet_round_trips_under_torchvision_names() {
        let autodiff = Device::flex().autodiff();
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resnet18-cifar.safetensors");
        let original = trained_statistics(Arch::ResNet18Cifar, &autodiff);
        save_torchvision_safetensors(&original, &path).unwrap();

        let bytes = std::fs::read(&path).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let names = file.names();
        for name in [
            "conv1.weight",
            "bn1.weight",
            "bn1.bias",
            "bn1.running_mean",
            "bn1.running_var",
            "layer1.0.conv1.weight",
            "layer2.0.downsample.0.weight",
            "layer2.0.downsample.1.running_var",
            "layer4.1.bn2.weight",
            "fc.weight",
            "fc.bias",
        ] {
            assert!(names.contains(&name), "{name} not in {names:?}");
        }
        assert!(
            names.iter().all(|name| !name.contains("gamma") && !name.contains("ResNet") && !name.contains("Basic"))
        );
        // PyTorch's layout: [out_features, in_features].
        assert_eq!(file.tensor("fc.weight").unwrap().shape(), [3, 512]);
        // ResNet-18: 20 convolutions, 20 batch norms (4 tensors each) and fc (2 tensors).
        assert_eq!(names.len(), 20 + 20 * 4 + 2);
        drop(file);

        // torchvision's state_dict also holds `num_batches_tracked`; loading must skip it.
        rewrite(&path, |entries| {
            entries.push(("bn1.num_batches_tracked".into(), Dtype::I64, vec![], 7i64.to_le_bytes().to_vec()));
        });
        let mut loaded = build(Arch::ResNet18Cifar, 3, [3, 32, 32], &device).unwrap();
        load_torchvision_safetensors(&mut loaded, &path).unwrap();
        let loaded = loaded.valid();

        let images = Tensor::<4>::random([2, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
        let expected = original.forward(images.clone()).into_data();
        loaded.forward(images).into_data().assert_eq(&expected, true);
    }

    #[test]
    fn indexed_sequentials_round_trip() {
        let autodiff = Device::flex().autodiff();
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        for (arch, expected_names) in [
            (
                Arch::Vgg13Cifar,
                ["features.0.weight", "features.1.running_mean", "features.7.bias", "classifier.0.weight"],
            ),
            (
                Arch::MobileNetV2Cifar,
                [
                    "features.0.0.weight",
                    "features.1.conv.0.0.weight",
                    "features.2.conv.3.running_var",
                    "classifier.1.weight",
                ],
            ),
        ] {
            let path = dir.path().join(format!("{arch}.safetensors"));
            let original = trained_statistics(arch, &autodiff);
            save_torchvision_safetensors(&original, &path).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            let names: Vec<String> =
                SafeTensors::deserialize(&bytes).unwrap().names().into_iter().map(String::from).collect();
            for name in expected_names {
                assert!(names.iter().any(|present| present == name), "{arch}: {name} not in {names:?}");
            }
            let mut loaded = build(arch, 3, [3, 32, 32], &device).unwrap();
            load_torchvision_safetensors(&mut loaded, &path).unwrap();
            let images = Tensor::<4>::random([2, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
            let expected = original.forward(images.clone()).into_data();
            loaded.valid().forward(images).into_data().assert_eq(&expected, true);
        }
    }

    #[test]
    fn missing_and_unexpected_tensors_are_reported() {
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small.safetensors");
        let model = build(Arch::MobileNetV2Cifar, 3, [3, 32, 32], &device).unwrap();
        save_torchvision_safetensors(&model, &path).unwrap();
        rewrite(&path, |entries| {
            entries.retain(|(name, ..)| name != "classifier.1.bias");
            entries.push(("classifier.2.weight".into(), Dtype::F32, vec![1], 0f32.to_le_bytes().to_vec()));
        });
        let mut target = build(Arch::MobileNetV2Cifar, 3, [3, 32, 32], &device).unwrap();
        match load_torchvision_safetensors(&mut target, &path) {
            Err(WeightsError::Mismatch { missing, unexpected, .. }) => {
                assert!(
                    missing.iter().any(|name| name.contains("classifier") && name.ends_with("bias")),
                    "{missing:?}"
                );
                assert_eq!(unexpected, ["classifier.2.weight"]);
            }
            other => panic!("expected a mismatch, got {other:?}"),
        }
    }
}
