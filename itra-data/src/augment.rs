//! Training-time augmentation on raw CHW bytes, as torchvision composes it.
//!
//! Each transform takes one image and a generator that the caller derives from
//! `(seed, stream, epoch, index)` ([`crate::sampler::example_rng`]), so **an example's view is a
//! pure function of those four numbers**, whichever thread or batch computes it.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// How each image is transformed before normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Augmentation {
    /// The image as stored.
    None,
    /// `RandomCrop(size, padding)` with zero padding, then `RandomHorizontalFlip()`: the
    /// standard CIFAR and STL-10 recipe, with `padding = 4`.
    CropFlip { padding: usize },
    /// `RandomResizedCrop(size, scale, ratio)` (bilinear, antialiased when shrinking) then
    /// `RandomHorizontalFlip()`: the ImageNet training recipe.
    RandomResizedCrop { size: usize, scale: [f64; 2], ratio: [f64; 2] },
    /// `Resize(resize)` of the shorter side then `CenterCrop(size)`: the ImageNet evaluation
    /// recipe (`resize = 256, size = 224`). Deterministic.
    ResizeCenterCrop { resize: usize, size: usize },
}

impl Augmentation {
    /// Random 32x32 crops of the image zero-padded by 4 pixels, and horizontal flips.
    pub const CIFAR: Augmentation = Augmentation::CropFlip { padding: 4 };
    /// Random-resized crops to 224 (scale 0.08-1, aspect ratio 3/4-4/3) and horizontal flips.
    pub const IMAGENET_TRAIN: Augmentation =
        Augmentation::RandomResizedCrop { size: 224, scale: [0.08, 1.0], ratio: [3.0 / 4.0, 4.0 / 3.0] };
    /// The shorter side resized to 256, then the central 224x224.
    pub const IMAGENET_EVAL: Augmentation = Augmentation::ResizeCenterCrop { resize: 256, size: 224 };

    /// The shape this produces from an input of shape `input`.
    pub fn output_shape(&self, input: [usize; 3]) -> [usize; 3] {
        match *self {
            Augmentation::None | Augmentation::CropFlip { .. } => input,
            Augmentation::RandomResizedCrop { size, .. } | Augmentation::ResizeCenterCrop { size, .. } => {
                [input[0], size, size]
            }
        }
    }

    /// Whether every output has the same shape whatever the input's height and width.
    pub fn fixes_size(&self) -> bool {
        matches!(self, Augmentation::RandomResizedCrop { .. } | Augmentation::ResizeCenterCrop { .. })
    }

    /// Transforms the CHW image `chw` of shape `shape`, drawing from `rng`. Returns the CHW
    /// bytes and their shape.
    pub fn apply(&self, chw: &[u8], shape: [usize; 3], rng: &mut impl Rng) -> (Vec<u8>, [usize; 3]) {
        let [channels, height, width] = shape;
        debug_assert_eq!(chw.len(), channels * height * width);
        match *self {
            Augmentation::None => (chw.to_vec(), shape),
            Augmentation::CropFlip { padding } => {
                let top = rng.random_range(0..=2 * padding);
                let left = rng.random_range(0..=2 * padding);
                let flip = rng.random_bool(0.5);
                (crop_flip(chw, shape, padding, top, left, flip), shape)
            }
            Augmentation::RandomResizedCrop { size, scale, ratio } => {
                let (top, left, crop_height, crop_width) = resized_crop_box(height, width, scale, ratio, rng);
                let flip = rng.random_bool(0.5);
                let mut out = crop_resize(chw, shape, [top, left, crop_height, crop_width], [size, size]);
                if flip {
                    flip_rows(&mut out, size);
                }
                (out, [channels, size, size])
            }
            Augmentation::ResizeCenterCrop { resize, size } => {
                // A resize below the crop size would need padding; it is raised to the crop size.
                let (new_height, new_width) = shorter_side_to(height, width, resize.max(size));
                // The crop box in resized coordinates, mapped back so that one resample does both.
                let top = round_half_even(new_height.saturating_sub(size) as f64 / 2.0);
                let left = round_half_even(new_width.saturating_sub(size) as f64 / 2.0);
                let window = [top, left, size, size];
                let out = resample_window(chw, shape, [0, 0, height, width], [new_height, new_width], window);
                (out, [channels, size, size])
            }
        }
    }
}

/// `RandomCrop` of the image zero-padded by `padding` at `(top, left)` of the padded image,
/// then a horizontal flip if `flip`.
fn crop_flip(
    chw: &[u8],
    [channels, height, width]: [usize; 3],
    padding: usize,
    top: usize,
    left: usize,
    flip: bool,
) -> Vec<u8> {
    let mut out = vec![0u8; chw.len()];
    let plane = height * width;
    for c in 0..channels {
        for y in 0..height {
            // Row y of the crop is row y + top - padding of the image, if that exists.
            let Some(source_y) = (y + top).checked_sub(padding).filter(|&sy| sy < height) else { continue };
            let source_row = &chw[c * plane + source_y * width..][..width];
            let out_row = &mut out[c * plane + y * width..][..width];
            for (x, pixel) in out_row.iter_mut().enumerate() {
                let crop_x = if flip { width - 1 - x } else { x };
                if let Some(source_x) = (crop_x + left).checked_sub(padding).filter(|&sx| sx < width) {
                    *pixel = source_row[source_x];
                }
            }
        }
    }
    out
}

/// torchvision's `RandomResizedCrop.get_params`: up to ten tries at a box of a random area
/// fraction and log-uniform aspect ratio that fits, else the central box clamped to `ratio`.
/// Returns `(top, left, height, width)`.
fn resized_crop_box(
    height: usize,
    width: usize,
    scale: [f64; 2],
    ratio: [f64; 2],
    rng: &mut impl Rng,
) -> (usize, usize, usize, usize) {
    let area = (height * width) as f64;
    let log_ratio = [ratio[0].ln(), ratio[1].ln()];
    for _ in 0..10 {
        let target_area = area * uniform(rng, scale);
        let aspect = uniform(rng, log_ratio).exp();
        let crop_width = (target_area * aspect).sqrt().round() as usize;
        let crop_height = (target_area / aspect).sqrt().round() as usize;
        if 0 < crop_width && crop_width <= width && 0 < crop_height && crop_height <= height {
            let top = rng.random_range(0..=height - crop_height);
            let left = rng.random_range(0..=width - crop_width);
            return (top, left, crop_height, crop_width);
        }
    }
    let in_ratio = width as f64 / height.max(1) as f64;
    let (min_ratio, max_ratio) = (ratio[0].min(ratio[1]), ratio[0].max(ratio[1]));
    let (crop_height, crop_width) = if in_ratio < min_ratio {
        (((width as f64) / min_ratio).round() as usize, width)
    } else if in_ratio > max_ratio {
        (height, ((height as f64) * max_ratio).round() as usize)
    } else {
        (height, width)
    };
    let (crop_height, crop_width) = (crop_height.clamp(1, height.max(1)), crop_width.clamp(1, width.max(1)));
    ((height - crop_height.min(height)) / 2, (width - crop_width.min(width)) / 2, crop_height, crop_width)
}

fn uniform(rng: &mut impl Rng, [low, high]: [f64; 2]) -> f64 {
    low + (high - low) * rng.random::<f64>()
}

/// `(height, width)` with the shorter side `size` and the longer scaled by truncation, as
/// torchvision's `Resize(size)`.
fn shorter_side_to(height: usize, width: usize, size: usize) -> (usize, usize) {
    if height <= width {
        (size, (size * width / height.max(1)).max(1))
    } else {
        ((size * height / width.max(1)).max(1), size)
    }
}

/// Python's `round`, which rounds halves to even.
fn round_half_even(x: f64) -> usize {
    x.round_ties_even() as usize
}

/// The box `[top, left, height, width]` of each channel, resized to `[out_height, out_width]`
/// with a triangle (bilinear) filter that widens when shrinking, as PIL's `BILINEAR` and
/// `image`'s `FilterType::Triangle`; samples outside the box are never read.
fn crop_resize(chw: &[u8], shape: [usize; 3], bbox: [usize; 4], [out_height, out_width]: [usize; 2]) -> Vec<u8> {
    resample_window(chw, shape, bbox, [out_height, out_width], [0, 0, out_height, out_width])
}

/// The window `[top, left, height, width]` of the box `bbox` of each channel resized to
/// `size`, computing only the window's pixels (a resize followed by a crop, in one pass).
fn resample_window(
    chw: &[u8],
    [channels, height, width]: [usize; 3],
    [top, left, box_height, box_width]: [usize; 4],
    [out_height, out_width]: [usize; 2],
    [window_top, window_left, window_height, window_width]: [usize; 4],
) -> Vec<u8> {
    let rows = Taps::new(top, box_height, out_height, window_top, window_height);
    let columns = Taps::new(left, box_width, out_width, window_left, window_width);
    let plane = height * width;
    let mut result = Vec::with_capacity(channels * window_height * window_width);
    // Horizontal pass over the rows the vertical pass reads, then the vertical pass row by row.
    let (first_row, last_row) = rows.span();
    let mut horizontal = vec![0f32; (last_row - first_row) * window_width];
    let mut accumulator = vec![0f32; window_width];
    for c in 0..channels {
        let channel = &chw[c * plane..(c + 1) * plane];
        for (y, out_row) in (first_row..last_row).zip(horizontal.chunks_exact_mut(window_width.max(1))) {
            let row = &channel[y * width..(y + 1) * width];
            for (x, out) in out_row.iter_mut().enumerate() {
                let (start, weights) = columns.of(x);
                *out = row[start..start + weights.len()].iter().zip(weights).map(|(&p, &w)| f32::from(p) * w).sum();
            }
        }
        for y in 0..window_height {
            accumulator.fill(0.0);
            let (start, weights) = rows.of(y);
            for (tap, &weight) in weights.iter().enumerate() {
                let source = &horizontal[(start + tap - first_row) * window_width..][..window_width];
                for (sum, &value) in accumulator.iter_mut().zip(source) {
                    *sum += weight * value;
                }
            }
            result.extend(accumulator.iter().map(|v| v.round().clamp(0.0, 255.0) as u8));
        }
    }
    result
}

/// The input samples and normalised triangle weights of each output sample along one axis.
struct Taps {
    /// First input index of each output sample.
    starts: Vec<usize>,
    /// `taps` weights per output sample, zero-padded.
    weights: Vec<f32>,
    /// Weights in use per output sample, all inside the box.
    lens: Vec<usize>,
    taps: usize,
    /// One past the last input index of the box.
    end: usize,
}

impl Taps {
    /// Outputs `window_start..window_start + window_len` of `in_len` inputs starting at
    /// `in_start` resampled to `out_len`.
    fn new(in_start: usize, in_len: usize, out_len: usize, window_start: usize, window_len: usize) -> Self {
        let scale = in_len as f64 / out_len.max(1) as f64;
        let filter_scale = scale.max(1.0);
        // The triangle filter has support 1, widened by the scale when shrinking.
        let support = filter_scale;
        let taps = (support.ceil() as usize) * 2 + 1;
        let mut starts = Vec::with_capacity(window_len);
        let mut lens = Vec::with_capacity(window_len);
        let mut weights = vec![0f32; window_len * taps];
        for (k, out) in (window_start..window_start + window_len).enumerate() {
            let center = (out as f64 + 0.5) * scale;
            let low = ((center - support).floor().max(0.0) as usize).min(in_len.saturating_sub(1));
            let high = ((center + support).ceil() as usize).min(in_len).max(low + 1);
            let row = &mut weights[k * taps..(k + 1) * taps];
            let mut total = 0.0;
            for (tap, i) in (low..high).take(taps).enumerate() {
                let distance = ((i as f64 + 0.5 - center) / filter_scale).abs();
                let weight = (1.0 - distance).max(0.0);
                row[tap] = weight as f32;
                total += weight;
            }
            if total > 0.0 {
                row.iter_mut().for_each(|w| *w = (f64::from(*w) / total) as f32);
            } else {
                // Only reachable for degenerate sizes: take the nearest sample.
                row[0] = 1.0;
            }
            starts.push(in_start + low);
            lens.push((high - low).min(taps));
        }
        Taps { starts, weights, lens, taps, end: in_start + in_len }
    }

    /// `[first, last)` input indices any output reads.
    fn span(&self) -> (usize, usize) {
        let first = self.starts.iter().copied().min().unwrap_or(0);
        let last = self.starts.iter().zip(&self.lens).map(|(s, n)| s + n).max().unwrap_or(0).min(self.end);
        (first, last.max(first))
    }

    /// The first input index and the weights of output `k`.
    fn of(&self, k: usize) -> (usize, &[f32]) {
        (self.starts[k], &self.weights[k * self.taps..k * self.taps + self.lens[k]])
    }
}

/// Mirrors every row of width `width` in place.
fn flip_rows(chw: &mut [u8], width: usize) {
    for row in chw.chunks_exact_mut(width.max(1)) {
        row.reverse();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::{Stream, example_rng};

    /// A 1x4x4 image whose pixel (y, x) is 10 y + x + 1.
    fn ramp() -> Vec<u8> {
        (0..4).flat_map(|y| (0..4).map(move |x| 10 * y + x + 1)).collect()
    }

    #[test]
    fn crop_flip_pads_with_zeros_and_mirrors() {
        // torchvision: F.hflip(F.crop(F.pad(x, 1), top=0, left=2, height=4, width=4))
        let out = crop_flip(&ramp(), [1, 4, 4], 1, 0, 2, false);
        assert_eq!(out, [0, 0, 0, 0, 2, 3, 4, 0, 12, 13, 14, 0, 22, 23, 24, 0]);
        let flipped = crop_flip(&ramp(), [1, 4, 4], 1, 0, 2, true);
        assert_eq!(flipped, [0, 0, 0, 0, 0, 4, 3, 2, 0, 14, 13, 12, 0, 24, 23, 22]);
        // The centre crop without a flip is the identity.
        assert_eq!(crop_flip(&ramp(), [1, 4, 4], 4, 4, 4, false), ramp());
    }

    #[test]
    fn crop_flip_draws_every_offset_and_both_flips() {
        let image = ramp();
        let mut seen = std::collections::HashSet::new();
        for index in 0..400 {
            let mut rng = example_rng(0, Stream::AugmentFirst, 0, index);
            let (out, shape) = Augmentation::CropFlip { padding: 1 }.apply(&image, [1, 4, 4], &mut rng);
            assert_eq!(shape, [1, 4, 4]);
            seen.insert(out);
        }
        // 3 x 3 offsets x 2 flips.
        assert_eq!(seen.len(), 18);
    }

    #[test]
    fn random_resized_crop_box_fits_and_respects_scale_and_ratio() {
        for index in 0..200 {
            let mut rng = example_rng(3, Stream::AugmentFirst, 1, index);
            let (top, left, h, w) = resized_crop_box(300, 400, [0.08, 1.0], [0.75, 4.0 / 3.0], &mut rng);
            assert!(top + h <= 300 && left + w <= 400 && h > 0 && w > 0);
            let fraction = (h * w) as f64 / 120_000.0;
            assert!((0.07..=1.01).contains(&fraction), "{fraction}");
            let ratio = w as f64 / h as f64;
            assert!((0.7..=1.4).contains(&ratio), "{ratio}");
        }
        // A scale no box can reach falls back to the centre, clamped to the ratio range:
        // in_ratio 4 > 4/3, so h = 10 and w = round(10 * 4/3) = 13.
        let mut rng = example_rng(0, Stream::AugmentFirst, 0, 0);
        assert_eq!(resized_crop_box(10, 40, [2.0, 2.0], [0.75, 4.0 / 3.0], &mut rng), (0, 13, 10, 13));
    }

    #[test]
    fn random_resized_crop_output_shape_and_determinism() {
        let image: Vec<u8> = (0..3 * 50 * 70).map(|i| (i % 251) as u8).collect();
        let augmentation = Augmentation::RandomResizedCrop { size: 24, scale: [0.08, 1.0], ratio: [0.75, 4.0 / 3.0] };
        let view = |index| augmentation.apply(&image, [3, 50, 70], &mut example_rng(5, Stream::AugmentFirst, 0, index));
        let (out, shape) = view(0);
        assert_eq!((out.len(), shape), (3 * 24 * 24, [3, 24, 24]));
        assert_eq!(view(0), (out.clone(), shape));
        assert_ne!(view(1).0, out);
    }

    #[test]
    fn resampling_matches_the_image_crate_triangle_filter() {
        // Reference: image::imageops::resize(crop_imm(..), w, h, FilterType::Triangle), which
        // is PIL's antialiased BILINEAR; both round differently, so allow 1 level.
        use image::{GrayImage, imageops};
        let (height, width) = (37usize, 53usize);
        let plane: Vec<u8> = (0..height * width).map(|i| ((i * 97 + i / 7 * 31) % 256) as u8).collect();
        let gray = GrayImage::from_raw(width as u32, height as u32, plane.clone()).unwrap();
        for (bbox, out) in [
            ([0, 0, 37, 53], [16, 20]),
            ([0, 0, 37, 53], [60, 70]),
            ([5, 9, 20, 30], [7, 11]),
            ([5, 9, 20, 30], [24, 24]),
        ] {
            let [top, left, h, w] = bbox;
            let view = imageops::crop_imm(&gray, left as u32, top as u32, w as u32, h as u32);
            let reference = imageops::resize(&*view, out[1] as u32, out[0] as u32, imageops::FilterType::Triangle);
            let ours = crop_resize(&plane, [1, height, width], bbox, out);
            let worst = ours.iter().zip(reference.as_raw()).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
            assert!(worst <= 1, "{bbox:?} -> {out:?}: differs by {worst}");
        }
        // A window of a resize is the same pixels as the resize, cropped.
        let full = crop_resize(&plane, [1, height, width], [0, 0, 37, 53], [30, 40]);
        let window = resample_window(&plane, [1, height, width], [0, 0, 37, 53], [30, 40], [3, 5, 10, 12]);
        let cropped: Vec<u8> = (3..13).flat_map(|y| full[y * 40 + 5..y * 40 + 17].to_vec()).collect();
        assert_eq!(window, cropped);
    }

    #[test]
    fn resize_center_crop_matches_torchvision_geometry() {
        // A constant image stays constant through any bilinear resize.
        let image = vec![77u8; 3 * 300 * 500];
        let (out, shape) =
            Augmentation::IMAGENET_EVAL.apply(&image, [3, 300, 500], &mut example_rng(0, Stream::AugmentFirst, 0, 0));
        assert_eq!(shape, [3, 224, 224]);
        assert!(out.iter().all(|&p| p == 77));
        // torchvision: Resize(256) of 300x500 -> 256x426; CenterCrop(224) -> top 16, left 101.
        assert_eq!(shorter_side_to(300, 500, 256), (256, 426));
        assert_eq!(round_half_even((426.0 - 224.0) / 2.0), 101);
        assert_eq!(round_half_even(2.5), 2);
        // The identity resize of a ramp keeps its centre.
        let ramp: Vec<u8> = (0..6 * 6).map(|i| i as u8).collect();
        let (out, _) = Augmentation::ResizeCenterCrop { resize: 6, size: 2 }.apply(
            &ramp,
            [1, 6, 6],
            &mut example_rng(0, Stream::AugmentFirst, 0, 0),
        );
        assert_eq!(out, [14, 15, 20, 21]);
    }
}
