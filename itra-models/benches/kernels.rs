//! Cost of this crate's memory-bound CPU kernels at the small CNN's shapes (batch 128): max
//! pooling 2x2, batch norm + ReLU in training mode, and the two fused, forward and backward, on
//! `[128, 32, 28, 28]` (after the first convolution) and `[128, 64, 14, 14]` (after the second).
//! Each reads and writes a few bytes per element, so the figure to compare is the bytes moved per
//! second against the machine's memory bandwidth.
//!
//! `MIMALLOC_PURGE_DELAY=-1 cargo bench -p itra-models --bench kernels` runs everything (about a
//! minute) with the allocator `itra` uses, set as `itra` sets it: freed buffers are kept, so the
//! figures leave out the kernel zeroing fresh pages, as a training step does after its first.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use itra_models::kernels::conv::{ConvGeometry, conv2d_forward, conv2d_weight_backward, conv2d_x_backward};
use itra_models::kernels::norm::{NormGeometry, batch_norm_train_backward_in_place, batch_norm_train_forward};
use itra_models::kernels::norm_pool::{self, NormPoolGeometry};
use itra_models::kernels::pool::{PoolGeometry, max_pool2d_backward, max_pool2d_forward};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `[batch, channels, side, side]` of the small CNN's two pooled activations.
const SHAPES: [[usize; 4]; 2] = [[128, 32, 28, 28], [128, 64, 14, 14]];

/// Deterministic values in `[-1, 1)` (a linear congruential stream), so the bench needs no RNG.
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect()
}

fn label(shape: [usize; 4]) -> String {
    format!("{}x{}x{}x{}", shape[0], shape[1], shape[2], shape[3])
}

fn pool(c: &mut Criterion) {
    let mut group = c.benchmark_group("max_pool_2x2");
    for shape in SHAPES {
        let [batch, channels, h, w] = shape;
        let g = PoolGeometry { planes: batch * channels, h, w, kernel: [2, 2], stride: [2, 2], padding: [0, 0] };
        let x = values(batch * channels * h * w, 1);
        let grad = values(batch * channels * g.out_h() * g.out_w(), 2);
        // Forward: reads x, writes a quarter of it. Backward: reads x and the gradient, writes dx.
        group.throughput(Throughput::Bytes((4 * x.len() * 5 / 4) as u64));
        group.bench_with_input(BenchmarkId::new("forward", label(shape)), &x, |b, x| {
            b.iter(|| black_box(max_pool2d_forward(&g, x)))
        });
        group.throughput(Throughput::Bytes((4 * x.len() * 9 / 4) as u64));
        group.bench_with_input(BenchmarkId::new("backward", label(shape)), &x, |b, x| {
            b.iter(|| black_box(max_pool2d_backward(&g, x, &grad)))
        });
    }
    group.finish();
}

fn norm(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_norm_relu");
    for shape in SHAPES {
        let [batch, channels, h, w] = shape;
        let g = NormGeometry { batch, channels, plane: h * w };
        let x = values(batch * channels * h * w, 3);
        let grad = values(x.len(), 4);
        let (gamma, beta) = (vec![1.0f32; channels], vec![0.0f32; channels]);
        // Forward: reads x twice (statistics) and once more to write the output.
        group.throughput(Throughput::Bytes((4 * x.len() * 4) as u64));
        group.bench_with_input(BenchmarkId::new("forward", label(shape)), &x, |b, x| {
            b.iter(|| black_box(batch_norm_train_forward(&g, x, &gamma, &beta, 1e-5, true)))
        });
        let (out, mean, var) = batch_norm_train_forward(&g, &x, &gamma, &beta, 1e-5, true);
        // Backward, in place over a copy of x as training runs it: reads x, the output and the
        // gradient twice, writes dx.
        group.throughput(Throughput::Bytes((4 * x.len() * 7) as u64));
        group.bench_with_input(BenchmarkId::new("backward", label(shape)), &x, |b, x| {
            b.iter_batched_ref(
                || x.clone(),
                |x_dx| {
                    black_box(batch_norm_train_backward_in_place(
                        &g, x_dx, &out, &gamma, &mean, &var, 1e-5, true, &grad,
                    ))
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

/// Batch norm + ReLU + the 2x2 pool as the small CNN runs them: one fused kernel.
fn norm_pool(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_norm_relu_pool");
    for shape in SHAPES {
        let [batch, channels, h, w] = shape;
        let g = NormPoolGeometry { batch, channels, h, w };
        let x = values(batch * channels * h * w, 5);
        let grad = values(batch * channels * g.out_h() * g.out_w(), 6);
        let (gamma, beta) = (vec![1.0f32; channels], vec![0.0f32; channels]);
        // Forward: reads x twice (statistics), once more to write the pooled quarter.
        group.throughput(Throughput::Bytes((4 * x.len() * 13 / 4) as u64));
        group.bench_with_input(BenchmarkId::new("forward", label(shape)), &x, |b, x| {
            b.iter(|| black_box(norm_pool::forward(&g, x, &gamma, &beta, 1e-5)))
        });
        let (_, mean, var, scale, offset) = norm_pool::forward(&g, &x, &gamma, &beta, 1e-5);
        // Backward, in place over a copy of x as training runs it: reads x and the pooled
        // gradient twice, writes dx.
        group.throughput(Throughput::Bytes((4 * x.len() * 7 / 2) as u64));
        group.bench_with_input(BenchmarkId::new("backward", label(shape)), &x, |b, x| {
            b.iter_batched_ref(
                || x.clone(),
                |x_dx| {
                    black_box(norm_pool::backward_in_place(
                        &g,
                        x_dx,
                        &gamma,
                        &mean,
                        &var,
                        (&scale, &offset),
                        1e-5,
                        &grad,
                    ))
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

/// 3x3 "same" convolutions at batch 128: the small CNN's two, `1 -> 32` on 28x28 and `32 -> 64` on
/// 14x14, and the CIFAR ResNets' first, `3 -> 64` on 32x32. Throughput in multiply-adds.
fn conv(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv3x3");
    for (c_in, side, c_out) in [(1, 28, 32), (32, 14, 64), (3, 32, 64)] {
        let g = ConvGeometry {
            batch: 128,
            c_in,
            h: side,
            w: side,
            c_out,
            kh: 3,
            kw: 3,
            stride: [1, 1],
            padding: [1, 1],
            dilation: [1, 1],
        };
        let x = values(g.batch * c_in * side * side, 1);
        let weight = values(c_out * c_in * 9, 2);
        let grad = values(g.batch * c_out * side * side, 3);
        let id = format!("{c_in}to{c_out}x{side}x{side}");
        group.throughput(Throughput::Elements((g.batch * c_out * side * side * c_in * 9) as u64));
        group.bench_function(BenchmarkId::new("forward", &id), |b| {
            b.iter(|| black_box(conv2d_forward(&g, &x, &weight)))
        });
        group.bench_function(BenchmarkId::new("x_backward", &id), |b| {
            b.iter(|| black_box(conv2d_x_backward(&g, &weight, &grad)))
        });
        group.bench_function(BenchmarkId::new("weight_backward", &id), |b| {
            b.iter(|| black_box(conv2d_weight_backward(&g, &x, &grad)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = pool, norm, norm_pool, conv
}
criterion_main!(benches);
