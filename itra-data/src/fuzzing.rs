//! Entry points for fuzzing every binary parser, shared by the `cargo fuzz` targets
//! (`itra-data/fuzz/`) and the in-CI no-panic test (`tests/no_panic.rs`).
//!
//! Each target feeds arbitrary bytes to one parser and ignores the result: **a parser may
//! reject any input with a [`crate::DataError`], but must never panic, hang or reserve memory
//! that the input does not justify**. [`seeds`] gives valid files of each format to mutate.

use std::io::Write;
use std::path::Path;

use crate::augment::Augmentation;
use crate::imagenet::mat5;
use crate::sampler::{Stream, example_rng};
use crate::{cifar, idx, stl10, text};

/// A parser under test.
pub type Target = fn(&[u8]);

/// Every target, by name (the names of the `cargo fuzz` targets).
pub const TARGETS: &[(&str, Target)] = &[
    ("idx_images", idx_images),
    ("idx_labels", idx_labels),
    ("cifar10", cifar10),
    ("cifar100", cifar100),
    ("stl10_images", stl10_images),
    ("stl10_labels", stl10_labels),
    ("zhang_csv", zhang_csv),
    ("meta_mat", meta_mat),
    ("image_decode", image_decode),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|&(_, t)| t)
}

fn path() -> &'static Path {
    Path::new("<fuzz>")
}

pub fn idx_images(data: &[u8]) {
    if let Ok(images) = idx::parse_images(data, path()) {
        assert_eq!(images.pixels.len(), images.count * images.rows * images.cols);
    }
}

pub fn idx_labels(data: &[u8]) {
    let _ = idx::parse_labels(data, path());
}

fn cifar(data: &[u8], variant: cifar::Variant) {
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    if cifar::parse(data, path(), variant, &mut images, &mut labels).is_ok() {
        assert_eq!(images.len(), labels.len() * cifar::IMAGE_BYTES);
        assert!(labels.iter().all(|&l| (l as usize) < variant.num_classes()));
    }
}

pub fn cifar10(data: &[u8]) {
    cifar(data, cifar::Variant::Cifar10);
}

pub fn cifar100(data: &[u8]) {
    cifar(data, cifar::Variant::Cifar100);
}

pub fn stl10_images(data: &[u8]) {
    if let Ok(images) = stl10::parse_images(data, path()) {
        assert_eq!(images.len() % stl10::IMAGE_BYTES, 0);
    }
}

pub fn stl10_labels(data: &[u8]) {
    if let Ok(labels) = stl10::parse_labels(data, path()) {
        assert!(labels.iter().all(|&l| (l as usize) < stl10::NUM_CLASSES));
    }
}

/// The first byte picks the number of text columns (1 to 3); the rest is the CSV.
pub fn zhang_csv(data: &[u8]) {
    let Some((&columns, csv)) = data.split_first() else { return };
    let classes = ["a", "b", "c", "d", "e"];
    if let Ok(parsed) = text::parse(csv, path(), usize::from(columns % 3) + 1, &classes) {
        assert_eq!(parsed.texts.len(), parsed.labels.len());
        assert!(parsed.labels.iter().all(|&l| (l as usize) < classes.len()));
    }
}

pub fn meta_mat(data: &[u8]) {
    let _ = mat5::read_struct_array(data, "synsets");
}

/// Decodes an image, then runs every augmentation on it at a small output size.
pub fn image_decode(data: &[u8]) {
    let Ok((chw, shape)) = crate::folder::decode_bytes(data, path(), None) else { return };
    assert_eq!(chw.len(), shape.iter().product::<usize>());
    if shape[1] == 0 || shape[2] == 0 || chw.len() > 1 << 20 {
        return;
    }
    let augmentations = [
        Augmentation::CropFlip { padding: 2 },
        Augmentation::RandomResizedCrop { size: 8, scale: [0.08, 1.0], ratio: [0.75, 4.0 / 3.0] },
        Augmentation::ResizeCenterCrop { resize: 9, size: 8 },
    ];
    for (index, augmentation) in augmentations.iter().enumerate() {
        let mut rng = example_rng(data.len() as u64, Stream::AugmentFirst, 0, index);
        let (out, out_shape) = augmentation.apply(&chw, shape, &mut rng);
        assert_eq!(out_shape, augmentation.output_shape(shape));
        assert_eq!(out.len(), out_shape.iter().product::<usize>());
    }
}

/// Valid inputs of each target, `(target name, bytes)`: the starting corpus.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let gzip = |bytes: &[u8]| {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).expect("writing to memory");
        encoder.finish().expect("writing to memory")
    };
    let pixels: Vec<u8> = (0..24).map(|i| i * 10).collect();
    let idx_images = idx::encode_images(3, 4, &pixels);
    let idx_labels = idx::encode_labels(&[0, 9]);
    let cifar_image: [u8; cifar::IMAGE_BYTES] = std::array::from_fn(|i| i as u8);
    let cifar10 = [cifar::encode_record(&[3], &cifar_image), cifar::encode_record(&[9], &cifar_image)].concat();
    let cifar100 = cifar::encode_record(&[19, 99], &cifar_image);
    let stl_image: Vec<u8> = (0..stl10::IMAGE_BYTES).map(|i| (i % 256) as u8).collect();
    let csv = b"\x01\"1\",\"title\",\"body with \"\"quotes\"\"\\nand a newline\"\n\"5\",\"x\",\"\"\n".to_vec();
    let mat = |compress| {
        mat5::write_struct_array("synsets", "ILSVRC2012_ID", "WNID", &[(1.0, "n01"), (2.0, "n02")], compress)
    };
    let picture = image::RgbImage::from_fn(6, 5, |x, y| image::Rgb([x as u8 * 40, y as u8 * 50, 7]));
    let encode = |format| {
        let mut bytes = std::io::Cursor::new(Vec::new());
        picture.write_to(&mut bytes, format).expect("encoding to memory");
        bytes.into_inner()
    };
    vec![
        ("idx_images", gzip(&idx_images)),
        ("idx_images", idx_images),
        ("idx_labels", gzip(&idx_labels)),
        ("idx_labels", idx_labels),
        ("cifar10", cifar10),
        ("cifar100", cifar100),
        ("stl10_images", stl_image),
        ("stl10_labels", vec![1, 10, 5]),
        ("zhang_csv", csv),
        ("meta_mat", mat(false)),
        ("meta_mat", mat(true)),
        ("image_decode", encode(image::ImageFormat::Png)),
        ("image_decode", encode(image::ImageFormat::Jpeg)),
    ]
}
