//! `--download` against a tiny HTTP/1.1 server on 127.0.0.1 serving fixture files. Nothing here contacts any
//! other address: every URL is the local server's.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ddpm_cuda::data::download::{download_files, download_from, extract_cifar_tar_gz, fetch_verified, md5_file};
use ddpm_cuda::data::{load_cifar10, load_mnist, DatasetKind};

fn temp_dir(tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("ddpm-data-dl-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Serves `files` (by path after the first '/') for at most `max_requests` requests or 30 s, then stops.
/// Unknown paths get 404. Returns the base URL.
fn serve(files: HashMap<String, Vec<u8>>, max_requests: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut served = 0;
        while served < max_requests && Instant::now() < deadline {
            let Ok((stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            stream.set_nonblocking(false).unwrap();
            let mut reader = BufReader::new(stream);
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut header = String::new();
            while reader.read_line(&mut header).unwrap() > 2 {
                header.clear();
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_string();
            let mut stream = reader.into_inner();
            match files.get(&path) {
                Some(body) => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\
                         Connection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body));
                }
                None => {
                    let _ =
                        stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                }
            }
            served += 1;
        }
    });
    base
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn md5_of(bytes: &[u8]) -> String {
    let path = temp_dir("md5").join("blob");
    std::fs::write(&path, bytes).unwrap();
    md5_file(&path).unwrap()
}

/// The four MNIST files (2 images of 3×3 per split), gzip'd.
fn mnist_fixtures() -> HashMap<String, Vec<u8>> {
    let mut files = HashMap::new();
    for prefix in ["train", "t10k"] {
        let mut imgs: Vec<u8> = [2051u32, 2, 3, 3].iter().flat_map(|x| x.to_be_bytes()).collect();
        imgs.extend((0..18).map(|i| i * 10));
        let mut labs: Vec<u8> = [2049u32, 2].iter().flat_map(|x| x.to_be_bytes()).collect();
        labs.extend([4, 2]);
        files.insert(format!("{prefix}-images-idx3-ubyte.gz"), gz(&imgs));
        files.insert(format!("{prefix}-labels-idx1-ubyte.gz"), gz(&labs));
    }
    files
}

#[test]
fn md5_known_answers() {
    // RFC 1321 test suite.
    assert_eq!(md5_of(b""), "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(md5_of(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    assert_eq!(md5_of(b"message digest"), "f96b697d7cb7938d525a2f31aaf161d0");
}

#[test]
fn mnist_download_verifies_then_loads_and_skips_verified_files() {
    let fixtures = mnist_fixtures();
    let names = [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ];
    let sums: Vec<String> = names.iter().map(|n| md5_of(&fixtures[*n])).collect();
    let table: Vec<(&str, &str)> = names.iter().zip(&sums).map(|(n, s)| (*n, s.as_str())).collect();
    // Exactly four requests: a second download that fetched anything would find the server gone and fail.
    let base = serve(fixtures.clone(), 4);
    let root = temp_dir("mnist");
    let raw = root.join("MNIST").join("raw");
    download_files(&base, &table, &raw).unwrap();
    for name in names {
        assert_eq!(std::fs::read(raw.join(name)).unwrap(), fixtures[name]);
        assert!(!raw.join(format!("{name}.part")).exists());
    }
    let train = load_mnist(&root, true).unwrap();
    assert_eq!((train.n, train.height, train.width, train.labels.clone()), (2, 3, 3, vec![4, 2]));
    download_files(&base, &table, &raw).unwrap();
}

#[test]
fn checksum_mismatch_deletes_the_file_and_names_it() {
    let base = serve(mnist_fixtures(), 1);
    let dir = temp_dir("mismatch");
    let dest = dir.join("train-labels-idx1-ubyte.gz");
    let url = format!("{base}/train-labels-idx1-ubyte.gz");
    let err = fetch_verified(&url, &dest, "00000000000000000000000000000000").unwrap_err().to_string();
    assert!(err.contains("train-labels-idx1-ubyte.gz") && err.contains("checksum mismatch"), "{err}");
    assert!(err.contains("expected md5 00000000000000000000000000000000"), "{err}");
    assert!(!dest.exists() && !dir.join("train-labels-idx1-ubyte.gz.part").exists());
}

#[test]
fn official_checksums_reject_fixture_files_from_a_mirror() {
    // download_from with the real MNIST table, pointed at the local server: the fixtures are not the official
    // files, so the first one must be rejected and nothing left behind.
    let base = serve(mnist_fixtures(), 1);
    let root = temp_dir("official");
    let err = download_from(DatasetKind::Mnist, &root, Some(&base)).unwrap_err().to_string();
    assert!(err.contains("train-images-idx3-ubyte.gz") && err.contains("f68b3c2dcbeaaa9fbdd348bbdeb94873"), "{err}");
    assert!(!root.join("MNIST/raw/train-images-idx3-ubyte.gz").exists());
    assert!(download_from(DatasetKind::Folder, &root, Some(&base)).is_err());
}

#[test]
fn missing_file_on_server_is_an_error_naming_the_url() {
    let base = serve(HashMap::new(), 1);
    let dir = temp_dir("404");
    let err = fetch_verified(&format!("{base}/nope.gz"), &dir.join("nope.gz"), "x").unwrap_err().to_string();
    assert!(err.contains("nope.gz") && err.contains("404"), "{err}");
}

fn cifar_archive(extra_junk: bool) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    let mut add = |path: &str, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, data).unwrap();
    };
    let names = [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
    ];
    for (b, name) in names.iter().enumerate() {
        let records: Vec<u8> = (0..3)
            .flat_map(|r| std::iter::once(((b + r) % 10) as u8).chain(std::iter::repeat_n((b * 3 + r) as u8, 3072)))
            .collect();
        add(&format!("cifar-10-batches-bin/{name}"), &records);
    }
    add("cifar-10-batches-bin/batches.meta.txt", b"airplane\n");
    if extra_junk {
        add("elsewhere/readme.txt", b"not part of the batches");
    }
    builder.into_inner().unwrap().finish().unwrap()
}

#[test]
fn cifar_archive_download_extracts_batches() {
    let archive = cifar_archive(true);
    let md5 = md5_of(&archive);
    let base = serve(HashMap::from([("cifar-10-binary.tar.gz".to_string(), archive)]), 1);
    let root = temp_dir("cifar");
    download_files(&base, &[("cifar-10-binary.tar.gz", &md5)], &root).unwrap();
    extract_cifar_tar_gz(&root.join("cifar-10-binary.tar.gz"), &root).unwrap();
    assert!(!root.join("elsewhere").exists(), "entries outside cifar-10-batches-bin must be skipped");
    let train = load_cifar10(&root, true).unwrap();
    assert_eq!(train.n, 15);
    assert!(train.image_u8(4).iter().all(|&v| v == 4));
    assert_eq!(load_cifar10(&root, false).unwrap().labels, vec![5, 6, 7]);
    // Already extracted: download_from returns without any request (the server is gone after one).
    download_from(DatasetKind::Cifar10, &root, Some(&base)).unwrap();
}

#[test]
fn corrupt_or_incomplete_archives_are_errors_naming_the_archive() {
    let root = temp_dir("badtar");
    let path = root.join("cifar-10-binary.tar.gz");
    std::fs::write(&path, b"garbage").unwrap();
    let err = extract_cifar_tar_gz(&path, &root).unwrap_err().to_string();
    assert!(err.contains("cifar-10-binary.tar.gz"), "{err}");

    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    let mut header = tar::Header::new_gnu();
    header.set_size(3073);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, "cifar-10-batches-bin/data_batch_1.bin", &[0u8; 3073][..]).unwrap();
    std::fs::write(&path, builder.into_inner().unwrap().finish().unwrap()).unwrap();
    let err = extract_cifar_tar_gz(&path, &root).unwrap_err().to_string();
    assert!(err.contains("cifar-10-binary.tar.gz") && err.contains("data_batch_2.bin"), "{err}");
}
