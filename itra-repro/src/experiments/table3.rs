//! Table 3: batch size. CIFAR-100 with ResNet-101 and ImageNet with ResNet-18; ITRA-c at three
//! batch sizes against the baseline and Center at the largest.

use itra_core::Method;
use itra_models::Arch;

use super::{Cell, Grid, Profile, Target, paper_augmentation, vision_config};
use crate::config::OptimizerConfig;

/// (dataset, model id, arch, smoke arch, paper batch sizes).
const SETTINGS: [(&str, &str, Arch, [u32; 3]); 2] = [
    ("cifar100", "resnet101", Arch::ResNet101Cifar, [50, 100, 200]),
    ("imagenet", "resnet18", Arch::ResNet18, [64, 128, 256]),
];

pub const SMOKE_DATA: &str = "synthetic:3x32x32:10:32:16";

/// ImageNet's smoke data: at 32x32 the ImageNet stem leaves 1x1 at the last stage, where batch
/// norm over a batch of 2 sees two values per channel and the run turns chaotic (its CE moved by
/// 0.3 between an AVX2 and an AVX-512 CPU); 64x64 leaves 2x2.
pub const SMOKE_IMAGENET: &str = "synthetic:3x64x64:10:32:16";

fn config(
    dataset: &str,
    arch: Arch,
    method: Method,
    lambda: f64,
    batch: usize,
    profile: Profile,
) -> crate::ExperimentConfig {
    let sgd = OptimizerConfig::Sgd { lr: 0.1 * batch as f64 / 256.0, momentum: 0.9, weight_decay: 5e-4 };
    match profile {
        Profile::Paper => {
            let epochs = if dataset == "imagenet" { 90 } else { 200 };
            let mut c = vision_config(dataset, arch, method, lambda, sgd, epochs, batch);
            c.data.augmentation = paper_augmentation(dataset);
            c
        }
        Profile::Cpu => {
            let mut c = vision_config(dataset, arch, method, lambda, sgd, 3, batch);
            c.data.train_limit = Some(5000);
            c.data.test_limit = Some(1000);
            c
        }
        Profile::Smoke => {
            // Batch sizes scaled by 1/25: the relation between them is what counts.
            let arch = if arch == Arch::ResNet101Cifar { Arch::ResNet18Cifar } else { arch };
            let data = if dataset == "imagenet" { SMOKE_IMAGENET } else { SMOKE_DATA };
            let adam = OptimizerConfig::Adam { lr: 1e-3, weight_decay: 0.0 };
            vision_config(data, arch, method, lambda, adam, 1, (batch / 25).max(2))
        }
    }
}

pub fn grid(profile: Profile) -> Grid {
    let mut cells = Vec::new();
    for (dataset, model, arch, sizes) in SETTINGS {
        let largest = sizes[2];
        let entries = [(Method::Baseline, 0.0, largest), (Method::Center, 0.05, largest)]
            .into_iter()
            .chain(sizes.iter().map(|&b| (Method::ItraC, 0.6, b)));
        for (method, lambda, batch) in entries {
            cells.push(Cell {
                dataset: dataset.to_owned(),
                model: model.to_owned(),
                method,
                batch_size: Some(batch),
                candidates: vec![config(dataset, arch, method, lambda, batch as usize, profile)],
            });
        }
    }
    let notes = vec![match profile {
        Profile::Paper => "Lambda as the paper states (Center 0.05, ITRA 0.6). Recipe: SGD momentum 0.9, \
            weight decay 5e-4, lr 0.1 x batch/256, cosine; 200 epochs (CIFAR-100, CIFAR-form ResNet-101), \
            90 epochs (ImageNet, torchvision ResNet-18 at 224x224). Augmentation: `crop-flip` on CIFAR-100 \
            (pad 4, random 32x32 crop, flip); `imagenet` on ImageNet (random-resized crop 224 and flip; \
            evaluation resizes to 256 and centre-crops 224), its folders decoded per batch."
            .to_owned(),
        Profile::Cpu => "cpu profile: 5,000 training and 1,000 test images (seeded draws, the test images \
            stratified by class), 3 epochs, no augmentation (ImageNet: resized to 256 and centre-cropped \
            to 224)."
            .to_owned(),
        Profile::Smoke => format!(
            "smoke profile: generated data ({SMOKE_DATA}; ImageNet {SMOKE_IMAGENET}); batch sizes divided by 25; ResNet-18 (CIFAR form) \
             stands in for ResNet-101; one seed."
        ),
    }];
    Grid { target: Target::Table(3), profile, cells, notes, max_seeds: (profile == Profile::Smoke).then_some(1) }
}
