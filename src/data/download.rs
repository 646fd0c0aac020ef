//! `--download`: fetches MNIST, Fashion-MNIST and CIFAR-10 from their canonical URLs and checks each file's MD5
//! (the checksums torchvision and the CIFAR-10 page publish) before anything reads it.
//!
//! Layout written under `dir` (what the loaders look for):
//! - MNIST: `dir/MNIST/raw/*.gz`; Fashion-MNIST: `dir/FashionMNIST/raw/*.gz` (torchvision's layout).
//! - CIFAR-10: `dir/cifar-10-binary.tar.gz`, extracted to `dir/cifar-10-batches-bin/`.
//!
//! Files already present with the right checksum are not fetched again. A download goes to `<file>.part` and is
//! renamed only after its checksum matched; on a mismatch the partial file is deleted and an error returned.
//! The environment variable `DDPM_CUDA_MIRROR` (or `download_from`'s `base_url`) replaces every base URL, for
//! mirrors and for tests. Plain `http://` works with ureq's default features off; `https://` (the canonical MNIST
//! and CIFAR-10 hosts) needs ureq's `rustls` feature.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use md5::{Digest, Md5};

use super::DatasetKind;
use crate::{Error, Result};

/// Where a dataset lives online: a base URL and its files with their MD5 checksums.
#[derive(Debug, Clone, Copy)]
pub struct Remote {
    pub base_url: &'static str,
    /// Directory under the data root that receives the files.
    pub subdir: &'static str,
    pub files: &'static [(&'static str, &'static str)],
}

/// torchvision's MNIST resources (the ossci-datasets mirror it uses, with its MD5s).
pub const MNIST: Remote = Remote {
    base_url: "https://ossci-datasets.s3.amazonaws.com/mnist",
    subdir: "MNIST/raw",
    files: &[
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ],
};

/// torchvision's Fashion-MNIST resources.
pub const FASHION_MNIST: Remote = Remote {
    base_url: "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",
    subdir: "FashionMNIST/raw",
    files: &[
        ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    ],
};

/// The CIFAR-10 binary version, MD5 as listed on https://www.cs.toronto.edu/~kriz/cifar.html.
pub const CIFAR10: Remote = Remote {
    base_url: "https://www.cs.toronto.edu/~kriz",
    subdir: "",
    files: &[("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530")],
};

/// Files the CIFAR-10 archive must provide.
const CIFAR_BIN_FILES: [&str; 6] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
    "test_batch.bin",
];

pub fn remote(kind: DatasetKind) -> Result<Remote> {
    match kind {
        DatasetKind::Mnist => Ok(MNIST),
        DatasetKind::FashionMnist => Ok(FASHION_MNIST),
        DatasetKind::Cifar10 => Ok(CIFAR10),
        DatasetKind::Folder => Err(Error::msg("--download supports mnist, fashion-mnist and cifar10, not folders")),
    }
}

/// Downloads `kind` into `dir` from the canonical URLs, or from `$DDPM_CUDA_MIRROR` when set.
pub fn download(kind: DatasetKind, dir: &Path) -> Result<()> {
    let mirror = std::env::var("DDPM_CUDA_MIRROR").ok().filter(|s| !s.is_empty());
    download_from(kind, dir, mirror.as_deref())
}

/// Downloads `kind` into `dir`; `base_url` replaces the canonical base URL when given.
pub fn download_from(kind: DatasetKind, dir: &Path, base_url: Option<&str>) -> Result<()> {
    let remote = remote(kind)?;
    if kind == DatasetKind::Cifar10
        && CIFAR_BIN_FILES.iter().all(|f| dir.join("cifar-10-batches-bin").join(f).is_file())
    {
        return Ok(());
    }
    let dest_dir = dir.join(remote.subdir);
    download_files(base_url.unwrap_or(remote.base_url), remote.files, &dest_dir)?;
    if kind == DatasetKind::Cifar10 {
        extract_cifar_tar_gz(&dest_dir.join(remote.files[0].0), dir)?;
    }
    Ok(())
}

/// Fetches each `(file, md5)` from `<base_url>/<file>` into `dest_dir`, skipping files already verified.
pub fn download_files(base_url: &str, files: &[(&str, &str)], dest_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dest_dir).map_err(|e| Error::io(dest_dir, e))?;
    for (file, md5) in files {
        let dest = dest_dir.join(file);
        if dest.is_file() && md5_file(&dest)? == *md5 {
            continue;
        }
        let url = format!("{}/{}", base_url.trim_end_matches('/'), file);
        eprintln!("downloading {url} -> {}", dest.display());
        fetch_verified(&url, &dest, md5)?;
    }
    Ok(())
}

/// Hex MD5 of a file's contents.
pub fn md5_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let read = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if read == 0 {
            break;
        }
        hasher.update(&buf[..read]);
    }
    Ok(to_hex(&hasher.finalize()))
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    ["127.0.0.1", "localhost", "[::1]"].iter().any(|h| rest.starts_with(h))
}

fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

/// Streams `url` to `<dest>.part` while hashing it; renames to `dest` only if the MD5 equals `md5_hex`.
pub fn fetch_verified(url: &str, dest: &Path, md5_hex: &str) -> Result<()> {
    let mut config = ureq::Agent::config_builder().timeout_connect(Some(Duration::from_secs(30)));
    if is_loopback(url) {
        // Never route a local server through a proxy from the environment.
        config = config.proxy(None);
    }
    let agent: ureq::Agent = config.build().into();
    let response = agent.get(url).call().map_err(|e| {
        let hint = if url.starts_with("https://") {
            " (https needs ureq's `rustls` feature; DDPM_CUDA_MIRROR can point at an http:// mirror)"
        } else {
            ""
        };
        Error::msg(format!("download of {url} failed: {e}{hint}"))
    })?;
    let mut body = response.into_body().into_reader();

    let part = part_path(dest);
    let result = (|| {
        let mut out = File::create(&part).map_err(|e| Error::io(&part, e))?;
        let mut hasher = Md5::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let read = body.read(&mut buf).map_err(|e| Error::msg(format!("download of {url} failed: {e}")))?;
            if read == 0 {
                break;
            }
            hasher.update(&buf[..read]);
            out.write_all(&buf[..read]).map_err(|e| Error::io(&part, e))?;
        }
        out.sync_all().map_err(|e| Error::io(&part, e))?;
        let found = to_hex(&hasher.finalize());
        if found != md5_hex.to_ascii_lowercase() {
            return Err(Error::bad_file(
                dest,
                format!("checksum mismatch for {url}: expected md5 {md5_hex}, found {found}; the file was deleted"),
            ));
        }
        std::fs::rename(&part, dest).map_err(|e| Error::io(dest, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result
}

/// Extracts the `cifar-10-batches-bin/` regular files of a CIFAR-10 binary archive into `dir`.
/// Other entries are ignored; paths are checked so nothing lands outside `dir`.
pub fn extract_cifar_tar_gz(archive: &Path, dir: &Path) -> Result<()> {
    let file = File::open(archive).map_err(|e| Error::io(archive, e))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let bad = |e: std::io::Error| Error::bad_file(archive, format!("corrupt tar.gz archive: {e}"));
    for entry in tar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        let safe = path.components().all(|c| matches!(c, std::path::Component::Normal(_)));
        let in_batches = path.components().next().is_some_and(|c| c.as_os_str() == "cifar-10-batches-bin");
        if entry.header().entry_type().is_file() && safe && in_batches {
            entry
                .unpack_in(dir)
                .map_err(|e| Error::bad_file(archive, format!("cannot extract {}: {e}", path.display())))?;
        }
    }
    let missing: Vec<&str> =
        CIFAR_BIN_FILES.iter().copied().filter(|f| !dir.join("cifar-10-batches-bin").join(f).is_file()).collect();
    if !missing.is_empty() {
        return Err(Error::bad_file(archive, format!("archive lacks cifar-10-batches-bin/{}", missing.join(", "))));
    }
    Ok(())
}
