//! Per-channel normalisation with the training split's statistics, cached on disk.
//!
//! The statistics of a split are computed once and stored in `<data_dir>/<id>/.itra-stats.json`
//! (`<root>/.itra-stats.json` for `folder:<root>`), keyed by a fingerprint of the split's files
//! (name, size and modification time) and by a caller-chosen variant (e.g. a training subset).
//! **A stale or unreadable entry is recomputed, never trusted**, and the file is replaced
//! atomically (written to a temporary name, then renamed).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use crate::folder::FolderIndex;
use crate::registry::Format;
use crate::{DataError, ImageDataset, Split};

/// Name of the cache file in a dataset's folder.
pub const STATS_FILE: &str = ".itra-stats.json";
const STATS_VERSION: u32 = 1;

/// Per-channel mean and standard deviation, in `[0, 1]` pixel units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

/// Running per-channel sums; `u64` per image and `f64` across images.
#[derive(Debug, Clone)]
struct ChannelSums {
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
    pixels: u64,
}

impl ChannelSums {
    fn new(channels: usize) -> Self {
        ChannelSums { sum: vec![0.0; channels], sum_sq: vec![0.0; channels], pixels: 0 }
    }

    /// Adds one CHW image of `plane` pixels per channel.
    fn add(&mut self, chw: &[u8], plane: usize) {
        if plane == 0 {
            return;
        }
        for (c, pixels) in chw.chunks_exact(plane).enumerate() {
            let (s, q) = pixels.iter().fold((0u64, 0u64), |(s, q), &p| {
                let p = u64::from(p);
                (s + p, q + p * p)
            });
            self.sum[c] += s as f64;
            self.sum_sq[c] += q as f64;
        }
        self.pixels += plane as u64;
    }

    fn finish(&self) -> Normalization {
        let count = self.pixels.max(1) as f64;
        let mean: Vec<f64> = self.sum.iter().map(|s| s / count / 255.0).collect();
        let std = self
            .sum_sq
            .iter()
            .zip(&mean)
            .map(|(q, m)| ((q / count / (255.0 * 255.0) - m * m).max(0.0).sqrt().max(1e-6)) as f32)
            .collect();
        Normalization { mean: mean.into_iter().map(|m| m as f32).collect(), std }
    }
}

impl Normalization {
    /// The mean and standard deviation of each channel over every pixel of `dataset`:
    /// `mean_c = sum(p) / (n * 255)`, `std_c = sqrt(sum(p^2) / (n * 255^2) - mean_c^2)` (the
    /// population deviation, floored at `1e-6`), with `n` the pixels per channel.
    ///
    /// ```python
    /// x = images.astype(np.float64) / 255  # [N, C, H, W]
    /// mean, std = x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3))
    /// ```
    pub fn of(dataset: &ImageDataset) -> Self {
        let plane = dataset.height * dataset.width;
        let mut sums = ChannelSums::new(dataset.channels);
        if plane > 0 {
            for image in dataset.images.chunks_exact(dataset.channels * plane) {
                sums.add(image, plane);
            }
        }
        sums.finish()
    }

    /// [`Normalization::of`] over the images of a folder, each decoded at its own size (so
    /// large images weigh more, as every pixel counts once).
    pub fn of_folder(index: &FolderIndex) -> Result<Self, DataError> {
        let mut sums = ChannelSums::new(3);
        for path in &index.paths {
            let (chw, [_, height, width]) = crate::folder::decode(path, None)?;
            sums.add(&chw, height * width);
        }
        Ok(sums.finish())
    }

    /// torchvision's ImageNet statistics (`mean=[0.485, 0.456, 0.406]`, `std=[0.229, 0.224,
    /// 0.225]`), for runs that follow the reference recipe instead of measuring the split.
    pub fn imagenet() -> Self {
        Normalization { mean: vec![0.485, 0.456, 0.406], std: vec![0.229, 0.224, 0.225] }
    }

    pub fn channels(&self) -> usize {
        self.mean.len()
    }

    /// Appends the normalised CHW image `chw` (`plane` pixels per channel) to `out`: a raw
    /// byte `p` of channel `c` becomes `p * (1 / (255 std_c)) - mean_c / std_c`, computed in
    /// `f32`.
    pub fn extend_normalized(&self, chw: &[u8], plane: usize, out: &mut Vec<f32>) {
        for ((channel, &mean), &std) in chw.chunks_exact(plane.max(1)).zip(&self.mean).zip(&self.std) {
            let (scale, shift) = (1.0 / (255.0 * std), mean / std);
            out.extend(channel.iter().map(|&p| f32::from(p) * scale - shift));
        }
    }

    /// The training split's statistics of dataset `id` (registered, or `folder:<root>`),
    /// from the cache when its fingerprint still matches, else from `compute` (whose result
    /// is then cached if the folder is writable). `variant` separates differently-drawn training sets of one split, such
    /// as `"train_limit=1000,seed=0"`; use `""` for the whole split.
    pub fn cached(
        id: &str,
        data_dir: &Path,
        variant: &str,
        compute: impl FnOnce() -> Result<Normalization, DataError>,
    ) -> Result<Normalization, DataError> {
        let (cache_path, fingerprint) = split_fingerprint(id, data_dir, Split::Train)?;
        let mut cache = read_cache(&cache_path);
        if let Some(entry) = cache.entries.iter().find(|e| e.variant == variant && e.fingerprint == fingerprint)
            && entry.normalization.mean.len() == entry.normalization.std.len()
        {
            return Ok(entry.normalization.clone());
        }
        let normalization = compute()?;
        cache.entries.retain(|e| e.variant != variant);
        cache.entries.push(CacheEntry {
            variant: variant.to_owned(),
            fingerprint,
            normalization: normalization.clone(),
        });
        // A read-only data directory (a shared copy, a Debian package) only costs a recomputation
        // next time, so the statistics are returned even if they cannot be stored.
        let _ = write_cache(&cache_path, &cache);
        Ok(normalization)
    }

    /// [`Normalization::cached`] for an in-memory training set.
    pub fn cached_of(
        id: &str,
        data_dir: &Path,
        variant: &str,
        dataset: &ImageDataset,
    ) -> Result<Normalization, DataError> {
        Self::cached(id, data_dir, variant, || Ok(Self::of(dataset)))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct StatsCache {
    version: u32,
    entries: Vec<CacheEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CacheEntry {
    variant: String,
    fingerprint: Vec<FileStamp>,
    normalization: Normalization,
}

/// What identifies a file's contents without reading them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileStamp {
    name: String,
    size: u64,
    modified_ns: u128,
}

fn stamp(path: &Path, name: String) -> Result<FileStamp, DataError> {
    let meta = fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    let modified_ns = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
    Ok(FileStamp { name, size: meta.len(), modified_ns })
}

/// Where `id`'s cache lives and the stamps of `split`'s files. An image folder is stamped by
/// its class folders (whose modification time changes when an image is added or removed) and
/// its image count.
fn split_fingerprint(id: &str, data_dir: &Path, split: Split) -> Result<(PathBuf, Vec<FileStamp>), DataError> {
    if let Some(root) = id.strip_prefix("folder:") {
        let root = Path::new(root);
        let train = root.join("train");
        let dir = if train.is_dir() { train } else { root.to_owned() };
        return Ok((root.join(STATS_FILE), folder_stamps(&dir)?));
    }
    let spec = crate::registry::spec(id)?;
    let dir = crate::locate(spec, data_dir, split)?;
    let mut stamps = Vec::new();
    for name in spec.split_files(split) {
        match spec.format {
            Format::ImageFolder => stamps.extend(folder_stamps(&dir.join(name))?),
            Format::Idx => {
                let path = crate::idx::find_file(&dir, name).unwrap_or_else(|| dir.join(name));
                let shown = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
                stamps.push(stamp(&path, shown)?);
            }
            _ => stamps.push(stamp(&dir.join(name), name.to_owned())?),
        }
    }
    Ok((data_dir.join(spec.id).join(STATS_FILE), stamps))
}

fn folder_stamps(dir: &Path) -> Result<Vec<FileStamp>, DataError> {
    let index = crate::folder::index(dir, None)?;
    let mut stamps = vec![FileStamp { name: "<images>".to_owned(), size: index.paths.len() as u64, modified_ns: 0 }];
    for class in &index.class_names {
        stamps.push(stamp(&dir.join(class), class.clone())?);
    }
    Ok(stamps)
}

fn read_cache(path: &Path) -> StatsCache {
    let fresh = StatsCache { version: STATS_VERSION, entries: Vec::new() };
    let Ok(bytes) = fs::read(path) else { return fresh };
    match serde_json::from_slice::<StatsCache>(&bytes) {
        Ok(cache) if cache.version == STATS_VERSION => cache,
        _ => fresh,
    }
}

fn write_cache(path: &Path, cache: &StatsCache) -> Result<(), DataError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
    }
    let json = serde_json::to_vec_pretty(cache).expect("stats cache serialises");
    let temporary = path.with_file_name(format!("{STATS_FILE}.{}.tmp", std::process::id()));
    fs::write(&temporary, json).map_err(|e| DataError::io(&temporary, e))?;
    fs::rename(&temporary, path).map_err(|e| {
        let _ = fs::remove_file(&temporary);
        DataError::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cifar;

    #[test]
    fn matches_hand_computation() {
        // Two 1x1x2 images: pixels 0, 255, 255, 255 -> mean 0.75, std sqrt(0.1875).
        let dataset = ImageDataset {
            images: vec![0, 255, 255, 255],
            labels: vec![0, 1],
            channels: 1,
            height: 1,
            width: 2,
            num_classes: 2,
            class_names: vec!["a".into(), "b".into()],
        };
        let norm = Normalization::of(&dataset);
        assert!((norm.mean[0] - 0.75).abs() < 1e-6);
        assert!((norm.std[0] - 0.1875f32.sqrt()).abs() < 1e-6);
        let mut out = Vec::new();
        norm.extend_normalized(dataset.image(1), 2, &mut out);
        let hi = (1.0 - 0.75) / 0.1875f32.sqrt();
        assert!(out.iter().all(|v| (v - hi).abs() < 1e-5), "{out:?}");
    }

    #[test]
    fn per_channel_statistics() {
        // numpy: x = np.array([[[[0, 51]], [[255, 255]]], [[[102, 153]], [[0, 0]]]]) / 255
        //        x.mean((0, 2, 3)) -> [0.3, 0.5]; x.std((0, 2, 3)) -> [0.2236068, 0.5]
        let dataset = ImageDataset {
            images: vec![0, 51, 255, 255, 102, 153, 0, 0],
            labels: vec![0, 0],
            channels: 2,
            height: 1,
            width: 2,
            num_classes: 1,
            class_names: vec!["a".into()],
        };
        let norm = Normalization::of(&dataset);
        for (got, want) in norm.mean.iter().chain(&norm.std).zip([0.3, 0.5, 0.2236068, 0.5]) {
            assert!((got - want).abs() < 1e-6, "{norm:?}");
        }
    }

    fn write_cifar(data: &Path, value: u8) {
        let dir = data.join("cifar10/cifar-10-batches-bin");
        fs::create_dir_all(&dir).unwrap();
        let image = [value; cifar::IMAGE_BYTES];
        for name in cifar::Variant::Cifar10.file_names(Split::Train) {
            fs::write(dir.join(name), cifar::encode_record(&[1], &image)).unwrap();
        }
    }

    #[test]
    fn cache_is_reused_until_the_split_changes() {
        let data = tempfile::tempdir().unwrap();
        write_cifar(data.path(), 51);
        let fixed = Normalization { mean: vec![9.0; 3], std: vec![1.0; 3] };
        let computed = Normalization::cached("cifar10", data.path(), "", || Ok(fixed.clone())).unwrap();
        assert_eq!(computed, fixed);
        assert!(data.path().join("cifar10").join(STATS_FILE).is_file());
        // A second call must not compute again.
        let cached = Normalization::cached("cifar10", data.path(), "", || panic!("recomputed")).unwrap();
        assert_eq!(cached, fixed);
        // A different variant is a different entry.
        let other = Normalization { mean: vec![1.0; 3], std: vec![1.0; 3] };
        assert_eq!(Normalization::cached("cifar10", data.path(), "limit=1", || Ok(other.clone())).unwrap(), other);
        assert_eq!(Normalization::cached("cifar10", data.path(), "", || panic!("recomputed")).unwrap(), fixed);

        // Rewriting a batch with another size makes the entry stale.
        let dir = data.path().join("cifar10/cifar-10-batches-bin");
        let zero = cifar::encode_record(&[1], &[0; cifar::IMAGE_BYTES]);
        let two = [zero.clone(), zero].concat();
        fs::write(dir.join("data_batch_3.bin"), two).unwrap();
        let dataset = crate::load_image_dataset("cifar10", data.path(), Split::Train).unwrap();
        let fresh = Normalization::cached_of("cifar10", data.path(), "", &dataset).unwrap();
        assert_eq!(fresh, Normalization::of(&dataset));
        // Five one-image batches of 51 become four of 51 and one of two zero images: 0.2 * 4 / 6.
        assert!((fresh.mean[0] - 0.2 * 4.0 / 6.0).abs() < 1e-6, "{fresh:?}");

        // A corrupt cache file is recomputed and replaced.
        fs::write(data.path().join("cifar10").join(STATS_FILE), b"{not json").unwrap();
        assert_eq!(Normalization::cached("cifar10", data.path(), "", || Ok(fixed.clone())).unwrap(), fixed);
        let leftovers: Vec<_> = fs::read_dir(data.path().join("cifar10"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn folder_statistics_and_cache() {
        let root = tempfile::tempdir().unwrap();
        // Pixel (x, y) is (x, y, 7): red mean over x in 0..4 is 1.5, green over y in 0..2 is 0.5.
        crate::folder::tests::write_image(&root.path().join("train/a/1.png"), 4, 2, 7);
        let index = crate::folder::index(&root.path().join("train"), None).unwrap();
        let norm = Normalization::of_folder(&index).unwrap();
        assert!((norm.mean[0] - 1.5 / 255.0).abs() < 1e-7 && (norm.mean[1] - 0.5 / 255.0).abs() < 1e-7);
        assert!((norm.std[1] - 0.5 / 255.0).abs() < 1e-6 && norm.std[2] == 1e-6, "{norm:?}");
        let id = format!("folder:{}", root.path().display());
        let cached = Normalization::cached(&id, Path::new("unused"), "", || Normalization::of_folder(&index)).unwrap();
        assert_eq!(cached, norm);
        assert!(root.path().join(STATS_FILE).is_file());
        assert_eq!(Normalization::cached(&id, Path::new("unused"), "", || panic!("recomputed")).unwrap(), norm);
    }
}
