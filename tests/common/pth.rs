//! A minimal `torch.save` writer for tests: a state dict of f32 tensors in torch's zip format (`archive/data.pkl`,
//! a protocol-2 pickle of an `OrderedDict` of `torch._utils._rebuild_tensor_v2` calls on persistent-id
//! `FloatStorage`s, plus one `archive/data/<key>` file of little-endian f32 per tensor), as
//! src/eval/pth.rs reads it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use ddpm_cuda::Tensor;

fn global(p: &mut Vec<u8>, module: &str, name: &str) {
    p.push(b'c');
    p.extend(module.as_bytes());
    p.push(b'\n');
    p.extend(name.as_bytes());
    p.push(b'\n');
}

fn unicode(p: &mut Vec<u8>, s: &str) {
    p.push(b'X');
    p.extend((s.len() as u32).to_le_bytes());
    p.extend(s.as_bytes());
}

fn int(p: &mut Vec<u8>, v: usize) {
    p.push(b'J');
    p.extend(i32::try_from(v).expect("BININT range").to_le_bytes());
}

fn int_tuple(p: &mut Vec<u8>, vs: &[usize]) {
    p.push(b'(');
    vs.iter().for_each(|&v| int(p, v));
    p.push(b't');
}

/// `collections.OrderedDict()`.
fn ordered_dict(p: &mut Vec<u8>) {
    global(p, "collections", "OrderedDict");
    p.push(b')');
    p.push(b'R');
}

/// `data.pkl` of a state dict whose i-th tensor (in `names` order) lives in storage "i".
fn state_dict_pickle(names: &[&String], sd: &HashMap<String, Tensor>) -> Vec<u8> {
    let mut p = vec![0x80, 2];
    ordered_dict(&mut p);
    p.push(b'(');
    for (key, name) in names.iter().enumerate() {
        let t = &sd[*name];
        let shape = t.shape();
        let mut stride = vec![1usize; shape.len()];
        for d in (0..shape.len().saturating_sub(1)).rev() {
            stride[d] = stride[d + 1] * shape[d + 1];
        }
        unicode(&mut p, name);
        global(&mut p, "torch._utils", "_rebuild_tensor_v2");
        p.push(b'(');
        // ('storage', torch.FloatStorage, key, 'cpu', numel) as a persistent id.
        p.push(b'(');
        unicode(&mut p, "storage");
        global(&mut p, "torch", "FloatStorage");
        unicode(&mut p, &key.to_string());
        unicode(&mut p, "cpu");
        int(&mut p, t.numel());
        p.push(b't');
        p.push(b'Q');
        int(&mut p, 0);
        int_tuple(&mut p, shape);
        int_tuple(&mut p, &stride);
        p.push(0x89); // requires_grad = False
        ordered_dict(&mut p); // backward hooks
        p.push(b't');
        p.push(b'R');
    }
    p.push(b'u');
    p.push(b'.');
    p
}

/// Write `sd` as torch's zip-format `.pth` (entries stored uncompressed, as torch does).
pub fn write_state_dict_zip(path: &Path, sd: &HashMap<String, Tensor>) {
    use npyz::zip::{write::FileOptions, CompressionMethod, ZipWriter};
    let mut names: Vec<&String> = sd.keys().collect();
    names.sort();
    let opts = FileOptions::default().compression_method(CompressionMethod::Stored);
    let mut zip = ZipWriter::new(std::io::BufWriter::new(std::fs::File::create(path).unwrap()));
    zip.start_file("archive/data.pkl", opts).unwrap();
    zip.write_all(&state_dict_pickle(&names, sd)).unwrap();
    for (key, name) in names.iter().enumerate() {
        zip.start_file(format!("archive/data/{key}"), opts).unwrap();
        let bytes: Vec<u8> = sd[*name].to_vec().unwrap().iter().flat_map(|v| v.to_le_bytes()).collect();
        zip.write_all(&bytes).unwrap();
    }
    zip.start_file("archive/version", opts).unwrap();
    zip.write_all(b"3\n").unwrap();
    zip.finish().unwrap();
}
