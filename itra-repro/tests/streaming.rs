//! An ImageNet-layout folder trains with memory bounded by the batch and the prefetch depth, not
//! by the dataset: `itra train` on generated `<data>/imagenet/{train,val}/<wnid>/*.JPEG` trees,
//! the larger of which would take ~860 MiB decoded eagerly at 224x224 (as
//! `itra_data::load_image_dataset` does).

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

/// Generates an ImageNet-layout data directory with `train_per_class` training images per
/// class, trains one epoch of a 24-image subset on it, and returns the run's peak RSS (MiB) and
/// its directory.
fn peak_rss_of_a_run(root: &Path, train_per_class: usize) -> (f64, std::path::PathBuf) {
    let data = root.join("data");
    write_split(&data.join("imagenet/train"), train_per_class);
    write_split(&data.join("imagenet/val"), VAL_PER_CLASS);
    let runs = root.join("runs");
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
    (result["peak_rss_mib"].as_f64().expect("Linux reports the peak RSS"), run_dir)
}

#[test]
fn an_imagenet_layout_folder_streams_with_bounded_memory() {
    // The same run on a folder of 200 and of 6,000 training images: streamed, the peak RSS is
    // the model's and the batches', whatever the folder holds; decoded eagerly, the larger
    // folder would add ~830 MiB.
    let small = tempfile::tempdir().unwrap();
    let (small_peak, _) = peak_rss_of_a_run(small.path(), 20);
    let large = tempfile::tempdir().unwrap();
    let (large_peak, run_dir) = peak_rss_of_a_run(large.path(), TRAIN_PER_CLASS);
    let eager_mib = (CLASSES * TRAIN_PER_CLASS * 3 * 224 * 224) as f64 / (1 << 20) as f64;
    assert!(
        large_peak - small_peak < eager_mib / 4.0,
        "peak RSS {small_peak:.0} MiB with 200 images, {large_peak:.0} MiB with {}; decoding the larger split \
         eagerly would take {eager_mib:.0} MiB",
        CLASSES * TRAIN_PER_CLASS
    );
    // The augmentation is recorded, and evaluation scored the stratified 20 of 200 val images.
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["config"]["data"]["augmentation"], "imagenet");
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("result.json")).unwrap()).unwrap();
    let accuracy = result["epochs"][0]["test_accuracy"].as_f64().unwrap();
    assert_eq!((accuracy * 20.0 / 100.0).round() * 5.0, accuracy, "a share of 20 images: {accuracy}");
}
