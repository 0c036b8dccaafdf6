//! An ImageNet-layout folder trains with memory bounded by the batch and the prefetch depth, not
//! by the dataset: `itra train` on a generated `<data>/imagenet/{train,val}/<wnid>/*.JPEG` tree
//! whose eager decoding (at 224x224, as `itra_data::load_image_dataset` does) would take ~900 MB.

use std::path::Path;
use std::process::Command;

const CLASSES: usize = 10;
const TRAIN_PER_CLASS: usize = 600;
const VAL_PER_CLASS: usize = 20;

/// Writes `per_class` small JPEGs (160x120, ImageNet's landscape shape) per class under `dir`.
fn write_split(dir: &Path, per_class: usize) {
    for class in 0..CLASSES {
        let class_dir = dir.join(format!("n{:08}", 1_440_764 + class));
        std::fs::create_dir_all(&class_dir).unwrap();
        for i in 0..per_class {
            let image = image::RgbImage::from_fn(160, 120, |x, y| {
                image::Rgb([(x as usize + i) as u8, (y as usize * 2 + class * 25) as u8, (class * 20) as u8])
            });
            image.save(class_dir.join(format!("img_{i:05}.JPEG"))).unwrap();
        }
    }
}

#[test]
fn an_imagenet_layout_folder_streams_with_bounded_memory() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    write_split(&data.join("imagenet/train"), TRAIN_PER_CLASS);
    write_split(&data.join("imagenet/val"), VAL_PER_CLASS);
    let eager_mib = (CLASSES * TRAIN_PER_CLASS * 3 * 224 * 224) as f64 / (1 << 20) as f64;

    let runs = root.path().join("runs");
    let output = Command::new(env!("CARGO_BIN_EXE_itra"))
        .arg("--data-dir")
        .arg(&data)
        .args(["train", "--dataset", "imagenet", "--model", "mobilenetv2", "--augmentation", "imagenet"])
        .args(["--train-limit", "24", "--test-limit", "20", "--batch-size", "4", "--epochs", "1", "--quiet"])
        .arg("--runs-dir")
        .arg(&runs)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let run_dir = std::fs::read_dir(&runs).unwrap().next().unwrap().unwrap().path();
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("result.json")).unwrap()).unwrap();
    let peak = result["peak_rss_mib"].as_f64().expect("Linux reports the peak RSS");
    assert!(
        peak < eager_mib / 2.0,
        "peak RSS {peak:.0} MiB; decoding the training split eagerly would take {eager_mib:.0} MiB"
    );
    // The augmentation is recorded, and evaluation scored the stratified 20 of 200 val images.
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["config"]["data"]["augmentation"], "imagenet");
    let accuracy = result["epochs"][0]["test_accuracy"].as_f64().unwrap();
    assert_eq!((accuracy * 20.0 / 100.0).round() * 5.0, accuracy, "a share of 20 images: {accuracy}");
}
