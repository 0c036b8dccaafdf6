//! Real-data checks against the files CI installs: Fashion-MNIST from Debian's
//! `dataset-fashion-mnist` package and the AG News test split that `$ITRA_AG_NEWS_TEST` names.
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
        flate2::read::MultiGzDecoder::new(std::fs::File::open(&path).unwrap()).read_to_end(&mut payload).unwrap();
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

/// The folder of the AG News test split that `$ITRA_AG_NEWS_TEST` names (CI exports it; the test
/// fails, not skips, without it).
fn shared_ag_news() -> std::path::PathBuf {
    let csv = std::env::var_os("ITRA_AG_NEWS_TEST").expect("ITRA_AG_NEWS_TEST names AG News' test.csv");
    Path::new(&csv).parent().expect("a file path has a parent").to_owned()
}

#[test]
fn shared_ag_news_test_split_has_1900_per_class() {
    let dir = shared_ag_news();
    let path = dir.join("test.csv");
    assert!(path.is_file(), "{} is missing: ITRA_AG_NEWS_TEST must name AG News' test.csv", path.display());
    let md5 = itra_data::file_digest(&path, registry::Checksum::Md5("")).unwrap();
    assert_eq!(md5, "d52ea96a97a2d943681189a97654912d", "md5 of {} (torchtext's AG_NEWS test md5)", path.display());
    let data = itra_data::text::load_dir(&dir, Split::Test, 2, registry::AG_NEWS_CLASSES).unwrap();
    assert_eq!(data.len(), 7600);
    assert_eq!(data.class_counts(), vec![1900; 4]);
    // The first row of test.csv, class 3 (Business).
    assert_eq!(data.labels[0], 2);
    assert!(
        data.texts[0].starts_with("Fears for T N pension after talks Unions representing workers"),
        "{}",
        data.texts[0]
    );
    assert!(data.texts.iter().all(|t| !t.contains("\\n")), "escaped newlines are unescaped");
}

/// A one-request-per-connection HTTP/1.1 server on 127.0.0.1 that serves fixed files, honours
/// `Range: bytes=N-` and can be told to fail.
mod server {
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    pub struct Route {
        pub body: Vec<u8>,
        /// Answer the first `fail_first` requests with HTTP 503.
        pub fail_first: usize,
        /// On the first full (non-range) request, send only this many body bytes, then hang up.
        pub cut_first_at: Option<usize>,
        /// Ignore `Range` headers.
        pub no_ranges: bool,
        /// On every request, send the body only up to this byte of the file, then hang up.
        pub cut_all_at: Option<usize>,
        /// Send no `Content-Length` (the body ends when the connection closes).
        pub omit_length: bool,
    }

    #[derive(Default)]
    struct State {
        routes: HashMap<String, Route>,
        /// `(path, range header)` of every request, in order.
        log: Vec<(String, Option<String>)>,
    }

    pub struct Server {
        pub base: String,
        state: Arc<Mutex<State>>,
    }

    impl Server {
        pub fn start(routes: Vec<(&str, Route)>) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let state = Arc::new(Mutex::new(State {
                routes: routes.into_iter().map(|(p, r)| (p.to_owned(), r)).collect(),
                log: Vec::new(),
            }));
            let shared = Arc::clone(&state);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(mut stream) = stream else { continue };
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).is_err() {
                        continue;
                    }
                    let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let mut range = None;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':')
                            && name.eq_ignore_ascii_case("range")
                        {
                            range = Some(value.trim().to_owned());
                        }
                    }
                    let mut state = shared.lock().unwrap();
                    state.log.push((path.clone(), range.clone()));
                    let Some(route) = state.routes.get_mut(&path) else {
                        let _ = stream
                            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                        continue;
                    };
                    if route.fail_first > 0 {
                        route.fail_first -= 1;
                        let _ = stream.write_all(
                            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                        continue;
                    }
                    let body = route.body.clone();
                    let (cut_all_at, omit_length) = (route.cut_all_at, route.omit_length);
                    let start = range
                        .filter(|_| !route.no_ranges)
                        .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse::<usize>().ok());
                    let response = match start {
                        Some(start) if start >= body.len() => {
                            format!("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", body.len()).into_bytes()
                        }
                        Some(start) => {
                            let length = if omit_length { String::new() } else { format!("Content-Length: {}\r\n", body.len() - start) };
                            let mut head = format!(
                                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{}\r\n{length}Connection: close\r\n\r\n",
                                body.len() - 1,
                                body.len(),
                            )
                            .into_bytes();
                            let end = cut_all_at.map_or(body.len(), |cut| cut.max(start));
                            head.extend_from_slice(&body[start..end]);
                            head
                        }
                        None => {
                            let length = if omit_length { String::new() } else { format!("Content-Length: {}\r\n", body.len()) };
                            let mut head = format!("HTTP/1.1 200 OK\r\n{length}Connection: close\r\n\r\n").into_bytes();
                            match route.cut_first_at.take().or(cut_all_at) {
                                Some(cut) => head.extend_from_slice(&body[..cut]),
                                None => head.extend_from_slice(&body),
                            }
                            head
                        }
                    };
                    drop(state);
                    let _ = stream.write_all(&response);
                    let _ = stream.flush();
                }
            });
            Server { base, state }
        }

        pub fn url(&self, path: &str) -> String {
            format!("{}{path}", self.base)
        }

        pub fn log(&self) -> Vec<(String, Option<String>)> {
            self.state.lock().unwrap().log.clone()
        }

        /// Replaces (or adds) the route at `path`.
        pub fn set_route(&self, path: &str, route: Route) {
            self.state.lock().unwrap().routes.insert(path.to_owned(), route);
        }
    }
}

mod fixtures {
    use std::io::Write;

    use itra_data::registry::{Checksum, DatasetSpec, Format, Modality, RemoteFile, SplitSpec};
    use itra_data::{Split, idx};
    use md5::{Digest, Md5};

    pub fn leak<T>(value: T) -> &'static T {
        Box::leak(Box::new(value))
    }

    pub fn leak_str(value: String) -> &'static str {
        Box::leak(value.into_boxed_str())
    }

    pub fn md5_hex(bytes: &[u8]) -> &'static str {
        leak_str(Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// Four KMNIST-format IDX files (gzip), 20 train and 10 test 28x28 images, keyed by name.
    pub fn mnist_files() -> Vec<(&'static str, Vec<u8>)> {
        let images = |n: usize| (0..n * 784).map(|i| (i * 31 % 256) as u8).collect::<Vec<_>>();
        let labels = |n: usize| (0..n).map(|i| (i % 10) as u8).collect::<Vec<_>>();
        vec![
            ("train-images-idx3-ubyte.gz", gzip(&idx::encode_images(28, 28, &images(20)))),
            ("train-labels-idx1-ubyte.gz", gzip(&idx::encode_labels(&labels(20)))),
            ("t10k-images-idx3-ubyte.gz", gzip(&idx::encode_images(28, 28, &images(10)))),
            ("t10k-labels-idx1-ubyte.gz", gzip(&idx::encode_labels(&labels(10)))),
        ]
    }

    /// A spec like a registered one, whose files live at `urls(name)`.
    pub fn spec(
        id: &'static str,
        format: Format,
        subdir: &'static str,
        files: Vec<(&'static str, &[u8], Vec<String>, bool)>,
    ) -> &'static DatasetSpec {
        let files: Vec<RemoteFile> = files
            .into_iter()
            .map(|(name, bytes, urls, extract)| RemoteFile {
                name,
                urls: Box::leak(urls.into_iter().map(leak_str).collect::<Vec<_>>().into_boxed_slice()),
                size: Some(bytes.len() as u64),
                checksum: Checksum::Md5(md5_hex(bytes)),
                source: "generated by the test",
                extract,
                payload_sha256: None,
            })
            .collect();
        leak(DatasetSpec {
            id,
            title: id,
            homepage: "",
            format,
            modality: Modality::Image { shape: [1, 28, 28] },
            class_names: itra_data::registry::KMNIST_CLASSES,
            num_classes: 10,
            splits: &[SplitSpec { split: Split::Train, examples: 20 }, SplitSpec { split: Split::Test, examples: 10 }],
            subdir,
            files: Box::leak(files.into_boxed_slice()),
            downloadable: true,
            local_copies: &[],
            manual: "",
        })
    }
}

fn quiet() -> itra_data::DownloadOptions {
    itra_data::DownloadOptions {
        retries: 2,
        backoff: std::time::Duration::from_millis(5),
        timeout: std::time::Duration::from_secs(10),
        progress: false,
        proxy_from_env: false,
        ..itra_data::DownloadOptions::default()
    }
}

#[test]
fn download_retries_resumes_verifies_and_loads() {
    use itra_data::download::{FileSource, download_spec};
    use itra_data::registry::Format;
    use server::{Route, Server};

    let files = fixtures::mnist_files();
    let train_images = &files[0].1;
    let server = Server::start(
        files
            .iter()
            .enumerate()
            .map(|(i, (name, body))| {
                let route = Route {
                    body: body.clone(),
                    // The first file fails twice with 503, the second is cut mid-body once.
                    fail_first: if i == 0 { 2 } else { 0 },
                    cut_first_at: (i == 1).then_some(body.len() / 2),
                    ..Route::default()
                };
                (fixtures::leak_str(format!("/kmnist/{name}")), route)
            })
            .collect(),
    );
    let spec = fixtures::spec(
        "kmnist",
        Format::Idx,
        "",
        files
            .iter()
            .map(|(name, body)| (*name, &body[..], vec![server.url(&format!("/kmnist/{name}"))], false))
            .collect(),
    );
    let data = tempfile::tempdir().unwrap();
    // A previous run was killed a third of the way into the test images.
    let kmnist_dir = data.path().join("kmnist");
    std::fs::create_dir_all(&kmnist_dir).unwrap();
    let test_images = &files[2].1;
    std::fs::write(kmnist_dir.join("t10k-images-idx3-ubyte.gz.part"), &test_images[..test_images.len() / 3]).unwrap();

    let report = download_spec(spec, data.path(), &quiet()).unwrap();
    assert!(report.files.iter().all(|f| matches!(f.source, FileSource::Downloaded { .. })), "{report:?}");
    assert_eq!(std::fs::read(kmnist_dir.join("train-images-idx3-ubyte.gz")).unwrap(), *train_images);
    let log = server.log();
    let requests = |name: &str| log.iter().filter(|(p, _)| p.ends_with(name)).cloned().collect::<Vec<_>>();
    assert_eq!(requests("train-images-idx3-ubyte.gz").len(), 3, "two 503s, then success");
    let labels = requests("train-labels-idx1-ubyte.gz");
    let half = files[1].1.len() / 2;
    assert_eq!(
        labels,
        vec![
            ("/kmnist/train-labels-idx1-ubyte.gz".to_owned(), None),
            ("/kmnist/train-labels-idx1-ubyte.gz".to_owned(), Some(format!("bytes={half}-"))),
        ],
        "the cut download resumes where it stopped"
    );
    assert_eq!(requests("t10k-images-idx3-ubyte.gz")[0].1, Some(format!("bytes={}-", test_images.len() / 3)));
    assert!(
        std::fs::read_dir(&kmnist_dir).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".part"))
    );

    let test = itra_data::idx::load_dir(&kmnist_dir, Split::Test, [1, 28, 28], registry::KMNIST_CLASSES).unwrap();
    assert_eq!(test.len(), 10);

    // A second run finds everything in place and fetches nothing.
    let before = server.log().len();
    let again = download_spec(spec, data.path(), &quiet()).unwrap();
    assert!(again.files.iter().all(|f| f.source == FileSource::AlreadyPresent));
    assert_eq!(server.log().len(), before);
}

#[test]
fn checksum_mismatch_leaves_nothing_behind() {
    use itra_data::download::download_spec;
    use itra_data::registry::Format;
    use server::{Route, Server};

    let good = fixtures::gzip(&itra_data::idx::encode_labels(&[1, 2, 3]));
    let mut corrupt = good.clone();
    corrupt[12] ^= 0x55;
    let server = Server::start(vec![("/f.gz", Route { body: corrupt.clone(), ..Route::default() })]);
    let spec = fixtures::spec("broken", Format::Idx, "", vec![("f.gz", &good[..], vec![server.url("/f.gz")], false)]);
    let data = tempfile::tempdir().unwrap();
    let err = download_spec(spec, data.path(), &quiet()).unwrap_err();
    let path = data.path().join("broken/f.gz.part");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: md5 checksum mismatch: expected {}, got {}",
            path.display(),
            fixtures::md5_hex(&good),
            fixtures::md5_hex(&corrupt)
        )
    );
    assert_eq!(std::fs::read_dir(data.path().join("broken")).unwrap().count(), 0, "no .part and no file left");
}

#[test]
fn mirror_is_tried_first_and_falls_back_to_registered_urls() {
    use itra_data::download::{FileSource, download_spec};
    use itra_data::registry::Format;
    use server::{Route, Server};

    let body = b"payload".to_vec();
    let server = Server::start(vec![
        ("/mirror/m1/a.bin", Route { body: body.clone(), ..Route::default() }),
        ("/origin/b.bin", Route { body: body.clone(), no_ranges: true, ..Route::default() }),
    ]);
    let spec = fixtures::spec(
        "m1",
        Format::Cifar10,
        "",
        vec![
            ("a.bin", &body[..], vec![server.url("/origin/a.bin")], false),
            ("b.bin", &body[..], vec![server.url("/origin/b.bin")], false),
        ],
    );
    let data = tempfile::tempdir().unwrap();
    let options = itra_data::DownloadOptions { mirror: Some(server.url("/mirror/")), ..quiet() };
    let report = download_spec(spec, data.path(), &options).unwrap();
    assert_eq!(report.files[0].source, FileSource::Downloaded { url: server.url("/mirror/m1/a.bin") });
    assert_eq!(report.files[1].source, FileSource::Downloaded { url: server.url("/origin/b.bin") });
    let paths: Vec<_> = server.log().into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["/mirror/m1/a.bin", "/mirror/m1/b.bin", "/origin/b.bin"]);

    let offline = itra_data::DownloadOptions { offline: true, ..quiet() };
    let empty = tempfile::tempdir().unwrap();
    let err = download_spec(spec, empty.path(), &offline).unwrap_err();
    assert!(err.to_string().starts_with("offline: 2 files missing: "), "{err}");
    assert_eq!(server.log().len(), 3, "offline mode sends no request");
}

#[test]
fn archives_extract_into_the_official_layout_and_traversal_is_refused() {
    use itra_data::download::{download_spec, extract_archive};
    use itra_data::registry::Format;
    use server::{Route, Server};

    // A CIFAR-10-binary-shaped archive: cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin.
    let record = itra_data::cifar::encode_record(&[7], &[9; itra_data::cifar::IMAGE_BYTES]);
    let mut builder = tar::Builder::new(Vec::new());
    for name in [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
        "batches.meta.txt",
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(record.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, format!("cifar-10-batches-bin/{name}"), &record[..]).unwrap();
    }
    let archive = fixtures::gzip(&builder.into_inner().unwrap());
    let server = Server::start(vec![("/c.tar.gz", Route { body: archive.clone(), ..Route::default() })]);
    let spec = fixtures::spec(
        "cifar10",
        Format::Cifar10,
        "cifar-10-batches-bin",
        vec![("cifar-10-binary.tar.gz", &archive[..], vec![server.url("/c.tar.gz")], true)],
    );
    let data = tempfile::tempdir().unwrap();
    download_spec(spec, data.path(), &quiet()).unwrap();
    let train = itra_data::load_image_dataset("cifar10", data.path(), Split::Train).unwrap();
    assert_eq!((train.len(), train.labels[4]), (5, 7));

    // Before: `verify` checked the archive only, so a damaged unpacked file (what the loader
    // reads) still came out "verified". Now each unpacked file is checked against the SHA-256
    // recorded when the verified archive was unpacked.
    let checks = itra_data::verify_spec(spec, data.path()).unwrap();
    let shown: Vec<_> = checks.iter().map(|c| format!("{} {}", c.name, c.state)).collect();
    assert_eq!(shown[0], "cifar-10-binary.tar.gz verified (md5)");
    assert_eq!(shown[1], "cifar-10-batches-bin/data_batch_1.bin verified (sha256)");
    assert_eq!(shown.len(), 7, "{shown:?}");
    assert!(itra_data::status(spec, data.path()).is_ready(), "the fetch recorded every digest");
    let batch = data.path().join("cifar10/cifar-10-batches-bin/test_batch.bin");
    let mut bytes = std::fs::read(&batch).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&batch, &bytes).unwrap();
    // `list` trusts a recorded digest while size and modification time are unchanged; an edit
    // within the filesystem's timestamp tick of the fetch would look unchanged, so give this one
    // a distinct time.
    set_modified(&batch, 1_000_000);
    let status = itra_data::status(spec, data.path());
    assert!(status.is_present() && !status.is_ready(), "a changed file is not ready until checked: {status:?}");
    let checks = itra_data::verify_spec(spec, data.path()).unwrap();
    let damaged = checks.iter().find(|c| c.path == batch).unwrap();
    assert!(damaged.state.to_string().starts_with("corrupt (sha256 mismatch: expected "), "{damaged:?}");
    // `fetch` unpacks the verified archive again rather than call the damage "already extracted".
    let requests = server.log().len();
    let report = download_spec(spec, data.path(), &quiet()).unwrap();
    assert_eq!(report.files[0].source, itra_data::download::FileSource::AlreadyPresent);
    assert_eq!(server.log().len(), requests, "the archive in place is reused");
    assert!(itra_data::all_verified(&itra_data::verify_spec(spec, data.path()).unwrap()));
    std::fs::write(&batch, &bytes).unwrap();
    set_modified(&batch, 2_000_000);
    // Once unpacked, the archive may go: the unpacked files are what is checked.
    std::fs::remove_file(data.path().join("cifar10/cifar-10-binary.tar.gz")).unwrap();
    let checks = itra_data::verify_spec(spec, data.path()).unwrap();
    assert_eq!(checks.len(), 6);
    assert_eq!(checks.iter().filter(|c| c.is_ok()).count(), 5);

    // Hand-written headers, since tar::Builder itself refuses these paths.
    for (evil, kind) in [
        ("../evil.txt", tar::EntryType::Regular),
        ("/tmp/evil.txt", tar::EntryType::Regular),
        ("link", tar::EntryType::Symlink),
    ] {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..evil.len()].copy_from_slice(evil.as_bytes());
        header.set_entry_type(kind);
        header.set_size(if kind == tar::EntryType::Regular { 4 } else { 0 });
        if kind == tar::EntryType::Symlink {
            header.set_link_name("../../etc/passwd").unwrap();
        }
        header.set_mode(0o644);
        header.set_cksum();
        let mut bytes = Vec::new();
        let mut ok = tar::Builder::new(&mut bytes);
        let mut good = tar::Header::new_gnu();
        good.set_size(2);
        good.set_cksum();
        ok.append_data(&mut good, "fine.txt", &b"ok"[..]).unwrap();
        ok.append(&header, &b"evil"[..header.size().unwrap() as usize]).unwrap();
        ok.finish().unwrap();
        drop(ok);
        let target = tempfile::tempdir().unwrap();
        let archive_path = target.path().join("evil.tar");
        std::fs::write(&archive_path, &bytes).unwrap();
        let out = target.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let err = extract_archive(&archive_path, &out).unwrap_err();
        assert!(matches!(err, itra_data::DataError::UnsafeArchiveEntry { .. }), "{evil}: {err}");
        assert!(err.to_string().contains(&format!("refusing entry {evil:?}")), "{err}");
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "{evil}: nothing extracted, staging removed");
        assert!(!target.path().join("evil.txt").exists());
    }
}

#[test]
fn debian_fmnist_counts_as_a_verified_source() {
    use itra_data::download::FileSource;

    require_debian_fmnist();
    let empty = tempfile::tempdir().unwrap();
    let checks = itra_data::verify("fmnist", empty.path()).unwrap();
    assert_eq!(checks.len(), 4);
    assert!(
        checks.iter().all(|c| c.state.to_string() == "verified (sha256 of the decompressed payload)"),
        "{checks:?}"
    );
    // Offline is enough: every file is satisfied by the Debian copy, so nothing is fetched.
    let options = itra_data::DownloadOptions { offline: true, progress: false, ..Default::default() };
    let report = itra_data::download("fmnist", empty.path(), &options).unwrap();
    assert!(report.files.iter().all(|f| matches!(f.source, FileSource::LocalCopy { .. })), "{report:?}");
    let status = itra_data::list(empty.path()).into_iter().find(|s| s.id == "fmnist").unwrap();
    assert!(status.is_ready(), "{status:?}");
}

/// Sets `path`'s modification time to `seconds` after the Unix epoch.
fn set_modified(path: &Path, seconds: u64) {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
    std::fs::File::options().write(true).open(path).unwrap().set_modified(time).unwrap();
}

#[test]
fn a_network_failure_keeps_the_part_file_and_the_next_run_resumes_it() {
    use itra_data::download::{FileSource, download_spec};
    use itra_data::registry::Format;
    use server::{Route, Server};

    // Before: every failure deleted `<dest>.part`, so an interrupted download started over.
    let body: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let half = body.len() / 2;
    let cut = Route { body: body.clone(), cut_all_at: Some(half), ..Route::default() };
    let server = Server::start(vec![("/big.bin", cut)]);
    let spec = fixtures::spec(
        "resume",
        Format::Cifar10,
        "",
        vec![("big.bin", &body[..], vec![server.url("/big.bin")], false)],
    );
    let data = tempfile::tempdir().unwrap();
    let err = download_spec(spec, data.path(), &quiet()).unwrap_err();
    assert!(matches!(err, itra_data::DataError::Http { .. }), "{err}");
    assert!(err.to_string().ends_with("(after 3 attempts)"), "{err}");
    let dest = data.path().join("resume/big.bin");
    let part = data.path().join("resume/big.bin.part");
    assert!(!dest.exists(), "nothing under the final name");
    assert_eq!(std::fs::read(&part).unwrap(), &body[..half], "the half that arrived is kept");

    server.set_route("/big.bin", Route { body: body.clone(), ..Route::default() });
    let before = server.log().len();
    let report = download_spec(spec, data.path(), &quiet()).unwrap();
    assert!(matches!(report.files[0].source, FileSource::Downloaded { .. }));
    assert_eq!(server.log()[before..], [("/big.bin".to_owned(), Some(format!("bytes={half}-")))]);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert!(!part.exists());
    assert!(itra_data::verify_spec(spec, data.path()).unwrap()[0].is_ok());
}

/// `config.json`, `model.safetensors` (one f32 tensor) and `tokenizer.json`, as an encoder's
/// files, with the Hub's listing of them (`model.safetensors` in LFS).
fn encoder_files() -> (Vec<(&'static str, Vec<u8>)>, String) {
    let header = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    let mut model = (header.len() as u64).to_le_bytes().to_vec();
    model.extend_from_slice(header);
    model.extend_from_slice(&[7u8; 8]);
    let files = vec![
        ("config.json", b"{\"hidden_size\": 4}".to_vec()),
        ("model.safetensors", model),
        ("tokenizer.json", b"{}".to_vec()),
    ];
    (files.clone(), tree_json(&files))
}

/// The Hub's `api/models/<repo>/tree/<revision>` answer for `files`: LFS (sha256) entries for
/// `.safetensors` files, Git blob ids for the rest.
fn tree_json(files: &[(&str, Vec<u8>)]) -> String {
    use sha1::Sha1;
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let entries: Vec<_> = files
        .iter()
        .map(|(name, body)| {
            let mut blob = format!("blob {}\0", body.len()).into_bytes();
            blob.extend_from_slice(body);
            let oid = hex(&Sha1::digest(&blob));
            if name.ends_with(".safetensors") {
                serde_json::json!({"type": "file", "oid": oid, "size": body.len(), "path": name,
                    "lfs": {"oid": hex(&Sha256::digest(body)), "size": body.len(), "pointerSize": 134}})
            } else {
                serde_json::json!({"type": "file", "oid": oid, "size": body.len(), "path": name})
            }
        })
        .collect();
    serde_json::to_string(&entries).unwrap()
}

/// A mirror serving `files` and `tree` under `/m/encoders/bert-base-uncased/`.
fn encoder_mirror(
    files: &[(&str, Vec<u8>)],
    tree: Option<&str>,
    route: impl Fn(&str) -> server::Route,
) -> server::Server {
    let mut routes: Vec<(&str, server::Route)> = files
        .iter()
        .map(|(name, body)| {
            (
                fixtures::leak_str(format!("/m/encoders/bert-base-uncased/{name}")),
                server::Route { body: body.clone(), ..route(name) },
            )
        })
        .collect();
    if let Some(tree) = tree {
        let body = tree.as_bytes().to_vec();
        routes.push(("/m/encoders/bert-base-uncased/tree.json", server::Route { body, ..server::Route::default() }));
    }
    server::Server::start(routes)
}

fn mirror_only(server: &server::Server) -> itra_data::DownloadOptions {
    itra_data::DownloadOptions { mirror: Some(server.url("/m")), mirror_only: true, ..quiet() }
}

#[test]
fn encoders_are_verified_against_the_hubs_listing() {
    use itra_data::download::FileSource;
    use itra_data::encoder::{encoder_dir, encoder_status, fetch_encoder, verify_encoder};

    // Before: encoder files were fetched with no digest at all and `verify` could only say
    // "content NOT verified". Now each is checked against the Hub's listing at download.
    let (files, tree) = encoder_files();
    let server = encoder_mirror(&files, Some(&tree), |_| server::Route::default());
    let data = tempfile::tempdir().unwrap();
    let options = mirror_only(&server);
    let report = fetch_encoder("bert-base-uncased", data.path(), None, &options).unwrap();
    let dir = encoder_dir(data.path(), "bert-base-uncased");
    assert_eq!(report.dir, dir);
    for (((name, body), fetched), check) in files.iter().zip(&report.files).zip(&report.checks) {
        assert_eq!(&std::fs::read(dir.join(name)).unwrap(), body);
        let url = server.url(&format!("/m/encoders/bert-base-uncased/{name}"));
        assert_eq!(fetched.source, FileSource::Downloaded { url });
        let algorithm = if name.ends_with(".safetensors") { "sha256" } else { "git blob sha1" };
        assert_eq!(check.state.to_string(), format!("verified ({algorithm})"), "{name}");
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("digests.json")).unwrap()).unwrap();
    let tree_url = server.url("/m/encoders/bert-base-uncased/tree.json");
    assert_eq!(manifest["files"][1]["name"], "model.safetensors");
    assert_eq!(manifest["files"][1]["algorithm"], "sha256");
    assert_eq!(manifest["files"][1]["source"], format!("hub-metadata {tree_url}"));
    assert_eq!(manifest["files"][0]["algorithm"], "git-blob-sha1");

    let spec = itra_data::registry::encoder("bert-base-uncased").unwrap();
    assert!(itra_data::all_verified(&encoder_status(spec, &dir, data.path()).unwrap()), "recorded by the fetch");
    assert!(itra_data::all_verified(&verify_encoder(spec, &dir, data.path()).unwrap()));
    // Present, verified files are not fetched again, and the listing is not needed.
    let again = fetch_encoder("bert-base-uncased", data.path(), None, &options).unwrap();
    assert!(again.files.iter().all(|f| f.source == FileSource::AlreadyPresent));
    assert_eq!(server.log().len(), 4, "the listing and three files");

    // The manifest lets `verify` catch a changed byte offline.
    std::fs::write(dir.join("config.json"), b"{\"hidden_size\": 5}").unwrap();
    let checks = verify_encoder(spec, &dir, data.path()).unwrap();
    assert!(checks[0].state.to_string().starts_with("corrupt (git blob sha1 mismatch: expected "), "{checks:?}");
    assert!(!itra_data::all_verified(&encoder_status(spec, &dir, data.path()).unwrap()));
}

#[test]
fn a_wrong_digest_in_the_listing_leaves_nothing_behind() {
    use itra_data::encoder::{encoder_dir, fetch_encoder, fetch_encoder_spec};
    use itra_data::registry::{EncoderFile, EncoderSpec, Pin};

    let (files, tree) = encoder_files();
    let model_sha256 = format!("{:x}", Sha256::digest(&files[1].1));
    let wrong = tree.replace(&model_sha256, &"0".repeat(64));
    let server = encoder_mirror(&files, Some(&wrong), |_| server::Route::default());
    let data = tempfile::tempdir().unwrap();
    let err = fetch_encoder("bert-base-uncased", data.path(), None, &mirror_only(&server)).unwrap_err();
    assert!(err.to_string().contains("model.safetensors.part: sha256 checksum mismatch: expected 0000"), "{err}");
    let dir = encoder_dir(data.path(), "bert-base-uncased");
    assert!(!dir.join("model.safetensors").exists());
    assert!(!dir.join("model.safetensors.part").exists());

    // A pin the listing contradicts is an error before any byte of the file is fetched.
    let pinned: &'static [EncoderFile] = fixtures::leak(vec![EncoderFile {
        name: "model.safetensors",
        pin: Some(Pin { sha256: fixtures::leak_str("1".repeat(64)), size: files[1].1.len() as u64 }),
    }]);
    let spec = EncoderSpec {
        files: pinned,
        pins_source: "the test",
        ..*itra_data::registry::encoder("bert-base-uncased").unwrap()
    };
    let server = encoder_mirror(&files, Some(&tree), |_| server::Route::default());
    let empty = tempfile::tempdir().unwrap();
    let err = fetch_encoder_spec(&spec, empty.path(), &[], &mirror_only(&server)).unwrap_err();
    assert!(matches!(err, itra_data::DataError::DigestConflict { .. }), "{err}");
    assert!(err.to_string().starts_with("model.safetensors: the pinned sha256 1111"), "{err}");
    let paths: Vec<_> = server.log().into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["/m/encoders/bert-base-uncased/tree.json"]);
}

#[test]
fn a_body_cut_short_without_content_length_is_not_accepted() {
    use itra_data::encoder::{encoder_dir, fetch_encoder};

    // Before: with no pinned digest and no Content-Length, a cut body was accepted wherever its
    // structure happened to parse. Now the listed size and digest catch it, and the part is
    // kept for a resume.
    let (files, tree) = encoder_files();
    let model_len = files[1].1.len();
    let cut = |name: &str| server::Route {
        omit_length: true,
        cut_all_at: (name == "model.safetensors").then_some(model_len - 3),
        ..server::Route::default()
    };
    let server = encoder_mirror(&files, Some(&tree), cut);
    let data = tempfile::tempdir().unwrap();
    let err = fetch_encoder("bert-base-uncased", data.path(), None, &mirror_only(&server)).unwrap_err();
    let message = err.to_string();
    assert!(message.contains(&format!("body ended at byte {} of {model_len}", model_len - 3)), "{message}");
    let dir = encoder_dir(data.path(), "bert-base-uncased");
    assert!(!dir.join("model.safetensors").exists(), "nothing under the final name");
    assert_eq!(std::fs::metadata(dir.join("model.safetensors.part")).unwrap().len() as usize, model_len - 3);
}

#[test]
fn a_file_the_listing_does_not_name_is_not_downloaded() {
    use itra_data::encoder::{encoder_dir, fetch_encoder};

    // Decision: a file that is neither pinned nor in the listing is an error, not an unverified
    // download: the listing describes the revision, so its silence means the file is unknown.
    let (files, _) = encoder_files();
    let partial_tree = tree_json(&files[..2]);
    let server = encoder_mirror(&files, Some(&partial_tree), |_| server::Route::default());
    let data = tempfile::tempdir().unwrap();
    let err = fetch_encoder("bert-base-uncased", data.path(), None, &mirror_only(&server)).unwrap_err();
    assert!(matches!(err, itra_data::DataError::NoDigest { .. }), "{err}");
    assert!(err.to_string().ends_with("does not list it"), "{err}");
    let dir = encoder_dir(data.path(), "bert-base-uncased");
    assert!(dir.join("config.json").is_file() && !dir.join("tokenizer.json").exists());
    assert!(!server.log().iter().any(|(p, _)| p.ends_with("tokenizer.json")), "no request for it");

    // Without any listing (a mirror with no tree.json, and the Hub ruled out), nothing is fetched.
    let server = encoder_mirror(&files, None, |_| server::Route::default());
    let empty = tempfile::tempdir().unwrap();
    let err = fetch_encoder("bert-base-uncased", empty.path(), None, &mirror_only(&server)).unwrap_err();
    assert!(err.to_string().contains("the hub metadata is unavailable"), "{err}");
    assert_eq!(server.log().len(), 1, "only the listing was asked for");
}
