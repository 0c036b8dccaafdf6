use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while locating, parsing, downloading or verifying a dataset.
///
/// Each variant names the file it is about and, where it applies, the byte offset or record
/// and what was expected there.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: bad magic number {found:#010x} at offset {offset}, expected {expected:#010x}", path.display())]
    BadMagic { path: PathBuf, offset: u64, found: u32, expected: u32 },
    #[error("{}: bad header at offset {offset}: {message}", path.display())]
    BadHeader { path: PathBuf, offset: u64, message: String },
    #[error("{}: truncated payload: expected {expected} bytes after the header, got {actual}", path.display())]
    Truncated { path: PathBuf, expected: u64, actual: u64 },
    #[error("{}: trailing data: expected {expected} bytes after the header, got more", path.display())]
    TrailingData { path: PathBuf, expected: u64 },
    #[error("{}: length {actual} bytes is not a whole number of {record_len}-byte records", path.display())]
    RecordLength { path: PathBuf, actual: u64, record_len: u64 },
    #[error("{}: record {record}: label {label} out of range, expected {min}..={max}", path.display())]
    LabelOutOfRange { path: PathBuf, record: u64, label: i64, min: i64, max: i64 },
    #[error("{} holds {images} images but {} holds {labels} labels", images_path.display(), labels_path.display())]
    CountMismatch { images_path: PathBuf, images: u64, labels_path: PathBuf, labels: u64 },
    #[error("{}: image shape {found:?} does not match {expected:?}", path.display())]
    ShapeMismatch { path: PathBuf, found: [usize; 3], expected: [usize; 3] },
    #[error("{}: record {record}: {message}", path.display())]
    MalformedRecord { path: PathBuf, record: u64, message: String },
    #[error("{}: cannot decode image: {message}", path.display())]
    Image { path: PathBuf, message: String },
    #[error("{id} {split} split not found: missing {} in {}; {hint}", join_display(missing), join_display(searched))]
    Missing { id: String, split: String, missing: Vec<String>, searched: Vec<PathBuf>, hint: String },
    #[error("unknown dataset {id:?}, expected one of {known}")]
    UnknownDataset { id: String, known: String },
    #[error("{id} is not {expected} dataset")]
    WrongModality { id: String, expected: &'static str },
    #[error("{id} cannot be downloaded automatically: {instructions}")]
    ManualDownload { id: String, instructions: String },
    #[error("{}: {algorithm} checksum mismatch: expected {expected}, got {actual}", path.display())]
    Checksum { path: PathBuf, algorithm: &'static str, expected: String, actual: String },
    #[error("{}: size mismatch: expected {expected} bytes, got {actual}", path.display())]
    Size { path: PathBuf, expected: u64, actual: u64 },
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("{}: refusing entry {entry:?}: {reason}", archive.display())]
    UnsafeArchiveEntry { archive: PathBuf, entry: String, reason: String },
    #[error("{}: no digest to verify it against: {reason}", path.display())]
    NoDigest { path: PathBuf, reason: String },
    #[error("{url}: malformed hub metadata: {message}")]
    HubMetadata { url: String, message: String },
    #[error("{name}: the pinned {algorithm} {pinned} disagrees with the hub metadata at {url}, which states {stated}")]
    DigestConflict { name: String, algorithm: &'static str, pinned: String, stated: String, url: String },
    #[error("{}: malformed digest manifest: {message}", path.display())]
    Manifest { path: PathBuf, message: String },
    #[error("offline: {} missing: {}", plural(missing.len(), "file"), join_display(missing))]
    Offline { missing: Vec<String> },
    #[error("example {index} requested of a dataset of {len}")]
    IndexOutOfRange { index: usize, len: usize },
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

fn join_display<T: DisplayPath>(items: &[T]) -> String {
    items.iter().map(DisplayPath::shown).collect::<Vec<_>>().join(", ")
}

trait DisplayPath {
    fn shown(&self) -> String;
}

impl DisplayPath for PathBuf {
    fn shown(&self) -> String {
        self.display().to_string()
    }
}

impl DisplayPath for String {
    fn shown(&self) -> String {
        self.clone()
    }
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        DataError::Io { path: path.into(), source }
    }
}
