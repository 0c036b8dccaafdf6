//! Input-pipeline throughput in images per second, on generated data:
//! - CIFAR-10-shaped: 3x32x32 bytes in memory, random crop (pad 4) + flip, normalised;
//! - ImageNet-shaped: 500x375 JPEGs on disk, decoded, random-resized-crop to 224 + flip,
//!   normalised (and the evaluation resize-256 + center-crop-224).
//!
//! `cargo bench -p itra-data --bench pipeline`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use itra_data::{Augmentation, ImageDataset, Loader, LoaderOptions, Normalization, PairedSampler, Pipeline, Stream};

const CIFAR_BATCH: usize = 256;
const IMAGENET_BATCH: usize = 32;

fn cifar_like(len: usize) -> ImageDataset {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let images = (0..len * 3 * 32 * 32)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    ImageDataset {
        images,
        labels: (0..len as u32).map(|i| i % 10).collect(),
        channels: 3,
        height: 32,
        width: 32,
        num_classes: 10,
        class_names: (0..10).map(|i| i.to_string()).collect(),
    }
}

fn cifar(c: &mut Criterion) {
    let data = cifar_like(4 * CIFAR_BATCH);
    let norm = Normalization::of(&data);
    let pipeline = Pipeline::new(data, Augmentation::CIFAR, norm, 0);
    let indices: Vec<usize> = (0..CIFAR_BATCH).collect();
    let mut group = c.benchmark_group("cifar10_crop_flip");
    group.throughput(Throughput::Elements(CIFAR_BATCH as u64));
    group.bench_function("one_thread", |b| {
        b.iter(|| black_box(pipeline.batch(black_box(&indices), Stream::AugmentFirst, 0).unwrap()))
    });
    group.bench_function("unaugmented", |b| {
        let plain = Pipeline { augmentation: Augmentation::None, ..pipeline.clone() };
        b.iter(|| black_box(plain.batch(black_box(&indices), Stream::AugmentFirst, 0).unwrap()))
    });
    // A whole paired epoch (S1 and S2) of 4 steps through the threaded loader.
    let sampler = PairedSampler::new(4 * CIFAR_BATCH, CIFAR_BATCH, 0);
    for workers in [1, 2] {
        group.throughput(Throughput::Elements((8 * CIFAR_BATCH) as u64));
        group.bench_with_input(BenchmarkId::new("loader_paired_epoch", workers), &workers, |b, &workers| {
            b.iter(|| {
                let loader = Loader::new(
                    pipeline.clone(),
                    sampler.epoch_requests(0, true),
                    0,
                    LoaderOptions { workers, prefetch: 4 },
                );
                for batch in loader {
                    black_box(batch.unwrap());
                }
            })
        });
    }
    group.finish();
}

fn imagenet(c: &mut Criterion) {
    let root = tempfile::tempdir().unwrap();
    for i in 0..IMAGENET_BATCH {
        let class = if i % 2 == 0 { "n01" } else { "n02" };
        let path = root.path().join(format!("train/{class}/{i}.JPEG"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        // Smooth gradients with texture, so the JPEGs are of a realistic size (~30-60 kB).
        let image = image::RgbImage::from_fn(500, 375, |x, y| {
            let texture = ((x * 7 + y * 13 + i as u32 * 31) % 37) as u8;
            image::Rgb([(x / 2) as u8 ^ texture, (y * 2 / 3) as u8, ((x + y) / 4) as u8 + texture])
        });
        image.save_with_format(&path, image::ImageFormat::Jpeg).unwrap();
    }
    let source = itra_data::folder_source(root.path(), itra_data::Split::Train).unwrap();
    let train = Pipeline::new(source.clone(), Augmentation::IMAGENET_TRAIN, Normalization::imagenet(), 0);
    let eval = Pipeline { augmentation: Augmentation::IMAGENET_EVAL, ..train.clone() };
    let indices: Vec<usize> = (0..IMAGENET_BATCH).collect();
    let mut group = c.benchmark_group("imagenet_jpeg_500x375");
    group.sample_size(10);
    group.throughput(Throughput::Elements(IMAGENET_BATCH as u64));
    group.bench_function("decode_only", |b| {
        let paths = match &source {
            itra_data::ImageSource::Folder(index) => index.paths.clone(),
            itra_data::ImageSource::Memory(_) => unreachable!(),
        };
        b.iter(|| {
            for path in &paths {
                black_box(itra_data::folder::decode(path, None).unwrap());
            }
        })
    });
    group.bench_function("random_resized_crop_224", |b| {
        b.iter(|| black_box(train.batch(black_box(&indices), Stream::AugmentFirst, 0).unwrap()))
    });
    group.bench_function("resize_256_center_crop_224", |b| {
        b.iter(|| black_box(eval.batch(black_box(&indices), Stream::AugmentFirst, 0).unwrap()))
    });
    let requests: Vec<_> =
        indices.chunks(8).map(|chunk| itra_data::BatchRequest::new(chunk.to_vec(), Stream::AugmentFirst)).collect();
    group.bench_function("random_resized_crop_224_loader_2_workers", |b| {
        b.iter(|| {
            let loader = Loader::new(train.clone(), requests.clone(), 0, LoaderOptions { workers: 2, prefetch: 4 });
            for batch in loader {
                black_box(batch.unwrap());
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(std::time::Duration::from_secs(4)).warm_up_time(std::time::Duration::from_secs(1));
    targets = cifar, imagenet
}
criterion_main!(benches);
