//! Finding PTX text in what `cuModuleLoadData` is handed: PTX text itself, a fatbin (magic 0xBA55ED50), or the
//! `__fatbinwrap` struct (magic 0x466243B1) that points at one.
//!
//! Fatbin layout as nvcc 13.0 writes it (observed, not a documented API): a 16-byte header `{u32 magic, u16 version,
//! u16 header_size, u64 entries_size}`, then entries, each `{u16 kind (1 = PTX, 2 = ELF), u16 version,
//! u32 header_size, u64 padded_payload_size, ..., u32 arch at +28, u32 flags at +40 (0x8000 = compressed)}` followed
//! by its payload. PTX payloads are NUL-terminated text when nvcc ran with `--no-compress`.

use std::ffi::CStr;

pub const FATBIN_MAGIC: u32 = 0xBA55_ED50;
pub const WRAPPER_MAGIC: u32 = 0x4662_43B1;
const KIND_PTX: u16 = 1;
const FLAG_COMPRESSED: u32 = 0x8000;

/// What an image turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Image {
    Ptx(String),
    /// Why no PTX could be taken from it.
    Unsupported(String),
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// Classify the image at `ptr` (which has no length: its own headers or a NUL say where it ends).
///
/// # Safety
/// `ptr` must point at a valid image as `cuModuleLoadData` requires.
pub unsafe fn read_image(ptr: *const u8) -> Image {
    if ptr.is_null() {
        return Image::Unsupported("null image".into());
    }
    let head = std::slice::from_raw_parts(ptr, 4);
    let magic = u32::from_le_bytes(head.try_into().unwrap());
    if magic == WRAPPER_MAGIC {
        let inner = std::ptr::read_unaligned(ptr.add(8) as *const *const u8);
        return read_image(inner);
    }
    if magic == FATBIN_MAGIC {
        let header = std::slice::from_raw_parts(ptr, 16);
        let hs = u16_at(header, 6).unwrap() as usize;
        let size = u64_at(header, 8).unwrap() as usize;
        return ptx_from_fatbin(std::slice::from_raw_parts(ptr, hs + size));
    }
    if head == b"\x7fELF" {
        return Image::Unsupported(
            "the image is a cubin (ELF); the simulator runs PTX only (load PTX text or a fatbin with PTX)".into(),
        );
    }
    match CStr::from_ptr(ptr as *const std::ffi::c_char).to_str() {
        Ok(s) => Image::Ptx(s.to_string()),
        Err(e) => Image::Unsupported(format!("the image is neither a fatbin nor UTF-8 PTX text: {e}")),
    }
}

/// The PTX of the highest arch in a fatbin (the whole fatbin, header included).
pub fn ptx_from_fatbin(b: &[u8]) -> Image {
    if u32_at(b, 0) != Some(FATBIN_MAGIC) {
        return Image::Unsupported("not a fatbin".into());
    }
    let hs = u16_at(b, 6).unwrap_or(16) as usize;
    let end = (hs + u64_at(b, 8).unwrap_or(0) as usize).min(b.len());
    let mut off = hs;
    let mut best: Option<(u32, Result<String, String>)> = None;
    while off + 16 <= end {
        let (Some(kind), Some(ehs), Some(psize)) = (u16_at(b, off), u32_at(b, off + 4), u64_at(b, off + 8)) else {
            break;
        };
        let (ehs, psize) = (ehs as usize, psize as usize);
        if ehs == 0 {
            break;
        }
        if kind == KIND_PTX {
            let arch = u32_at(b, off + 28).unwrap_or(0);
            let flags = u32_at(b, off + 40).unwrap_or(0);
            let payload = &b[(off + ehs).min(end)..(off + ehs + psize).min(end)];
            let text = if flags & FLAG_COMPRESSED != 0 || payload.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
                Err(format!(
                    "the PTX (sm_{arch}) in the fatbin is compressed: build it with nvcc --no-compress \
                     (build.rs does when it embeds the kernels)"
                ))
            } else {
                let n = payload.iter().position(|&c| c == 0).unwrap_or(payload.len());
                String::from_utf8(payload[..n].to_vec()).map_err(|e| format!("PTX entry is not UTF-8: {e}"))
            };
            if best.as_ref().is_none_or(|(a, _)| arch > *a) {
                best = Some((arch, text));
            }
        }
        off += ehs + psize;
    }
    match best {
        Some((_, Ok(t))) => Image::Ptx(t),
        Some((_, Err(e))) => Image::Unsupported(e),
        None => Image::Unsupported("the fatbin has no PTX entry (compile with code=compute_XX too)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: u16, arch: u32, flags: u32, payload: &[u8]) -> Vec<u8> {
        let mut e = vec![0u8; 64];
        e[0..2].copy_from_slice(&kind.to_le_bytes());
        e[2..4].copy_from_slice(&0x101u16.to_le_bytes());
        e[4..8].copy_from_slice(&64u32.to_le_bytes());
        let padded = payload.len().div_ceil(8) * 8;
        e[8..16].copy_from_slice(&(padded as u64).to_le_bytes());
        e[28..32].copy_from_slice(&arch.to_le_bytes());
        e[40..44].copy_from_slice(&flags.to_le_bytes());
        e.extend_from_slice(payload);
        e.resize(64 + padded, 0);
        e
    }

    fn fatbin(entries: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = entries.concat();
        let mut f = Vec::new();
        f.extend_from_slice(&FATBIN_MAGIC.to_le_bytes());
        f.extend_from_slice(&1u16.to_le_bytes());
        f.extend_from_slice(&16u16.to_le_bytes());
        f.extend_from_slice(&(body.len() as u64).to_le_bytes());
        f.extend_from_slice(&body);
        f
    }

    #[test]
    fn takes_the_newest_ptx_and_skips_elf() {
        let f = fatbin(&[
            entry(2, 80, 0x11, b"\x7fELFxxxx"),
            entry(1, 80, 0x11, b".version 8.0\0"),
            entry(1, 90, 0x11, b".version 9.0\n.target sm_90\0"),
        ]);
        assert_eq!(ptx_from_fatbin(&f), Image::Ptx(".version 9.0\n.target sm_90".into()));
        // SAFETY: a complete fatbin.
        assert_eq!(unsafe { read_image(f.as_ptr()) }, Image::Ptx(".version 9.0\n.target sm_90".into()));
    }

    #[test]
    fn compressed_ptx_and_cubins_are_refused_with_a_reason() {
        let f = fatbin(&[entry(1, 90, 0x8011, &[0x28, 0xb5, 0x2f, 0xfd, 1, 2])]);
        let Image::Unsupported(why) = ptx_from_fatbin(&f) else { panic!() };
        assert!(why.contains("--no-compress"), "{why}");
        // SAFETY: a NUL-terminated buffer.
        let elf = unsafe { read_image(c"\x7fELF".as_ptr() as *const u8) };
        assert!(matches!(elf, Image::Unsupported(w) if w.contains("cubin")));
    }

    #[test]
    fn plain_text_and_the_wrapper() {
        let text = c".version 9.0";
        // SAFETY: NUL-terminated.
        assert_eq!(unsafe { read_image(text.as_ptr() as *const u8) }, Image::Ptx(".version 9.0".into()));
        let f = fatbin(&[entry(1, 90, 0x11, b"ptx!\0")]);
        let mut w = Vec::new();
        w.extend_from_slice(&WRAPPER_MAGIC.to_le_bytes());
        w.extend_from_slice(&1u32.to_le_bytes());
        w.extend_from_slice(&(f.as_ptr() as u64).to_le_bytes());
        w.extend_from_slice(&0u64.to_le_bytes());
        // SAFETY: the wrapper points at a live fatbin.
        assert_eq!(unsafe { read_image(w.as_ptr()) }, Image::Ptx("ptx!".into()));
    }
}
