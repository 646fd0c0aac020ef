//! TensorBoard event files, so that `tensorboard --logdir runs` shows a run's scalars and sample grids.
//!
//! An event file is a sequence of TFRecords (u64 length, masked CRC-32C of the length, the bytes, masked CRC-32C of
//! the bytes), each holding one `tensorflow.Event` protobuf. The messages below are the fields of TensorFlow's
//! `event.proto`/`summary.proto` that we write, with their field numbers; the legacy `simple_value` scalars and
//! PNG `Image` summaries are what TensorBoard's scalar and image dashboards read.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use prost::Message;

use crate::{Error, Result};

/// `tensorflow.Event`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(string, optional, tag = "3")]
    pub file_version: Option<String>,
    #[prost(message, optional, tag = "5")]
    pub summary: Option<Summary>,
    #[prost(message, optional, tag = "7")]
    pub session_log: Option<SessionLog>,
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value`: a scalar (`simple_value`) or an image.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
    #[prost(message, optional, tag = "4")]
    pub image: Option<SummaryImage>,
}

/// `tensorflow.Summary.Image`: an encoded PNG and its size (colorspace 1: grayscale, 3: RGB).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryImage {
    #[prost(int32, tag = "1")]
    pub height: i32,
    #[prost(int32, tag = "2")]
    pub width: i32,
    #[prost(int32, tag = "3")]
    pub colorspace: i32,
    #[prost(bytes = "vec", tag = "4")]
    pub encoded_image_string: Vec<u8>,
}

/// `tensorflow.SessionLog`: a START at step s tells TensorBoard to drop the events at step s and later that an
/// earlier session wrote (what a resumed run needs).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionLog {
    /// 1: START, 2: STOP, 3: CHECKPOINT.
    #[prost(int32, tag = "1")]
    pub status: i32,
}

/// CRC-32C of `data`, masked as TFRecord stores it.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Appends events to one `events.out.tfevents.*` file in a run directory, flushing after every event so that a
/// running TensorBoard (and an interrupted run) sees them.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

fn wall_time() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

impl EventWriter {
    /// A new event file in `dir`, opened with the `brain.Event:2` version record.
    pub fn create(dir: &Path) -> Result<EventWriter> {
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
            .unwrap_or_else(|| "localhost".into());
        let secs = wall_time() as u64;
        let path = dir.join(format!("events.out.tfevents.{secs}.{host}.{}", std::process::id()));
        let file = File::options().create(true).append(true).open(&path).map_err(|e| Error::io(&path, e))?;
        let mut w = EventWriter { path, out: BufWriter::new(file) };
        w.write(&Event { wall_time: wall_time(), file_version: Some("brain.Event:2".into()), ..Default::default() })?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One TFRecord holding `event`.
    pub fn write(&mut self, event: &Event) -> Result<()> {
        let data = event.encode_to_vec();
        let len = (data.len() as u64).to_le_bytes();
        let mut rec = Vec::with_capacity(data.len() + 16);
        rec.extend_from_slice(&len);
        rec.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
        rec.extend_from_slice(&data);
        rec.extend_from_slice(&masked_crc32c(&data).to_le_bytes());
        self.out.write_all(&rec).and_then(|_| self.out.flush()).map_err(|e| Error::io(&self.path, e))
    }

    /// Scalars at `step`, one summary value per (tag, value).
    pub fn scalars(&mut self, step: u64, values: &[(&str, f32)]) -> Result<()> {
        let value = values
            .iter()
            .map(|&(tag, v)| SummaryValue { tag: tag.into(), simple_value: Some(v), image: None })
            .collect();
        self.write(&Event {
            wall_time: wall_time(),
            step: step as i64,
            summary: Some(Summary { value }),
            ..Default::default()
        })
    }

    /// A PNG image (`channels` 1 or 3) at `step`.
    pub fn image(
        &mut self,
        step: u64,
        tag: &str,
        png: Vec<u8>,
        width: usize,
        height: usize,
        channels: usize,
    ) -> Result<()> {
        let image = SummaryImage {
            height: height as i32,
            width: width as i32,
            colorspace: channels as i32,
            encoded_image_string: png,
        };
        let value = vec![SummaryValue { tag: tag.into(), simple_value: None, image: Some(image) }];
        self.write(&Event {
            wall_time: wall_time(),
            step: step as i64,
            summary: Some(Summary { value }),
            ..Default::default()
        })
    }

    /// SessionLog START at `step`: TensorBoard discards what earlier files logged at `step` and after (on resume
    /// from a checkpoint at step s, `step` is s + 1).
    pub fn session_start(&mut self, step: u64) -> Result<()> {
        self.write(&Event {
            wall_time: wall_time(),
            step: step as i64,
            session_log: Some(SessionLog { status: 1 }),
            ..Default::default()
        })
    }
}
