//! `train` writes a TensorBoard event file into the run dir. It is read back here with a decoder written for the
//! test (TFRecord framing with its own bitwise CRC-32C, and a hand-rolled protobuf reader), independent of the
//! writer's crates: the scalars equal metrics.jsonl line for line, and the sample grids are PNGs of the stated size.
#[path = "common/fixtures.rs"]
mod fixtures;
use fixtures::{temp_dir, write_mnist};

use std::collections::BTreeMap;
use std::process::Command;

/// CRC-32C (Castagnoli), bit by bit.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

fn masked(data: &[u8]) -> u32 {
    let c = crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// The records of a TFRecord file, with both checksums verified.
fn records(bytes: &[u8]) -> Vec<&[u8]> {
    let (mut out, mut i) = (vec![], 0);
    while i < bytes.len() {
        let len_bytes = &bytes[i..i + 8];
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
        assert_eq!(u32::from_le_bytes(bytes[i + 8..i + 12].try_into().unwrap()), masked(len_bytes), "length CRC");
        let data = &bytes[i + 12..i + 12 + len];
        let crc = u32::from_le_bytes(bytes[i + 12 + len..i + 16 + len].try_into().unwrap());
        assert_eq!(crc, masked(data), "data CRC");
        out.push(data);
        i += 16 + len;
    }
    assert_eq!(i, bytes.len(), "trailing bytes");
    out
}

/// A protobuf field's value.
#[derive(Debug, Clone)]
enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

fn varint(b: &[u8], i: &mut usize) -> u64 {
    let (mut v, mut shift) = (0u64, 0);
    loop {
        let byte = b[*i];
        *i += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return v;
        }
        shift += 7;
    }
}

/// (field number, value) pairs of one message.
fn fields(b: &[u8]) -> Vec<(u64, Field<'_>)> {
    let (mut out, mut i) = (vec![], 0);
    while i < b.len() {
        let key = varint(b, &mut i);
        let f = match key & 7 {
            0 => Field::Varint(varint(b, &mut i)),
            1 => {
                i += 8;
                Field::Fixed64(u64::from_le_bytes(b[i - 8..i].try_into().unwrap()))
            }
            2 => {
                let n = varint(b, &mut i) as usize;
                i += n;
                Field::Bytes(&b[i - n..i])
            }
            5 => {
                i += 4;
                Field::Fixed32(u32::from_le_bytes(b[i - 4..i].try_into().unwrap()))
            }
            w => panic!("wire type {w}"),
        };
        out.push((key >> 3, f));
    }
    out
}

fn bytes_of<'a>(fs: &[(u64, Field<'a>)], n: u64) -> Vec<&'a [u8]> {
    fs.iter().filter_map(|(k, f)| if let (true, Field::Bytes(b)) = (*k == n, f) { Some(*b) } else { None }).collect()
}

fn varint_of(fs: &[(u64, Field)], n: u64) -> Option<u64> {
    fs.iter().find_map(|(k, f)| if let (true, Field::Varint(v)) = (*k == n, f) { Some(*v) } else { None })
}

#[test]
fn event_file_holds_the_metrics_scalars_and_sample_grids() {
    let data = temp_dir("tb-data");
    write_mnist(&data, 40);
    let out = temp_dir("tb").join("run");
    let o = Command::new(env!("CARGO_BIN_EXE_ddpm-cuda"))
        .args(["train", "--dataset", "mnist", "--data-dir", data.to_str().unwrap(), "--preset", "tiny"])
        .args(["--set", "model.ch=8", "--set", "model.norm_groups=4", "--batch-size", "4", "--steps", "6"])
        .args(["--out", out.to_str().unwrap(), "--device", "cpu", "--quiet", "--log-every", "2"])
        .args(["--sample-every", "3", "--num-samples", "4", "--grid-steps", "3"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let files: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("events.out.tfevents."))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let bytes = std::fs::read(&files[0]).unwrap();
    let recs = records(&bytes);

    // Event: 1 wall_time (double), 2 step, 3 file_version, 5 summary.
    let first = fields(recs[0]);
    assert_eq!(bytes_of(&first, 3), vec![b"brain.Event:2".as_slice()]);
    let mut scalars: BTreeMap<u64, BTreeMap<String, f32>> = BTreeMap::new();
    let mut images: Vec<(u64, String, u64, u64, Vec<u8>)> = vec![];
    for rec in &recs[1..] {
        let ev = fields(rec);
        let wall =
            ev.iter()
                .find_map(|(k, f)| if let (1, Field::Fixed64(b)) = (*k, f) { Some(f64::from_bits(*b)) } else { None });
        assert!(wall.is_some_and(|t| t > 1.5e9), "no wall_time: {wall:?}");
        let step = varint_of(&ev, 2).unwrap_or(0);
        for summary in bytes_of(&ev, 5) {
            // Summary: 1 repeated Value { 1 tag, 2 simple_value (float), 4 image }.
            for value in bytes_of(&fields(summary), 1) {
                let v = fields(value);
                let tag = String::from_utf8(bytes_of(&v, 1)[0].to_vec()).unwrap();
                if let Some((_, Field::Fixed32(x))) = v.iter().find(|(k, _)| *k == 2) {
                    scalars.entry(step).or_default().insert(tag.clone(), f32::from_bits(*x));
                }
                if let Some(img) = bytes_of(&v, 4).first() {
                    // Image: 1 height, 2 width, 3 colorspace, 4 encoded PNG.
                    let im = fields(img);
                    let (h, w) = (varint_of(&im, 1).unwrap(), varint_of(&im, 2).unwrap());
                    assert_eq!(varint_of(&im, 3), Some(1), "MNIST grids are grayscale");
                    images.push((step, tag, h, w, bytes_of(&im, 4)[0].to_vec()));
                }
            }
        }
    }

    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(scalars.keys().copied().collect::<Vec<_>>(), vec![2, 4, 6]);
    for line in &lines {
        let step = line["step"].as_u64().unwrap();
        let s = &scalars[&step];
        for (key, tag) in [
            ("loss", "train/loss"),
            ("lr", "train/lr"),
            ("grad_norm", "train/grad_norm"),
            ("img_per_s", "train/img_per_s"),
        ] {
            let want = line[key].as_f64().unwrap() as f32;
            assert_eq!(s[tag], want, "step {step} {tag}: event file {} vs metrics.jsonl {want}", s[tag]);
        }
    }

    assert_eq!(images.iter().map(|i| i.0).collect::<Vec<_>>(), vec![3, 6]);
    for (step, tag, h, w, png) in images {
        assert_eq!(tag, "samples/ema");
        let dec = png::Decoder::new(std::io::Cursor::new(png));
        let info = dec.read_info().unwrap().info().clone();
        assert_eq!((info.width as u64, info.height as u64), (w, h), "step {step}");
        // The same grid as samples_*.png.
        let file = std::fs::read(out.join(format!("samples_{step:07}.png"))).unwrap();
        let d2 = png::Decoder::new(std::io::Cursor::new(file)).read_info().unwrap().info().clone();
        assert_eq!((d2.width as u64, d2.height as u64), (w, h));
    }
}
