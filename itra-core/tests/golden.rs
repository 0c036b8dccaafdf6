//! Golden tests: every `*.json` fixture in `$ITRA_GOLDEN_DIR` (default `tests/golden/`), written
//! by the independent float64 NumPy reference `scripts/golden_losses.py`, checked against the
//! losses computed through Burn's autodiff: on burn-flex always, and on wgpu and libtorch when
//! this crate is built with their features (CI runs both, wgpu on Mesa's lavapipe).
//!
//! The fixture schema is a contract other tools write to; see `scripts/README.md`.

use std::path::PathBuf;

use burn::tensor::{Device, Int, Tensor, TensorData};
use itra_core::{
    Bandwidth, CenterInit, CenterLossConfig, LabelSmoothingCrossEntropyConfig, Matching, MmdLossConfig, Normalize,
    Precision,
};
use serde_json::Value;

/// `(rel, abs)` for the f32 tensor form. f32 carries 2^-24 = 6e-8 relative precision; the Gram
/// matrix, the kernel and the weighted sums each add rounding over O(m) terms, and an `MMD^2`
/// that is a small difference of kernel means loses digits to cancellation. Measured on these
/// fixtures: below 2e-6 relative everywhere except `itra_mmd2_below_eps` (an `MMD^2` of 7.4e-4
/// off by 2.7e-5 relative); identical batches land on `f32(sqrt(eps))`, 2.5e-9 below 1e-4, with
/// a zero gradient. So 1e-4 relative, with 1e-6 absolute for exact zeros (a missing class's
/// gradient).
const F32_TOLERANCE: (f64, f64) = (1e-4, 1e-6);

struct Check<'a> {
    fixture: &'a str,
    /// Which form of the loss is checked, for the failure message.
    form: &'static str,
    rel: f64,
    abs: f64,
    failures: Vec<String>,
}

impl Check<'_> {
    fn close(&mut self, what: &str, got: &[f64], want: &[f64]) {
        if got.len() != want.len() {
            self.failures.push(format!("{}: {what}: {} values, expected {}", self.fixture, got.len(), want.len()));
            return;
        }
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            // A NaN compares false, so it fails.
            let within = (g - w).abs() <= self.abs + self.rel * w.abs();
            if !within {
                self.failures.push(format!("{} {}: {what}[{i}] = {g:e}, expected {w:e}", self.fixture, self.form));
                return;
            }
        }
    }
}

fn matrix(value: &Value, key: &str) -> (Vec<f32>, [usize; 2]) {
    let rows = value[key].as_array().unwrap_or_else(|| panic!("fixture lacks `{key}`"));
    let width = rows.first().and_then(|r| r.as_array()).map_or(0, Vec::len);
    let flat: Vec<f32> = rows
        .iter()
        .flat_map(|r| r.as_array().expect("matrix rows are arrays").iter().map(|x| x.as_f64().unwrap() as f32))
        .collect();
    (flat, [rows.len(), width])
}

fn flat_f64(value: &Value) -> Vec<f64> {
    match value {
        Value::Array(items) => items.iter().flat_map(flat_f64).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap()],
        other => panic!("expected numbers, got {other}"),
    }
}

fn bools(value: &Value) -> Vec<bool> {
    value
        .as_array()
        .expect("a flag list is an array")
        .iter()
        .map(|flag| flag.as_bool().expect("flags are booleans"))
        .collect()
}

fn labels(value: &Value, key: &str) -> Vec<usize> {
    value[key]
        .as_array()
        .unwrap_or_else(|| panic!("fixture lacks `{key}`"))
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

fn tensor(value: &Value, key: &str, device: &Device) -> Tensor<2> {
    let (data, shape) = matrix(value, key);
    Tensor::from_data(TensorData::new(data, shape), device).require_grad()
}

fn label_tensor(labels: &[usize], device: &Device) -> Tensor<1, Int> {
    let data: Vec<i64> = labels.iter().map(|&k| k as i64).collect();
    let len = data.len();
    Tensor::from_data(TensorData::new(data, [len]), device)
}

fn host(tensor: Tensor<2>) -> Vec<f64> {
    tensor.into_data().iter::<f64>().collect()
}

fn mmd_config(params: &Value) -> MmdLossConfig {
    let bandwidth = match &params["bandwidth"] {
        Value::Object(map) => Bandwidth::Fixed(map["fixed"].as_f64().expect("fixed bandwidth is a number")),
        _ => Bandwidth::Median,
    };
    let normalize = match params["normalize"].as_str() {
        Some("all_classes") => Normalize::AllClasses,
        _ => Normalize::Present,
    };
    // `params.matching` is "mmd" (the default, absent in older fixtures) or "mmd2".
    let matching = params["matching"].as_str().map_or(Matching::Mmd, |m| m.parse().expect("a known matching term"));
    MmdLossConfig::new()
        .with_bandwidth(bandwidth)
        .with_eps(params["eps"].as_f64().unwrap_or(1e-8))
        .with_normalize(normalize)
        .with_matching(matching)
}

#[allow(clippy::too_many_arguments)]
fn check_mmd(
    fixture: &Value,
    loss: &str,
    params: &Value,
    expected: &Value,
    fused: bool,
    precision: Precision,
    device: &Device,
    check: &mut Check<'_>,
) {
    let h1 = tensor(fixture, "h1", device);
    let h2 = tensor(fixture, "h2", device);
    let mmd = mmd_config(params).with_fused(fused).with_precision(precision).init();
    let output = if loss == "itra_c" {
        let num_classes = params["num_classes"].as_u64().expect("itra_c needs num_classes") as usize;
        let y1 = label_tensor(&labels(fixture, "y1"), device);
        let y2 = label_tensor(&labels(fixture, "y2"), device);
        mmd.forward_class_conditional(h1.clone(), y1, h2.clone(), y2, num_classes)
    } else {
        mmd.forward(h1.clone(), h2.clone())
    };
    check.close("sigma", &[output.sigma], &[expected["sigma"].as_f64().unwrap()]);
    let value: f64 = output.value.clone().into_scalar();
    check.close("value", &[value], &[expected["value"].as_f64().unwrap()]);
    let grads = output.value.backward();
    let zeros1 = h1.zeros_like();
    let zeros2 = h2.zeros_like();
    // A loss with no path to an input has a zero gradient, which Burn reports as absent.
    let g1 = h1.grad(&grads).map_or_else(|| host(zeros1.detach()), host);
    let g2 = h2.grad(&grads).map_or_else(|| host(zeros2.detach()), host);
    check.close("grad_h1", &g1, &flat_f64(&expected["grad_h1"]));
    check.close("grad_h2", &g2, &flat_f64(&expected["grad_h2"]));
}

/// One form of the MMD losses a backend runs: its name, whether the fused operation is asked for
/// (it runs on flex and falls back to the tensor form elsewhere), the precision, and whether the
/// float32 tolerance applies.
#[derive(Clone, Copy)]
struct Form {
    name: &'static str,
    fused: bool,
    precision: Precision,
    f32_tolerance: bool,
}

fn run_fixture(fixture: &Value, device: &Device, forms: &[Form], check: &mut Check<'_>) {
    let device = device.clone().autodiff();
    let params = &fixture["params"];
    let expected = &fixture["expected"];
    let loss = fixture["loss"].as_str().expect("fixture has a `loss`");
    match loss {
        "mmd" | "itra" | "itra_c" => {
            let (rel, abs) = (check.rel, check.abs);
            for form in forms {
                check.form = form.name;
                if form.f32_tolerance {
                    (check.rel, check.abs) = F32_TOLERANCE;
                }
                check_mmd(fixture, loss, params, expected, form.fused, form.precision, &device, check);
                (check.rel, check.abs) = (rel, abs);
            }
            check.form = "";
        }
        "center" => {
            let h1 = tensor(fixture, "h1", &device);
            let y1 = labels(fixture, "y1");
            let (centers, [num_classes, feat_dim]) = matrix(fixture, "centers");
            // Absent `initialized`: every class is, and the given centres are used as they are.
            let initialized = fixture.get("initialized").map_or_else(|| vec![true; num_classes], bools);
            let init = if initialized.iter().all(|&flag| flag) { CenterInit::Zero } else { CenterInit::ClassMean };
            let center = CenterLossConfig::new(num_classes, feat_dim)
                .with_alpha(params["alpha"].as_f64().unwrap_or(0.5))
                .with_halve(params["halve"].as_bool().unwrap_or(true))
                .with_init(init)
                .init(&device);
            center
                .restore(Tensor::from_data(TensorData::new(centers, [num_classes, feat_dim]), &device), initialized)
                .expect("fixture centres fit the loss");
            center.init_classes(h1.clone(), &y1).expect("valid class initialisation");
            let value = center.forward(h1.clone(), label_tensor(&y1, &device));
            check.close("value", &[value.clone().into_scalar()], &[expected["value"].as_f64().unwrap()]);
            let grads = value.backward();
            check.close(
                "grad_h1",
                &host(h1.grad(&grads).expect("center loss reaches h1")),
                &flat_f64(&expected["grad_h1"]),
            );
            center.update_centers(h1, &y1).expect("valid centre update");
            check.close("centers_after", &host(center.centers()), &flat_f64(&expected["centers_after"]));
            let want = expected.get("initialized_after").map_or_else(|| vec![true; num_classes], bools);
            if center.initialized() != want {
                check.failures.push(format!(
                    "{}: initialized_after = {:?}, expected {want:?}",
                    check.fixture,
                    center.initialized()
                ));
            }
        }
        "lsr" => {
            let logits = tensor(fixture, "logits", &device);
            let targets = labels(fixture, "targets");
            let lsr = LabelSmoothingCrossEntropyConfig::new(params["num_classes"].as_u64().unwrap() as usize)
                .with_smoothing(params["smoothing"].as_f64().unwrap_or(0.0))
                .init();
            let value = lsr.forward(logits.clone(), label_tensor(&targets, &device));
            check.close("value", &[value.clone().into_scalar()], &[expected["value"].as_f64().unwrap()]);
            let grads = value.backward();
            check.close(
                "grad_logits",
                &host(logits.grad(&grads).expect("lsr reaches the logits")),
                &flat_f64(&expected["grad_logits"]),
            );
        }
        other => check.failures.push(format!("{}: unknown loss `{other}`", check.fixture)),
    }
}

/// Checks every fixture on `device` in each of `forms`; `backend` names it in the messages.
fn check_fixtures_on(device: &Device, backend: &str, forms: &[Form]) {
    check_fixtures_named(device, backend, forms, None);
}

/// [`check_fixtures_on`] for the fixtures named in `only` (every one, if `None`); a name that
/// matches no fixture fails the test.
fn check_fixtures_named(device: &Device, backend: &str, forms: &[Form], only: Option<&[&str]>) {
    let dir = std::env::var_os("ITRA_GOLDEN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden"));
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("cannot read golden directory {}: {err}", dir.display()))
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no golden fixtures (*.json) in {}", dir.display());

    if let Some(only) = only {
        let stems: Vec<String> =
            paths.iter().filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned())).collect();
        let unknown: Vec<&&str> = only.iter().filter(|name| !stems.iter().any(|s| s == *name)).collect();
        assert!(unknown.is_empty(), "no golden fixture named {unknown:?} in {}", dir.display());
        paths.retain(|p| p.file_stem().is_some_and(|s| only.iter().any(|name| s == *name)));
    }

    let mut failures = Vec::new();
    for path in &paths {
        let text = std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        let fixture: Value = serde_json::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        let name = fixture["name"].as_str().unwrap_or("unnamed").to_owned();
        let tolerance = &fixture["tolerance"];
        let mut check = Check {
            fixture: &name,
            form: "",
            rel: tolerance["rel"].as_f64().unwrap_or(1e-4),
            abs: tolerance["abs"].as_f64().unwrap_or(1e-5),
            failures: Vec::new(),
        };
        let started = std::time::Instant::now();
        run_fixture(&fixture, device, forms, &mut check);
        println!("{backend} {name}: {:.2} s", started.elapsed().as_secs_f64());
        failures.extend(check.failures);
    }
    println!("checked {} golden fixtures from {} on {backend}", paths.len(), dir.display());
    assert!(failures.is_empty(), "{backend}: {} golden mismatches:\n{}", failures.len(), failures.join("\n"));
}

/// flex: the fused CPU operation (its default) and the tensor form, in f64 and in the f32 that
/// devices without f64 (wgpu) run.
#[test]
fn golden_fixtures_match_the_numpy_reference() {
    check_fixtures_on(
        &Device::flex(),
        "flex",
        &[
            Form { name: "fused", fused: true, precision: Precision::Auto, f32_tolerance: false },
            Form { name: "tensor form", fused: false, precision: Precision::F64, f32_tolerance: false },
            Form { name: "tensor form in f32", fused: false, precision: Precision::F32, f32_tolerance: true },
        ],
    );
}

/// wgpu (in CI: Mesa's lavapipe, a software Vulkan device). Whether the loss runs in f64 is the
/// device's to say through `compute_dtype`'s probe (lavapipe reports f64 but computes its `exp`
/// wrongly, so it gets f32; WGSL on Metal or WebGPU has no f64). Asking for the fused operation
/// falls back to the tensor form in that precision; where that is f64, the forced f32 form is
/// checked too.
#[cfg(feature = "wgpu")]
fn check_fixtures_on_wgpu(only: Option<&[&str]>) {
    use burn::tensor::{DeviceKind, FloatDType};
    let device = Device::wgpu(DeviceKind::DefaultDevice);
    let has_f64 = itra_core::compute_dtype(&device) == FloatDType::F64;
    println!(
        "wgpu default device: reports f64 {}, computes the loss in {}",
        device.supports_dtype(FloatDType::F64),
        if has_f64 { "f64" } else { "f32" }
    );
    let mut forms = vec![Form {
        name: "fused asked (falls back to the tensor form)",
        fused: true,
        precision: Precision::Auto,
        f32_tolerance: !has_f64,
    }];
    if has_f64 {
        forms.push(Form { name: "tensor form in f32", fused: false, precision: Precision::F32, f32_tolerance: true });
    }
    check_fixtures_named(&device, "wgpu", &forms, only);
}

/// The fixtures CI checks on wgpu: every loss and every branch the fixtures exercise (the
/// median and a fixed bandwidth, the floor with its zero gradient, identical batches, MMD^2,
/// per-class normalisation over present and all classes, a class missing from one batch, Center
/// loss with and without its factor 1/2 and with classes initialised from their means, label
/// smoothing), chosen to share few feature shapes. On lavapipe each new shape costs its shader
/// compilations: measured (2026-12-03, 2 cores, cold shader cache) all 35 fixtures took 431 s, most
/// of it the first fixture of each shape (20-52 s), and 72 s with the shader cache warm.
/// [`all_golden_fixtures_on_wgpu`] checks all of them.
#[cfg(feature = "wgpu")]
const WGPU_CI_FIXTURES: &[&str] = &[
    "mmd_basic",
    "itra_identical_batches",
    "itra_eps_floor_active",
    "itra_eps_above_floor",
    "itra_mmd2_below_eps",
    "itra_c_all_classes_norm",
    "itra_c_fixed_bandwidth",
    "itra_c_mmd2_all_classes_norm",
    "itra_c_class_missing",
    "itra_c_mmd2_class_missing",
    "center_basic",
    "center_no_half",
    "center_class_mean_init",
    "lsr_smoothing_0_1",
    "lsr_large_logits",
];

#[cfg(feature = "wgpu")]
#[test]
fn golden_fixtures_on_wgpu() {
    check_fixtures_on_wgpu(Some(WGPU_CI_FIXTURES));
}

#[cfg(feature = "wgpu")]
#[test]
#[ignore = "all 35 fixtures on lavapipe take about 7 minutes; CI checks WGPU_CI_FIXTURES (`-- --ignored` runs this)"]
fn all_golden_fixtures_on_wgpu() {
    check_fixtures_on_wgpu(None);
}

/// libtorch on the CPU: it has f64, so the tensor form runs in f64 at the fixtures' tolerance;
/// asking for the fused operation falls back to it.
#[cfg(feature = "tch")]
#[test]
fn golden_fixtures_on_tch_cpu() {
    use burn::tensor::FloatDType;
    #[allow(deprecated)]
    let device = Device::libtorch();
    assert_eq!(itra_core::compute_dtype(&device), FloatDType::F64, "libtorch reports no f64");
    check_fixtures_on(
        &device,
        "tch-cpu",
        &[
            Form { name: "fused asked (falls back)", fused: true, precision: Precision::Auto, f32_tolerance: false },
            Form { name: "tensor form (auto: f64)", fused: false, precision: Precision::Auto, f32_tolerance: false },
            Form { name: "tensor form in f32", fused: false, precision: Precision::F32, f32_tolerance: true },
        ],
    );
}
