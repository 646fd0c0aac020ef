//! A reader for PyTorch state dicts saved by `torch.save`: the zip format (torch ≥ 1.6: `*/data.pkl` plus one
//! `*/data/<key>` file per storage) and the legacy format (five pickles and the raw storages appended: magic
//! number, protocol version, system info, the object, the sorted storage keys, then per storage an i64 element
//! count and its bytes). A small pickle machine understands just what a state dict holds: dicts and
//! `OrderedDict`s of tensors rebuilt by `torch._utils._rebuild_tensor_v2` from persistent-id storages.
//! Floating tensors (f32, f64, f16, bf16) come back as f32 `Tensor`s; integer ones (BatchNorm's
//! `num_batches_tracked`) are skipped. Nothing is executed: unknown callables only build inert values.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use crate::{Error, Result, Tensor};

#[derive(Clone, Debug)]
enum Value {
    None,
    /// Booleans, floats and byte strings: parsed, never needed (only their presence on the stack).
    Bool,
    Int(i64),
    Float,
    Str(String),
    Bytes,
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    /// A storage reference: (key, element type).
    Storage(String, String),
    Tensor {
        storage: String,
        dtype: String,
        offset: usize,
        size: Vec<usize>,
        stride: Vec<usize>,
    },
    /// The result of calling something this reader does not model.
    Opaque,
    Mark,
}

/// Runs one pickle from `data` starting at `*pos`; leaves `*pos` after its STOP.
fn unpickle(data: &[u8], pos: &mut usize) -> std::result::Result<Value, String> {
    let mut stack: Vec<Value> = Vec::new();
    let mut memo: HashMap<u32, Value> = HashMap::new();
    let take = |pos: &mut usize, n: usize| -> std::result::Result<&[u8], String> {
        let s = data.get(*pos..*pos + n).ok_or("truncated pickle")?;
        *pos += n;
        Ok(s)
    };
    let line = |pos: &mut usize| -> std::result::Result<String, String> {
        let end = data[*pos..].iter().position(|&b| b == b'\n').ok_or("unterminated GLOBAL")?;
        let s = String::from_utf8_lossy(&data[*pos..*pos + end]).into_owned();
        *pos += end + 1;
        Ok(s)
    };
    let u32le = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let pop = |stack: &mut Vec<Value>| stack.pop().ok_or_else(|| "pickle stack underflow".to_string());
    let pop_mark = |stack: &mut Vec<Value>| -> std::result::Result<Vec<Value>, String> {
        let at = stack.iter().rposition(|v| matches!(v, Value::Mark)).ok_or("MARK missing")?;
        let items = stack.split_off(at + 1);
        stack.pop();
        Ok(items)
    };
    loop {
        let op = take(pos, 1)?[0];
        match op {
            0x80 => {
                take(pos, 1)?; // PROTO
            }
            b'.' => return pop(&mut stack),
            b'(' => stack.push(Value::Mark),
            b'N' => stack.push(Value::None),
            0x88 | 0x89 => stack.push(Value::Bool),
            b'K' => stack.push(Value::Int(take(pos, 1)?[0] as i64)),
            b'M' => {
                let b = take(pos, 2)?;
                stack.push(Value::Int(u16::from_le_bytes([b[0], b[1]]) as i64))
            }
            b'J' => stack.push(Value::Int(u32le(take(pos, 4)?) as i32 as i64)),
            0x8a => {
                // LONG1: little-endian two's complement of n bytes.
                let n = take(pos, 1)?[0] as usize;
                let b = take(pos, n)?;
                let mut v: i128 = 0;
                for (i, &byte) in b.iter().enumerate().take(16) {
                    v |= (byte as i128) << (8 * i);
                }
                if n > 0 && n < 16 && b[n - 1] & 0x80 != 0 {
                    v -= 1i128 << (8 * n);
                }
                stack.push(Value::Int(v as i64));
            }
            b'G' => {
                take(pos, 8)?;
                stack.push(Value::Float);
            }
            b'X' | b'T' | b'B' => {
                let n = u32le(take(pos, 4)?) as usize;
                let b = take(pos, n)?;
                stack.push(if op == b'X' { Value::Str(String::from_utf8_lossy(b).into_owned()) } else { Value::Bytes });
            }
            0x8c | b'U' | b'C' => {
                let n = take(pos, 1)?[0] as usize;
                let b = take(pos, n)?;
                stack.push(if op == 0x8c { Value::Str(String::from_utf8_lossy(b).into_owned()) } else { Value::Bytes });
            }
            b'}' => stack.push(Value::Dict(Vec::new())),
            b']' => stack.push(Value::List(Vec::new())),
            b')' => stack.push(Value::Tuple(Vec::new())),
            b't' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if stack.len() < n {
                    return Err("pickle stack underflow".into());
                }
                let items = stack.split_off(stack.len() - n);
                stack.push(Value::Tuple(items));
            }
            b'l' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::List(items));
            }
            b'd' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::Dict(items.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect()));
            }
            b'q' => {
                let k = take(pos, 1)?[0] as u32;
                memo.insert(k, stack.last().ok_or("BINPUT on empty stack")?.clone());
            }
            b'r' => {
                let k = u32le(take(pos, 4)?);
                memo.insert(k, stack.last().ok_or("LONG_BINPUT on empty stack")?.clone());
            }
            0x94 => {
                let k = memo.len() as u32;
                memo.insert(k, stack.last().ok_or("MEMOIZE on empty stack")?.clone());
            }
            b'h' => {
                let k = take(pos, 1)?[0] as u32;
                stack.push(memo.get(&k).ok_or("BINGET of an unknown memo key")?.clone());
            }
            b'j' => {
                let k = u32le(take(pos, 4)?);
                stack.push(memo.get(&k).ok_or("LONG_BINGET of an unknown memo key")?.clone());
            }
            b'c' => {
                let module = line(pos)?;
                let name = line(pos)?;
                stack.push(Value::Global(module, name));
            }
            0x93 => {
                let name = pop(&mut stack)?;
                let module = pop(&mut stack)?;
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => stack.push(Value::Global(m, n)),
                    _ => return Err("STACK_GLOBAL without two strings".into()),
                }
            }
            b'Q' => {
                // BINPERSID: ('storage', storage_type, key, location, numel[, view_metadata]).
                let pid = pop(&mut stack)?;
                let Value::Tuple(items) = pid else { return Err("persistent id is not a tuple".into()) };
                let (Some(Value::Global(_, ty)), Some(key)) = (items.get(1), items.get(2)) else {
                    return Err("persistent id is not a storage reference".into());
                };
                let key = match key {
                    Value::Str(s) => s.clone(),
                    Value::Int(i) => i.to_string(),
                    _ => return Err("storage key is neither a string nor an int".into()),
                };
                stack.push(Value::Storage(key, ty.clone()));
            }
            b'R' | 0x81 => {
                let args = pop(&mut stack)?;
                let func = pop(&mut stack)?;
                stack.push(call(func, args)?);
            }
            b'b' => {
                pop(&mut stack)?; // BUILD: the state (OrderedDict's _metadata) is not needed.
            }
            b's' => {
                let v = pop(&mut stack)?;
                let k = pop(&mut stack)?;
                if let Some(Value::Dict(d)) = stack.last_mut() {
                    d.push((k, v));
                }
            }
            b'u' => {
                let items = pop_mark(&mut stack)?;
                if let Some(Value::Dict(d)) = stack.last_mut() {
                    d.extend(items.chunks(2).map(|p| (p[0].clone(), p[1].clone())));
                }
            }
            b'a' => {
                let v = pop(&mut stack)?;
                if let Some(Value::List(l)) = stack.last_mut() {
                    l.push(v);
                }
            }
            b'e' => {
                let items = pop_mark(&mut stack)?;
                if let Some(Value::List(l)) = stack.last_mut() {
                    l.extend(items);
                }
            }
            other => return Err(format!("unsupported pickle opcode 0x{other:02x} at byte {}", *pos - 1)),
        }
    }
}

fn ints(v: &Value) -> std::result::Result<Vec<usize>, String> {
    match v {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .map(|i| match i {
                Value::Int(n) if *n >= 0 => Ok(*n as usize),
                _ => Err("tensor size or stride is not a tuple of non-negative ints".to_string()),
            })
            .collect(),
        _ => Err("tensor size or stride is not a tuple".into()),
    }
}

/// The callables a state dict uses; anything else becomes `Opaque`.
fn call(func: Value, args: Value) -> std::result::Result<Value, String> {
    let Value::Global(module, name) = func else { return Ok(Value::Opaque) };
    match (module.as_str(), name.as_str()) {
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => {
            let Value::Tuple(a) = args else { return Err("_rebuild_tensor_v2 without an argument tuple".into()) };
            let (Some(Value::Storage(key, dtype)), Some(Value::Int(offset)), Some(size), Some(stride)) =
                (a.first(), a.get(1), a.get(2), a.get(3))
            else {
                return Err("_rebuild_tensor_v2 with unexpected arguments".into());
            };
            Ok(Value::Tensor {
                storage: key.clone(),
                dtype: dtype.clone(),
                offset: *offset as usize,
                size: ints(size)?,
                stride: ints(stride)?,
            })
        }
        ("collections", "OrderedDict") => Ok(Value::Dict(Vec::new())),
        _ => Ok(Value::Opaque),
    }
}

/// Bytes per element and a decoder to f32, or None for non-floating storages.
type Decode = fn(&[u8]) -> f32;

fn element(dtype: &str) -> Option<(usize, Decode)> {
    match dtype {
        "FloatStorage" => Some((4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        "DoubleStorage" => Some((8, |b| f64::from_le_bytes(b.try_into().unwrap()) as f32)),
        "HalfStorage" => Some((2, |b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())),
        "BFloat16Storage" => Some((2, |b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())),
        _ => None,
    }
}

/// Gather a (possibly strided, offset) view out of its storage's bytes.
fn gather(bytes: &[u8], dtype: &str, offset: usize, size: &[usize], stride: &[usize]) -> Option<Vec<f32>> {
    let (width, decode) = element(dtype)?;
    let n: usize = size.iter().product();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; size.len()];
    for _ in 0..n {
        let e = offset + idx.iter().zip(stride).map(|(i, s)| i * s).sum::<usize>();
        out.push(decode(bytes.get(e * width..(e + 1) * width)?));
        for d in (0..size.len()).rev() {
            idx[d] += 1;
            if idx[d] < size[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Some(out)
}

/// Every floating tensor of a state dict saved with `torch.save`, by name, as f32 CPU tensors.
pub fn load_state_dict(path: &Path) -> Result<HashMap<String, Tensor>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |msg: String| Error::bad_file(path, msg);
    let (root, storages) =
        if raw.starts_with(b"PK") { read_zip(path, &raw)? } else { read_legacy(&raw).map_err(bad)? };
    let Value::Dict(entries) = root else {
        return Err(bad("the pickled object is not a dict of tensors (not a state dict)".into()));
    };
    let mut out = HashMap::new();
    for (k, v) in entries {
        let (Value::Str(name), Value::Tensor { storage, dtype, offset, size, stride }) = (k, v) else { continue };
        if element(&dtype).is_none() {
            continue;
        }
        let bytes = storages.get(&storage).ok_or_else(|| bad(format!("storage {storage} of {name} is missing")))?;
        let values = gather(bytes, &dtype, offset, &size, &stride)
            .ok_or_else(|| bad(format!("tensor {name} reaches past the end of its storage")))?;
        out.insert(name, Tensor::from_vec(values, &size)?);
    }
    Ok(out)
}

type Storages = HashMap<String, Vec<u8>>;

fn read_zip(path: &Path, raw: &[u8]) -> Result<(Value, Storages)> {
    let zip_err = |e: npyz::zip::result::ZipError| Error::bad_file(path, format!("zip: {e}"));
    let mut zip = npyz::zip::ZipArchive::new(std::io::Cursor::new(raw)).map_err(zip_err)?;
    let names: Vec<String> = zip.file_names().map(String::from).collect();
    let pkl = names
        .iter()
        .find(|n| n.ends_with("/data.pkl") || *n == "data.pkl")
        .ok_or_else(|| Error::bad_file(path, "a zip without data.pkl (not a torch.save file)"))?
        .clone();
    let prefix = &pkl[..pkl.len() - "data.pkl".len()];
    let mut read = |name: &str| -> Result<Vec<u8>> {
        let mut f = zip.by_name(name).map_err(zip_err)?;
        let mut v = Vec::new();
        f.read_to_end(&mut v).map_err(|e| Error::io(path, e))?;
        Ok(v)
    };
    let data = read(&pkl)?;
    let root = unpickle(&data, &mut 0).map_err(|e| Error::bad_file(path, format!("data.pkl: {e}")))?;
    let mut storages = HashMap::new();
    for n in &names {
        if let Some(key) = n.strip_prefix(&format!("{prefix}data/")) {
            storages.insert(key.to_string(), read(n)?);
        }
    }
    Ok((root, storages))
}

fn read_legacy(raw: &[u8]) -> std::result::Result<(Value, Storages), String> {
    let mut pos = 0;
    let magic = unpickle(raw, &mut pos).map_err(|e| format!("not a torch.save file ({e})"))?;
    // The magic number 0x1950a86a20f9469cfc6c is wider than an i64: only check that an integer came first.
    if !matches!(magic, Value::Int(_)) {
        return Err("not a torch.save file (no magic number)".into());
    }
    unpickle(raw, &mut pos)?; // protocol version
    unpickle(raw, &mut pos)?; // sys info
    let root = unpickle(raw, &mut pos)?;
    let Value::List(keys) = unpickle(raw, &mut pos)? else { return Err("storage key list missing".into()) };
    // Element widths come from the storage types the tensors named.
    let mut widths: HashMap<String, usize> = HashMap::new();
    if let Value::Dict(entries) = &root {
        for (_, v) in entries {
            if let Value::Tensor { storage, dtype, .. } = v {
                widths.insert(storage.clone(), storage_width(dtype));
            }
        }
    }
    let mut storages = HashMap::new();
    for k in keys {
        let key = match k {
            Value::Str(s) => s,
            Value::Int(i) => i.to_string(),
            _ => return Err("storage key is neither a string nor an int".into()),
        };
        let n = raw.get(pos..pos + 8).ok_or("truncated storage header")?;
        let numel = u64::from_le_bytes(n.try_into().unwrap()) as usize;
        let width = *widths.get(&key).ok_or_else(|| format!("storage {key} is used by no tensor"))?;
        let bytes = raw.get(pos + 8..pos + 8 + numel * width).ok_or("truncated storage data")?;
        storages.insert(key, bytes.to_vec());
        pos += 8 + numel * width;
    }
    Ok((root, storages))
}

fn storage_width(dtype: &str) -> usize {
    match dtype {
        "DoubleStorage" | "LongStorage" | "ComplexFloatStorage" => 8,
        "FloatStorage" | "IntStorage" => 4,
        "HalfStorage" | "BFloat16Storage" | "ShortStorage" => 2,
        _ => 1,
    }
}
