//! Image folders: one subfolder per class, holding PNG or JPEG files, as torchvision's
//! `ImageFolder` reads them. The ImageNet layout (`train/<wnid>/*.JPEG`, `val/<wnid>/*.JPEG`) is
//! one such folder per split.
//!
//! Classes are the subfolder names in byte order; files are taken in byte order of their names.
//! Every image is decoded to 8-bit RGB, so datasets from folders always have 3 channels.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use image::imageops::FilterType;

use crate::{DataError, ImageDataset, Split};

const EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];

/// The split's folder: `train` or `val`.
pub fn split_dir_name(split: Split) -> &'static str {
    match split {
        Split::Train => "train",
        Split::Test => "val",
    }
}

/// Image paths and labels of a class-per-subfolder tree, without decoding anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderIndex {
    pub paths: Vec<PathBuf>,
    pub labels: Vec<u32>,
    pub class_names: Vec<String>,
}

/// Lists the images under `dir/<class>/`. With `classes`, the class list is fixed (so that a
/// validation folder uses the training folder's labels) and an unknown subfolder is an error;
/// without, it is the sorted subfolder names.
pub fn index(dir: &Path, classes: Option<&[String]>) -> Result<FolderIndex, DataError> {
    let mut found = sorted_entries(dir)?
        .into_iter()
        .filter(|p| p.is_dir())
        .map(|p| (p.file_name().unwrap_or_default().to_string_lossy().into_owned(), p))
        .collect::<Vec<_>>();
    found.sort();
    let class_names: Vec<String> = match classes {
        Some(classes) => classes.to_vec(),
        None => found.iter().map(|(name, _)| name.clone()).collect(),
    };
    if class_names.is_empty() {
        return Err(DataError::MalformedRecord {
            path: dir.to_owned(),
            record: 0,
            message: "no class subfolders, expected one folder of images per class".to_owned(),
        });
    }
    let mut paths = Vec::new();
    let mut labels = Vec::new();
    for (name, class_dir) in &found {
        let Some(label) = class_names.iter().position(|c| c == name) else {
            return Err(DataError::MalformedRecord {
                path: class_dir.clone(),
                record: 0,
                message: format!("class folder {name:?} is not one of the {} known classes", class_names.len()),
            });
        };
        for file in sorted_entries(class_dir)? {
            let is_image = file
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
            if is_image && file.is_file() {
                paths.push(file);
                labels.push(label as u32);
            }
        }
    }
    Ok(FolderIndex { paths, labels, class_names })
}

/// Decodes one image to CHW RGB bytes, resized to `size = [height, width]` if given
/// (bilinear, as `image::imageops::FilterType::Triangle`). Returns the bytes and `[3, h, w]`.
pub fn decode(path: &Path, size: Option<[usize; 2]>) -> Result<(Vec<u8>, [usize; 3]), DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    decode_reader(BufReader::new(file), path, size)
}

/// [`decode`] for an image held in memory; `path` only names it in errors.
pub fn decode_bytes(bytes: &[u8], path: &Path, size: Option<[usize; 2]>) -> Result<(Vec<u8>, [usize; 3]), DataError> {
    decode_reader(std::io::Cursor::new(bytes), path, size)
}

fn decode_reader(
    reader: impl std::io::BufRead + std::io::Seek,
    path: &Path,
    size: Option<[usize; 2]>,
) -> Result<(Vec<u8>, [usize; 3]), DataError> {
    let image_error = |message: String| DataError::Image { path: path.to_owned(), message };
    let reader = image::ImageReader::new(reader).with_guessed_format().map_err(|e| DataError::io(path, e))?;
    let decoded = reader.decode().map_err(|e| image_error(e.to_string()))?;
    let mut rgb = decoded.to_rgb8();
    if let Some([height, width]) = size
        && (rgb.height() as usize, rgb.width() as usize) != (height, width)
    {
        rgb = image::imageops::resize(&rgb, width as u32, height as u32, FilterType::Triangle);
    }
    let (width, height) = (rgb.width() as usize, rgb.height() as usize);
    let hwc = rgb.into_raw();
    let mut chw = vec![0u8; hwc.len()];
    for (pixel, rgb) in hwc.chunks_exact(3).enumerate() {
        for channel in 0..3 {
            chw[channel * height * width + pixel] = rgb[channel];
        }
    }
    Ok((chw, [3, height, width]))
}

/// Decodes every image of `dir/<class>/` into memory. Without `size`, all images must share
/// the first one's size.
pub fn load_dir(dir: &Path, size: Option<[usize; 2]>, classes: Option<&[String]>) -> Result<ImageDataset, DataError> {
    decode_index(index(dir, classes)?, size)
}

/// Decodes every image of `index` into memory, resized to `size` if given; without, all
/// images must share the first one's size.
pub fn decode_index(index: FolderIndex, size: Option<[usize; 2]>) -> Result<ImageDataset, DataError> {
    let mut images = Vec::new();
    let mut shape = size.map(|[h, w]| [3, h, w]);
    for path in &index.paths {
        let (chw, found) = decode(path, size)?;
        match shape {
            None => shape = Some(found),
            Some(expected) if expected != found => {
                return Err(DataError::ShapeMismatch { path: path.clone(), found, expected });
            }
            Some(_) => {}
        }
        images.extend_from_slice(&chw);
    }
    let [channels, height, width] = shape.unwrap_or([3, 0, 0]);
    Ok(ImageDataset {
        images,
        labels: index.labels,
        channels,
        height,
        width,
        num_classes: index.class_names.len(),
        class_names: index.class_names,
    })
}

/// Loads `split` of a generic folder dataset rooted at `root`: `root/train/<class>/` and
/// `root/val/<class>/` (or `root/test/<class>/`); the test split uses the training classes.
/// A root without split folders is a training split only.
pub fn load_split(root: &Path, split: Split, size: Option<[usize; 2]>) -> Result<ImageDataset, DataError> {
    decode_index(index_split(root, split)?, size)
}

/// [`load_split`]'s layout, indexed without decoding anything: the paths and labels of `split`.
pub fn index_split(root: &Path, split: Split) -> Result<FolderIndex, DataError> {
    let train = root.join("train");
    let test = ["val", "test"].map(|name| root.join(name)).into_iter().find(|p| p.is_dir());
    let has_splits = train.is_dir() || test.is_some();
    match split {
        Split::Train if has_splits => index(&train, None),
        Split::Train => index(root, None),
        Split::Test => {
            let Some(test) = test else {
                return Err(DataError::Missing {
                    id: format!("folder:{}", root.display()),
                    split: split.to_string(),
                    missing: vec!["val/ (or test/)".to_owned()],
                    searched: vec![root.to_owned()],
                    hint: "put the test images under <root>/val/<class>/".to_owned(),
                });
            };
            let classes = if train.is_dir() { Some(index(&train, None)?.class_names) } else { None };
            index(&test, classes.as_deref())
        }
    }
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut entries = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| DataError::io(dir, e))?;
    entries.sort();
    Ok(entries)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes a `width x height` RGB image whose pixel (x, y) is (x, y, seed).
    pub(crate) fn write_image(path: &Path, width: u32, height: u32, seed: u8) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let image = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, seed]));
        image.save(path).unwrap();
    }

    #[test]
    fn loads_png_and_jpeg_folders_as_chw() {
        let root = tempfile::tempdir().unwrap();
        write_image(&root.path().join("train/cat/b.png"), 4, 2, 7);
        write_image(&root.path().join("train/cat/a.PNG"), 4, 2, 9);
        write_image(&root.path().join("train/ant/x.png"), 4, 2, 1);
        std::fs::write(root.path().join("train/ant/notes.txt"), "ignored").unwrap();
        write_image(&root.path().join("val/cat/c.jpg"), 4, 2, 200);
        let train = load_split(root.path(), Split::Train, None).unwrap();
        assert_eq!(train.class_names, vec!["ant", "cat"]);
        assert_eq!(train.labels, vec![0, 1, 1]);
        assert_eq!(train.shape(), [3, 2, 4]);
        // CHW: red plane holds x, green plane y, blue plane the seed; "a.PNG" sorts before "b.png".
        assert_eq!(&train.image(1)[..8], &[0, 1, 2, 3, 0, 1, 2, 3]);
        assert_eq!(&train.image(1)[8..16], &[0, 0, 0, 0, 1, 1, 1, 1]);
        assert!(train.image(1)[16..].iter().all(|&b| b == 9));
        let test = load_split(root.path(), Split::Test, None).unwrap();
        assert_eq!((test.labels.clone(), test.num_classes), (vec![1], 2), "val uses the train classes");
        let resized = load_split(root.path(), Split::Train, Some([3, 5])).unwrap();
        assert_eq!(resized.shape(), [3, 3, 5]);
    }

    #[test]
    fn bad_images_sizes_and_classes_are_errors() {
        let root = tempfile::tempdir().unwrap();
        write_image(&root.path().join("a/1.png"), 4, 2, 0);
        write_image(&root.path().join("b/2.png"), 3, 3, 0);
        let err = load_dir(root.path(), None, None).unwrap_err();
        assert!(matches!(err, DataError::ShapeMismatch { found: [3, 3, 3], expected: [3, 2, 4], .. }), "{err}");
        std::fs::write(root.path().join("b/2.png"), b"not a png").unwrap();
        let err = load_dir(root.path(), None, None).unwrap_err();
        assert!(matches!(err, DataError::Image { .. }) && err.to_string().contains("2.png"), "{err}");
        let err = load_dir(root.path(), None, Some(&["a".to_owned()])).unwrap_err();
        assert!(err.to_string().contains("class folder \"b\" is not one of the 1 known classes"), "{err}");
        let err = load_split(root.path(), Split::Test, None).unwrap_err();
        assert!(matches!(err, DataError::Missing { .. }), "{err}");
    }
}
