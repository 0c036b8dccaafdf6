//! Turning the official ILSVRC 2012 archives into the `train/<wnid>/*.JPEG`,
//! `val/<wnid>/*.JPEG` layout that [`crate::folder`] reads.
//!
//! Put `ILSVRC2012_img_train.tar`, `ILSVRC2012_img_val.tar` and `ILSVRC2012_devkit_t12.tar.gz`
//! (from <https://image-net.org>, login required) in `<data-dir>/imagenet/` and call [`prepare`].
//! The training tar holds one inner tar per class (`n01440764.tar`, ...); the validation tar holds
//! 50,000 images whose classes come from the devkit's `ILSVRC2012_validation_ground_truth.txt`
//! (ILSVRC2012 ids, 1-based) and `meta.mat` (id -> wnid), as torchvision's `ImageNet` does.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::DataError;
use crate::read::{decompressed, open};

pub const TRAIN_TAR: &str = "ILSVRC2012_img_train.tar";
pub const VAL_TAR: &str = "ILSVRC2012_img_val.tar";
pub const DEVKIT: &str = "ILSVRC2012_devkit_t12.tar.gz";
const META: &str = "ILSVRC2012_devkit_t12/data/meta.mat";
const GROUND_TRUTH: &str = "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt";

/// What [`prepare`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepareReport {
    pub classes: usize,
    pub train_images: usize,
    pub val_images: usize,
}

/// Builds `<dir>/train/<wnid>/` and `<dir>/val/<wnid>/` from the three official archives in
/// `dir`. Works in a staging folder and moves the result into place at the end, so a failure
/// leaves no half-built `train/` or `val/`.
pub fn prepare(dir: &Path) -> Result<PrepareReport, DataError> {
    let missing: Vec<String> =
        [TRAIN_TAR, VAL_TAR, DEVKIT].iter().filter(|n| !dir.join(n).is_file()).map(|n| n.to_string()).collect();
    if !missing.is_empty() {
        return Err(DataError::Missing {
            id: "imagenet".to_owned(),
            split: "source".to_owned(),
            missing,
            searched: vec![dir.to_owned()],
            hint: "download them from https://image-net.org (login required)".to_owned(),
        });
    }
    let (wnids, ground_truth) = read_devkit(&dir.join(DEVKIT))?;
    let staging = dir.join(".prepare-staging");
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(|e| DataError::io(&staging, e))?;
    }
    let built = build(dir, &staging, &wnids, &ground_truth);
    let report = match built {
        Ok(report) => report,
        Err(error) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(error);
        }
    };
    for split in ["train", "val"] {
        let dest = dir.join(split);
        if dest.exists() {
            fs::remove_dir_all(&dest).map_err(|e| DataError::io(&dest, e))?;
        }
        fs::rename(staging.join(split), &dest).map_err(|e| DataError::io(&dest, e))?;
    }
    fs::remove_dir(&staging).map_err(|e| DataError::io(&staging, e))?;
    Ok(report)
}

fn build(
    dir: &Path,
    staging: &Path,
    wnids: &HashMap<u32, String>,
    ground_truth: &[u32],
) -> Result<PrepareReport, DataError> {
    let train_path = dir.join(TRAIN_TAR);
    let mut train_images = 0;
    let mut classes = 0;
    for_each_file(&train_path, |name, inner| {
        let wnid = plain_name(&train_path, name)?
            .strip_suffix(".tar")
            .map(str::to_owned)
            .ok_or_else(|| malformed(&train_path, format!("entry {name:?} is not a per-class .tar")))?;
        let class_dir = staging.join("train").join(&wnid);
        create_dir(&class_dir)?;
        classes += 1;
        let inner_path = train_path.join(name);
        for_each_file_in(tar::Archive::new(inner), &inner_path, |image_name, image| {
            let file_name = plain_name(&inner_path, image_name)?;
            write_file(&class_dir.join(file_name), image)?;
            train_images += 1;
            Ok(())
        })
    })?;

    let val_path = dir.join(VAL_TAR);
    let mut val_images = 0;
    for_each_file(&val_path, |name, image| {
        let file_name = plain_name(&val_path, name)?;
        // ILSVRC2012_val_00000001.JPEG is the first line of the ground truth.
        let index: usize = file_name
            .strip_prefix("ILSVRC2012_val_")
            .and_then(|rest| rest.split('.').next())
            .and_then(|n| n.parse().ok())
            .filter(|&n| n >= 1)
            .ok_or_else(|| malformed(&val_path, format!("entry {name:?} is not ILSVRC2012_val_<n>.JPEG")))?;
        let id = *ground_truth.get(index - 1).ok_or_else(|| {
            malformed(&val_path, format!("{name} has no line in the ground truth ({} lines)", ground_truth.len()))
        })?;
        let wnid = wnids
            .get(&id)
            .ok_or_else(|| malformed(&val_path, format!("{name}: ILSVRC2012 id {id} is not in meta.mat")))?;
        let class_dir = staging.join("val").join(wnid);
        create_dir(&class_dir)?;
        write_file(&class_dir.join(file_name), image)?;
        val_images += 1;
        Ok(())
    })?;
    create_dir(&staging.join("val"))?;
    Ok(PrepareReport { classes, train_images, val_images })
}

/// ILSVRC2012 id -> wnid for the 1000 classes, and the validation ground truth.
fn read_devkit(path: &Path) -> Result<(HashMap<u32, String>, Vec<u32>), DataError> {
    let mut meta = None;
    let mut ground_truth = None;
    for_each_file(path, |name, reader| {
        let name = name.trim_start_matches("./");
        if name == META || name == GROUND_TRUTH {
            let mut bytes = Vec::new();
            reader.read_to_end(&mut bytes).map_err(|e| DataError::io(path, e))?;
            if name == META { meta = Some(bytes) } else { ground_truth = Some(bytes) }
        }
        Ok(())
    })?;
    let meta_path = path.join(META);
    let meta = meta.ok_or_else(|| malformed(path, format!("no {META}")))?;
    let synsets = mat5::read_struct_array(&meta, "synsets").map_err(|message| malformed(&meta_path, message))?;
    let mut wnids = HashMap::new();
    for (record, synset) in synsets.iter().enumerate() {
        let id = match synset.get("ILSVRC2012_ID") {
            Some(mat5::Value::Number(id)) => *id,
            _ => {
                return Err(malformed(&meta_path, format!("synset {record} has no numeric ILSVRC2012_ID")));
            }
        };
        let Some(mat5::Value::Text(wnid)) = synset.get("WNID") else {
            return Err(malformed(&meta_path, format!("synset {record} has no WNID")));
        };
        if (1.0..=1000.0).contains(&id) && id.fract() == 0.0 {
            wnids.insert(id as u32, wnid.clone());
        }
    }
    let truth_path = path.join(GROUND_TRUTH);
    let text = ground_truth.ok_or_else(|| malformed(path, format!("no {GROUND_TRUTH}")))?;
    let text = String::from_utf8(text).map_err(|_| malformed(&truth_path, "not UTF-8".to_owned()))?;
    let ground_truth = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            line.trim().parse::<u32>().map_err(|_| DataError::MalformedRecord {
                path: truth_path.clone(),
                record: i as u64,
                message: format!("{line:?} is not an ILSVRC2012 id"),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((wnids, ground_truth))
}

/// Calls `visit(name, reader)` for each regular file of the (optionally gzipped) tar at `path`.
fn for_each_file(
    path: &Path,
    visit: impl FnMut(&str, &mut dyn Read) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let reader = decompressed(open(path)?, path)?;
    for_each_file_in(tar::Archive::new(reader), path, visit)
}

fn for_each_file_in<R: Read>(
    mut archive: tar::Archive<R>,
    path: &Path,
    mut visit: impl FnMut(&str, &mut dyn Read) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let io_error = |e: io::Error| DataError::io(path, e);
    for entry in archive.entries().map_err(io_error)? {
        let mut entry = entry.map_err(io_error)?;
        if !matches!(entry.header().entry_type(), tar::EntryType::Regular | tar::EntryType::Continuous) {
            continue;
        }
        let name = entry.path().map_err(io_error)?.to_string_lossy().into_owned();
        visit(&name, &mut entry)?;
    }
    Ok(())
}

/// The entry's name if it is a single safe path component (after an optional `./`).
fn plain_name<'a>(archive: &Path, name: &'a str) -> Result<&'a str, DataError> {
    let trimmed = name.trim_start_matches("./");
    if trimmed.is_empty() || trimmed.contains('/') || trimmed.contains('\\') || trimmed == ".." || trimmed == "." {
        return Err(DataError::UnsafeArchiveEntry {
            archive: archive.to_owned(),
            entry: name.to_owned(),
            reason: "expected a plain file name".to_owned(),
        });
    }
    Ok(trimmed)
}

fn create_dir(dir: &Path) -> Result<(), DataError> {
    fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))
}

fn write_file(path: &Path, reader: &mut dyn Read) -> Result<(), DataError> {
    let mut out = fs::File::create(path).map_err(|e| DataError::io(path, e))?;
    io::copy(reader, &mut out).map_err(|e| DataError::io(path, e))?;
    Ok(())
}

fn malformed(path: &Path, message: String) -> DataError {
    DataError::MalformedRecord { path: PathBuf::from(path), record: 0, message }
}

/// Just enough of the MATLAB 5 MAT-file format to read a struct array of numeric scalars and
/// strings, such as the devkit's `synsets`.
pub mod mat5 {
    use std::collections::HashMap;
    use std::io::Read;

    const MI_INT8: u32 = 1;
    const MI_UINT8: u32 = 2;
    const MI_INT16: u32 = 3;
    const MI_UINT16: u32 = 4;
    const MI_INT32: u32 = 5;
    const MI_UINT32: u32 = 6;
    const MI_SINGLE: u32 = 7;
    const MI_DOUBLE: u32 = 9;
    const MI_INT64: u32 = 12;
    const MI_UINT64: u32 = 13;
    const MI_MATRIX: u32 = 14;
    const MI_COMPRESSED: u32 = 15;
    const MI_UTF8: u32 = 16;
    const MX_CELL: u8 = 1;
    const MX_STRUCT: u8 = 2;
    const MX_CHAR: u8 = 4;

    /// A field value: the first number of a numeric array, a string, or anything else.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Number(f64),
        Text(String),
        Other,
    }

    /// The elements of the struct array variable `name`, each as field name -> value.
    pub fn read_struct_array(file: &[u8], name: &str) -> Result<Vec<HashMap<String, Value>>, String> {
        if file.len() < 128 {
            return Err(format!("{} bytes, expected a 128-byte MAT-file header", file.len()));
        }
        if &file[126..128] != b"IM" {
            return Err("not a little-endian MAT 5 file (no \"IM\" at offset 126)".to_owned());
        }
        let mut offset = 128;
        while offset < file.len() {
            let (kind, data, next) = element(file, offset)?;
            offset = next;
            let inflated;
            let (kind, data) = if kind == MI_COMPRESSED {
                let mut out = Vec::new();
                flate2::read::ZlibDecoder::new(data)
                    .read_to_end(&mut out)
                    .map_err(|e| format!("bad zlib data: {e}"))?;
                inflated = out;
                let (kind, data, _) = element(&inflated, 0)?;
                (kind, data)
            } else {
                (kind, data)
            };
            if kind != MI_MATRIX {
                continue;
            }
            let matrix = Matrix::parse(data)?;
            if matrix.name == name {
                return matrix.struct_elements();
            }
        }
        Err(format!("no variable {name:?}"))
    }

    /// `(type, data, offset of the next element)` of the element at `offset`.
    fn element(bytes: &[u8], offset: usize) -> Result<(u32, &[u8], usize), String> {
        let word = |at: usize| -> Result<u32, String> {
            bytes
                .get(at..at + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| format!("element tag at offset {at} runs past the end"))
        };
        let first = word(offset)?;
        if first >> 16 != 0 {
            // Small data element: type and size share the first word, data the second.
            let (kind, size) = (first & 0xffff, (first >> 16) as usize);
            let data = bytes.get(offset + 4..offset + 4 + size).ok_or("small element past the end")?;
            return Ok((kind, data, offset + 8));
        }
        let size = word(offset + 4)? as usize;
        let start = offset + 8;
        let data = bytes
            .get(start..start + size)
            .ok_or_else(|| format!("element at offset {offset} claims {size} bytes, past the end"))?;
        let padded = if first == MI_COMPRESSED { size } else { size.div_ceil(8) * 8 };
        Ok((first, data, start + padded))
    }

    struct Matrix<'a> {
        class: u8,
        dims: Vec<usize>,
        name: String,
        rest: &'a [u8],
    }

    impl<'a> Matrix<'a> {
        fn parse(data: &'a [u8]) -> Result<Self, String> {
            if data.is_empty() {
                return Ok(Matrix { class: 0, dims: vec![0, 0], name: String::new(), rest: data });
            }
            let (_, flags, next) = element(data, 0)?;
            let class = *flags.first().ok_or("empty array flags")?;
            let (_, dims, next) = element(data, next)?;
            let dims =
                dims.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]).max(0) as usize).collect();
            let (_, name, next) = element(data, next)?;
            // The name's padding may run past the end of a corrupt matrix: then nothing follows it.
            let rest = data.get(next..).unwrap_or(&[]);
            Ok(Matrix { class, dims, name: String::from_utf8_lossy(name).into_owned(), rest })
        }

        /// The number of elements; `usize::MAX` for dimensions whose product overflows, which
        /// then fails on the first element past the end of the data.
        fn count(&self) -> usize {
            self.dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).unwrap_or(usize::MAX)
        }

        fn struct_elements(&self) -> Result<Vec<HashMap<String, Value>>, String> {
            if self.class != MX_STRUCT {
                return Err(format!("variable {:?} is not a struct array", self.name));
            }
            let (_, length, next) = element(self.rest, 0)?;
            let field_len = length
                .get(..4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .ok_or("bad field name length")?;
            let (_, names, mut offset) = element(self.rest, next)?;
            if field_len == 0 {
                return Err("field name length 0".to_owned());
            }
            if names.is_empty() {
                // Without fields no element consumes data, so a corrupt count would never end.
                return Err(format!("struct array {:?} has no fields", self.name));
            }
            let fields: Vec<String> = names
                .chunks(field_len)
                .map(|n| String::from_utf8_lossy(n.split(|&b| b == 0).next().unwrap_or(&[])).into_owned())
                .collect();
            // The count comes from the file: do not let a corrupt one reserve memory up front.
            let mut elements = Vec::with_capacity(self.count().min(1 << 12));
            for _ in 0..self.count() {
                let mut element_fields = HashMap::new();
                for field in &fields {
                    let (kind, data, next) = element(self.rest, offset)?;
                    offset = next;
                    if kind != MI_MATRIX {
                        return Err(format!("field {field} is not a matrix element"));
                    }
                    element_fields.insert(field.clone(), Matrix::parse(data)?.value()?);
                }
                elements.push(element_fields);
            }
            Ok(elements)
        }

        fn value(&self) -> Result<Value, String> {
            if self.count() == 0 || matches!(self.class, MX_CELL | MX_STRUCT) || self.rest.is_empty() {
                return Ok(Value::Other);
            }
            let (kind, data, _) = element(self.rest, 0)?;
            if self.class == MX_CHAR {
                let text = match kind {
                    MI_UINT16 => String::from_utf16_lossy(
                        &data.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect::<Vec<_>>(),
                    ),
                    MI_UINT8 | MI_UTF8 | MI_INT8 => String::from_utf8_lossy(data).into_owned(),
                    other => return Err(format!("char data of type {other}")),
                };
                return Ok(Value::Text(text));
            }
            let le = |n: usize| -> Option<&[u8]> { data.get(..n) };
            let number = match kind {
                MI_DOUBLE => le(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())),
                MI_SINGLE => le(4).map(|b| f64::from(f32::from_le_bytes(b.try_into().unwrap()))),
                MI_INT8 => le(1).map(|b| f64::from(b[0] as i8)),
                MI_UINT8 => le(1).map(|b| f64::from(b[0])),
                MI_INT16 => le(2).map(|b| f64::from(i16::from_le_bytes([b[0], b[1]]))),
                MI_UINT16 => le(2).map(|b| f64::from(u16::from_le_bytes([b[0], b[1]]))),
                MI_INT32 => le(4).map(|b| f64::from(i32::from_le_bytes(b.try_into().unwrap()))),
                MI_UINT32 => le(4).map(|b| f64::from(u32::from_le_bytes(b.try_into().unwrap()))),
                MI_INT64 => le(8).map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f64),
                MI_UINT64 => le(8).map(|b| u64::from_le_bytes(b.try_into().unwrap()) as f64),
                _ => None,
            };
            Ok(number.map_or(Value::Other, Value::Number))
        }
    }

    /// Writes a MAT 5 file holding one struct array `name` (N x 1) with a numeric and a char
    /// field per element, optionally zlib-compressed; fixtures use it.
    pub fn write_struct_array(
        name: &str,
        number_field: &str,
        text_field: &str,
        rows: &[(f64, &str)],
        compress: bool,
    ) -> Vec<u8> {
        fn tagged(kind: u32, data: &[u8]) -> Vec<u8> {
            let mut out = kind.to_le_bytes().to_vec();
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(8) * 8, 0);
            out
        }
        fn matrix(class: u8, dims: [i32; 2], name: &str, body: &[u8]) -> Vec<u8> {
            let mut data = tagged(MI_UINT32, &[class, 0, 0, 0, 0, 0, 0, 0]);
            data.extend(tagged(MI_INT32, &[dims[0].to_le_bytes(), dims[1].to_le_bytes()].concat()));
            data.extend(tagged(MI_INT8, name.as_bytes()));
            data.extend_from_slice(body);
            tagged(MI_MATRIX, &data)
        }
        let mut body = tagged(MI_INT32, &32u32.to_le_bytes());
        let mut names = vec![0u8; 64];
        names[..number_field.len()].copy_from_slice(number_field.as_bytes());
        names[32..32 + text_field.len()].copy_from_slice(text_field.as_bytes());
        body.extend(tagged(MI_INT8, &names));
        for (number, text) in rows {
            body.extend(matrix(6, [1, 1], "", &tagged(MI_DOUBLE, &number.to_le_bytes())));
            let utf16: Vec<u8> = text.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
            body.extend(matrix(MX_CHAR, [1, text.len() as i32], "", &tagged(MI_UINT16, &utf16)));
        }
        let variable = matrix(MX_STRUCT, [rows.len() as i32, 1], name, &body);
        let mut file = b"MATLAB 5.0 MAT-file, written by itra-data fixtures".to_vec();
        file.resize(116, b' ');
        file.extend_from_slice(&[0; 8]);
        file.extend_from_slice(&0x0100u16.to_le_bytes());
        file.extend_from_slice(b"IM");
        if compress {
            use std::io::Write;
            let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(&variable).unwrap();
            let compressed = encoder.finish().unwrap();
            file.extend_from_slice(&MI_COMPRESSED.to_le_bytes());
            file.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
            file.extend_from_slice(&compressed);
        } else {
            file.extend_from_slice(&variable);
        }
        file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, bytes) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, &bytes[..]).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn mat5_struct_arrays_round_trip() {
        let rows = [(1.0, "n02119789"), (2.0, "n02100735"), (1001.0, "n00001740")];
        for compress in [false, true] {
            let file = mat5::write_struct_array("synsets", "ILSVRC2012_ID", "WNID", &rows, compress);
            let synsets = mat5::read_struct_array(&file, "synsets").unwrap();
            assert_eq!(synsets.len(), 3);
            assert_eq!(synsets[1]["ILSVRC2012_ID"], mat5::Value::Number(2.0));
            assert_eq!(synsets[2]["WNID"], mat5::Value::Text("n00001740".into()));
            assert!(mat5::read_struct_array(&file, "other").is_err());
            assert!(mat5::read_struct_array(&file[..200.min(file.len() - 1)], "synsets").is_err());
        }
    }

    #[test]
    fn mat5_matrix_cut_inside_its_name_padding_is_an_error() {
        // Found by `cargo fuzz run meta_mat`: a matrix whose size ends inside the padding of its
        // 7-byte name ("synsets") used to slice past its end.
        let mut file = mat5::write_struct_array("synsets", "ILSVRC2012_ID", "WNID", &[(1.0, "n01")], false);
        let cut = 16 + 16 + 8 + 7;
        file[132..136].copy_from_slice(&(cut as u32).to_le_bytes());
        file.truncate(128 + 8 + cut);
        let err = mat5::read_struct_array(&file, "synsets").unwrap_err();
        assert!(err.contains("past the end"), "{err}");
    }

    #[test]
    fn prepare_builds_the_image_folder_layout() {
        let dir = tempfile::tempdir().unwrap();
        // ILSVRC2012 ids are not in wnid order: id 1 is n02, id 2 is n01.
        let meta = mat5::write_struct_array(
            "synsets",
            "ILSVRC2012_ID",
            "WNID",
            &[(1.0, "n02"), (2.0, "n01"), (1001.0, "n99")],
            true,
        );
        let devkit = tar_of(&[
            ("ILSVRC2012_devkit_t12/data/meta.mat", meta),
            ("ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt", b"2\n1\n2\n".to_vec()),
        ]);
        std::fs::write(dir.path().join(DEVKIT), gzip(&devkit)).unwrap();
        let train = tar_of(&[
            ("n01.tar", tar_of(&[("n01_1.JPEG", b"a".to_vec()), ("n01_2.JPEG", b"b".to_vec())])),
            ("n02.tar", tar_of(&[("n02_1.JPEG", b"c".to_vec())])),
        ]);
        std::fs::write(dir.path().join(TRAIN_TAR), train).unwrap();
        let val = tar_of(&[
            ("ILSVRC2012_val_00000001.JPEG", b"v1".to_vec()),
            ("ILSVRC2012_val_00000002.JPEG", b"v2".to_vec()),
            ("ILSVRC2012_val_00000003.JPEG", b"v3".to_vec()),
        ]);
        std::fs::write(dir.path().join(VAL_TAR), &val).unwrap();

        let report = prepare(dir.path()).unwrap();
        assert_eq!(report, PrepareReport { classes: 2, train_images: 3, val_images: 3 });
        let read = |rel: &str| std::fs::read(dir.path().join(rel)).unwrap();
        assert_eq!(read("train/n01/n01_2.JPEG"), b"b");
        assert_eq!(read("train/n02/n02_1.JPEG"), b"c");
        assert_eq!(read("val/n01/ILSVRC2012_val_00000001.JPEG"), b"v1");
        assert_eq!(read("val/n02/ILSVRC2012_val_00000002.JPEG"), b"v2");
        assert_eq!(read("val/n01/ILSVRC2012_val_00000003.JPEG"), b"v3");
        assert!(!dir.path().join(".prepare-staging").exists());

        // A validation image without a ground-truth line fails and leaves the earlier result alone.
        let val = tar_of(&[("ILSVRC2012_val_00000009.JPEG", b"v9".to_vec())]);
        std::fs::write(dir.path().join(VAL_TAR), val).unwrap();
        let err = prepare(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("ILSVRC2012_val_00000009.JPEG has no line in the ground truth (3 lines)"),
            "{err}"
        );
        assert!(!dir.path().join(".prepare-staging").exists());
        assert_eq!(read("val/n02/ILSVRC2012_val_00000002.JPEG"), b"v2");
    }

    #[test]
    fn missing_archives_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        let err = prepare(dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("imagenet source split not found: missing {TRAIN_TAR}, {VAL_TAR}, {DEVKIT} in ")),
            "{err}"
        );
    }
}
