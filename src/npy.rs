//! Plain .npy arrays for the `eps` command: f32 inputs, integer timesteps, f32 outputs (C order).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use npyz::{NpyFile, Order, WriterBuilder};

use crate::{Error, Result};

fn open(path: &Path) -> Result<NpyFile<BufReader<File>>> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let npy = NpyFile::new(BufReader::new(f)).map_err(|e| Error::bad_file(path, format!("not a .npy file ({e})")))?;
    if npy.order() != Order::C && npy.shape().len() > 1 {
        return Err(Error::bad_file(path, "Fortran-order array; save it C-contiguous (np.ascontiguousarray)"));
    }
    Ok(npy)
}

/// A float32 array and its shape.
pub fn read_f32(path: &Path) -> Result<(Vec<f32>, Vec<usize>)> {
    let npy = open(path)?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let descr = npy.dtype().descr();
    let data = npy.try_data::<f32>().map_err(|_| Error::bad_file(path, format!("dtype {descr}, expected float32")))?;
    let v = data
        .collect::<std::io::Result<Vec<f32>>>()
        .map_err(|e| Error::bad_file(path, format!("truncated data ({e})")))?;
    Ok((v, shape))
}

/// A 1-D array of int64 or int32 timesteps.
pub fn read_timesteps(path: &Path) -> Result<Vec<i64>> {
    let npy = open(path)?;
    if npy.shape().len() != 1 {
        return Err(Error::bad_file(path, format!("timesteps must be 1-D, got shape {:?}", npy.shape())));
    }
    let descr = npy.dtype().descr();
    let trunc = |e: std::io::Error| Error::bad_file(path, format!("truncated data ({e})"));
    match npy.try_data::<i64>() {
        Ok(d) => d.collect::<std::io::Result<Vec<i64>>>().map_err(trunc),
        Err(npy) => match npy.try_data::<i32>() {
            Ok(d) => Ok(d.collect::<std::io::Result<Vec<i32>>>().map_err(trunc)?.into_iter().map(i64::from).collect()),
            Err(_) => Err(Error::bad_file(path, format!("dtype {descr}, expected int64 or int32"))),
        },
    }
}

/// Write a float32 array.
pub fn write_f32(path: &Path, data: &[f32], shape: &[usize]) -> Result<()> {
    let io = |e: std::io::Error| Error::io(path, e);
    let mut buf = Vec::new();
    let shape64: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut w = npyz::WriteOptions::new().default_dtype().shape(&shape64).writer(&mut buf).begin_nd().map_err(io)?;
    w.extend(data.iter().copied()).map_err(io)?;
    w.finish().map_err(io)?;
    crate::checkpoint::write_atomic(path, &buf)
}
