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

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = pool, norm, norm_pool
}
criterion_main!(benches);
