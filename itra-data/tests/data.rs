//! Real-data checks against the files CI installs: Fashion-MNIST from Debian's
//! `dataset-fashion-mnist` package and the AG News test split under `../shared/data/`.
//! These fail, rather than skip, when the files are absent.

use std::io::Read;
use std::path::Path;

use itra_data::{Split, registry};
use sha2::{Digest, Sha256};

/// SHA-256 of the decompressed Fashion-MNIST files. Computed once from Debian's
/// `dataset-fashion-mnist` 0.0~git20200523.55506a9-1; Debian re-gzipped the files (the `.gz` md5s
/// differ from the canonical ones pinned by torchvision), but the decompressed bytes are the
/// canonical payloads.
const FMNIST_PAYLOAD_SHA256: [(&str, &str); 4] = [
    ("train-images-idx3-ubyte.gz", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    ("train-labels-idx1-ubyte.gz", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    ("t10k-images-idx3-ubyte.gz", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    ("t10k-labels-idx1-ubyte.gz", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
];

fn require_debian_fmnist() -> &'static Path {
    let dir = Path::new(registry::DEBIAN_FMNIST_DIR);
    for (name, _) in FMNIST_PAYLOAD_SHA256 {
        assert!(
            dir.join(name).is_file(),
            "{} is missing: install Debian's Fashion-MNIST with `apt-get install -y dataset-fashion-mnist`",
            dir.join(name).display()
        );
    }
    dir
}

#[test]
fn debian_fmnist_payloads_match_pinned_sha256() {
    let dir = require_debian_fmnist();
    for (name, expected) in FMNIST_PAYLOAD_SHA256 {
        let path = dir.join(name);
        let mut payload = Vec::new();
        flate2::read::MultiGzDecoder::new(std::fs::File::open(&path).unwrap())
            .read_to_end(&mut payload)
            .unwrap();
        let actual = format!("{:x}", Sha256::digest(&payload));
        assert_eq!(actual, expected, "sha256 of decompressed {}", path.display());
    }
}

#[test]
fn debian_fmnist_loads_with_balanced_classes() {
    require_debian_fmnist();
    // An empty data dir makes the loader fall back to the Debian copy.
    let empty = tempfile::tempdir().unwrap();
    for (split, examples) in [(Split::Train, 60_000), (Split::Test, 10_000)] {
        let data = itra_data::load_image_dataset("fmnist", empty.path(), split).unwrap();
        assert_eq!(data.len(), examples);
        assert_eq!((data.channels, data.height, data.width), (1, 28, 28));
        assert_eq!(data.images.len(), examples * 28 * 28);
        assert_eq!(data.class_counts(), vec![examples / 10; 10]);
        assert_eq!(data.class_names[9], "Ankle boot");
        // python: b = gzip.open(f).read()[16:]; sum(b) / len(b)
        //   train 72.94035223214286, test 73.14656658163265
        let expected_mean = match split {
            Split::Train => 72.940_352,
            Split::Test => 73.146_567,
        };
        assert!((data.pixel_mean() - expected_mean).abs() < 1e-5, "{}", data.pixel_mean());
    }
}
