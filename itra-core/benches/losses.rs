//! Cost of the matching losses on `burn-flex`, forward and backward, at the shapes of the
//! experiments: ITRA's MMD and ITRA-c at batch 64/128/256 (each of `S1` and `S2`), feature width
//! 64/512 and, for ITRA-c, K = 10/100 classes; and the median bandwidth (host selection over the
//! pooled squared distances) next to the MMD with a fixed bandwidth, to show how much of a step
//! the median heuristic takes. The MMD and ITRA-c groups measure both forms of the loss on
//! flex: `fused` (the default: one fused CPU operation) and `tensor` (Burn tensor operations).
//!
//! `cargo bench -p itra-core --bench losses` runs everything (about a minute);
//! `cargo bench -p itra-core --bench losses -- itra_c` runs one group. Results are in
//! `docs/benchmarks.md`.

use std::hint::black_box;
use std::time::Duration;

use burn::tensor::{Device, Tensor, TensorData};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use itra_core::{Bandwidth, MmdLoss, MmdLossConfig, median_of_pairwise};

const BATCHES: [usize; 3] = [64, 128, 256];
const WIDTHS: [usize; 2] = [64, 512];
const CLASS_COUNTS: [usize; 2] = [10, 100];

fn device() -> Device {
    Device::flex().autodiff()
}

/// A deterministic stream of numbers in `[0, 1)` (xorshift64*), so the bench needs no RNG crate.
struct Uniform(u64);

impl Uniform {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Non-negative features, as after a ReLU: `[rows, width]` on the host.
fn features(rows: usize, width: usize, seed: u64) -> TensorData {
    let mut uniform = Uniform(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let values: Vec<f32> = (0..rows * width).map(|_| uniform.next() as f32).collect();
    TensorData::new(values, [rows, width])
}

/// Balanced labels in a shuffled order, as a random mini-batch has them.
fn labels(rows: usize, num_classes: usize, seed: u64) -> Vec<usize> {
    let mut uniform = Uniform(seed | 1);
    let mut labels: Vec<usize> = (0..rows).map(|i| i % num_classes).collect();
    for i in (1..rows).rev() {
        labels.swap(i, (uniform.next() * (i + 1) as f64) as usize);
    }
    labels
}

/// Fresh leaf tensors each iteration (as each step has), forward, backward, and the gradient of
/// both inputs read, so nothing is left lazily unevaluated.
fn forward_backward(loss: &MmdLoss, h1: &TensorData, h2: &TensorData, classes: Option<(&[usize], &[usize], usize)>) {
    let device = device();
    let h1 = Tensor::<2>::from_data(h1.clone(), &device).require_grad();
    let h2 = Tensor::<2>::from_data(h2.clone(), &device).require_grad();
    let output = match classes {
        None => loss.forward(h1.clone(), h2.clone()),
        Some((y1, y2, k)) => {
            loss.try_forward_class_conditional_host(h1.clone(), y1, h2.clone(), y2, k).expect("valid benchmark input")
        }
    };
    let grads = output.value.backward();
    black_box(h1.grad(&grads).map(|g| g.into_data()));
    black_box(h2.grad(&grads).map(|g| g.into_data()));
}

/// The two forms of the loss on flex.
const FORMS: [(&str, bool); 2] = [("fused", true), ("tensor", false)];

fn mmd(c: &mut Criterion) {
    let mut group = c.benchmark_group("mmd_fwd_bwd");
    for (form, fused) in FORMS {
        let loss = MmdLossConfig::new().with_fused(fused).init();
        for width in WIDTHS {
            for batch in BATCHES {
                let (h1, h2) = (features(batch, width, 1), features(batch, width, 2));
                group.bench_function(BenchmarkId::new(format!("{form}/w{width}"), batch), |b| {
                    b.iter(|| forward_backward(&loss, &h1, &h2, None))
                });
            }
        }
    }
    group.finish();
}

fn itra_c(c: &mut Criterion) {
    let mut group = c.benchmark_group("itra_c_fwd_bwd");
    for (form, fused) in FORMS {
        let loss = MmdLossConfig::new().with_fused(fused).init();
        for num_classes in CLASS_COUNTS {
            for width in WIDTHS {
                for batch in BATCHES {
                    let (h1, h2) = (features(batch, width, 1), features(batch, width, 2));
                    let (y1, y2) = (labels(batch, num_classes, 3), labels(batch, num_classes, 4));
                    group.bench_function(BenchmarkId::new(format!("{form}/k{num_classes}/w{width}"), batch), |b| {
                        b.iter(|| forward_backward(&loss, &h1, &h2, Some((&y1, &y2, num_classes))))
                    });
                }
            }
        }
    }
    group.finish();
}

/// The median alone (the host selection over the `2m x 2m` squared distances) and the MMD with a
/// fixed bandwidth (fused form), which skips the selection. Compare with
/// `mmd_fwd_bwd/fused/w512`, which pays for it.
fn bandwidth(c: &mut Criterion) {
    let fixed = MmdLossConfig::new().with_bandwidth(Bandwidth::Fixed(1.0)).init();
    let mut group = c.benchmark_group("bandwidth");
    for batch in BATCHES {
        let n = 2 * batch;
        let mut uniform = Uniform(5);
        let mut matrix = vec![0.0; n * n];
        for i in 0..n {
            for j in i + 1..n {
                let d = uniform.next();
                matrix[i * n + j] = d;
                matrix[j * n + i] = d;
            }
        }
        group.bench_function(BenchmarkId::new("median_select", batch), |b| {
            b.iter(|| black_box(median_of_pairwise(black_box(&matrix), n)))
        });
        let (h1, h2) = (features(batch, 512, 1), features(batch, 512, 2));
        group.bench_function(BenchmarkId::new("mmd_fixed_fwd_bwd/w512", batch), |b| {
            b.iter(|| forward_backward(&fixed, &h1, &h2, None))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = mmd, itra_c, bandwidth
}
criterion_main!(benches);
