//! Simulated device memory: a table of allocations at fake device addresses, each with its bytes and an
//! initialisation shadow (one byte per byte: 1 = written since allocation), for memcheck and initcheck.
//!
//! Addresses are never reused (a bump allocator with guard gaps), so a use after free or a run past the end lands
//! in no allocation and memcheck names the nearest one. Launches take a `MemView`: a sorted snapshot of the
//! table that kernels read and write through raw pointers while the table cannot change (the driver runs one
//! launch at a time; blocks of that launch run on several host threads at once).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{RwLock, RwLockReadGuard};

/// First device address handed out (looks like a real device pointer in messages).
pub const GLOBAL_BASE: u64 = 0x7f00_0000_0000;
/// Address space per simulated device: device i's allocations start at `GLOBAL_BASE + i * DEVICE_SPAN`, so a
/// pointer names its device and one device's memory table never holds another's addresses.
pub const DEVICE_SPAN: u64 = 0x0040_0000_0000;
/// Allocation granularity and alignment (cudaMalloc gives at least 256-byte alignment).
pub const ALIGN: u64 = 256;
/// Unmapped bytes after every allocation so an overrun never lands in the next one.
pub const GUARD: u64 = 4096;
/// Generic addresses of the CTA's shared window: `GENERIC_SHARED_BASE + offset` (what `cvta.shared` gives).
pub const GENERIC_SHARED_BASE: u64 = 0x1000_0000_0000;
/// Generic addresses of the thread's local window: `GENERIC_LOCAL_BASE + offset`.
pub const GENERIC_LOCAL_BASE: u64 = 0x2000_0000_0000;
/// Size of each generic window.
pub const GENERIC_WINDOW: u64 = 0x0100_0000_0000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemError {
    /// `[addr, addr+len)` is not inside one live allocation.
    OutOfBounds { addr: u64, len: u64, nearest: String },
    /// `free` of something that is not the start of a live allocation.
    BadFree { addr: u64 },
    /// The host could not provide the bytes.
    OutOfMemory { size: u64 },
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemError::OutOfBounds { addr, len, nearest } => {
                write!(f, "{len} bytes at {addr:#x} are outside every allocation ({nearest})")
            }
            MemError::BadFree { addr } => write!(f, "free of {addr:#x}, which is not the start of a live allocation"),
            MemError::OutOfMemory { size } => write!(f, "out of memory allocating {size} bytes"),
        }
    }
}

struct Allocation {
    size: u64,
    data: *mut u8,
    init: *mut u8,
    tag: String,
}

// SAFETY: the raw pointers own heap blocks; access is coordinated by `DeviceMemory`'s lock (see the module doc).
unsafe impl Send for Allocation {}
unsafe impl Sync for Allocation {}

impl Allocation {
    fn new(size: u64, tag: &str) -> Result<Allocation, MemError> {
        let n = usize::try_from(size).map_err(|_| MemError::OutOfMemory { size })?;
        let data = Box::into_raw(vec![0u8; n].into_boxed_slice()) as *mut u8;
        let init = Box::into_raw(vec![0u8; n].into_boxed_slice()) as *mut u8;
        Ok(Allocation { size, data, init, tag: tag.to_string() })
    }
}

impl Drop for Allocation {
    fn drop(&mut self) {
        let n = self.size as usize;
        // SAFETY: both pointers came from `Box<[u8]>` of length n in `Allocation::new`.
        unsafe {
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.data, n)));
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.init, n)));
        }
    }
}

#[derive(Default)]
struct Table {
    allocs: BTreeMap<u64, Allocation>,
    next: u64,
    live_bytes: u64,
}

impl Table {
    /// The allocation holding all of `[addr, addr+len)`, as (base, allocation).
    fn find(&self, addr: u64, len: u64) -> Option<(u64, &Allocation)> {
        let (&base, a) = self.allocs.range(..=addr).next_back()?;
        let end = addr.checked_add(len)?;
        (end <= base + a.size).then_some((base, a))
    }

    fn nearest(&self, addr: u64) -> String {
        let below = self.allocs.range(..=addr).next_back();
        let above = self.allocs.range(addr.saturating_add(1)..).next();
        let describe = |(&base, a): (&u64, &Allocation)| {
            let rel = addr as i128 - base as i128;
            format!("{} bytes at {base:#x}{}{}, address is {rel:+} from its start", a.size, tag_sep(&a.tag), a.tag)
        };
        match (below, above) {
            (Some(b), Some(a)) => {
                let db = addr.saturating_sub(b.0 + b.1.size);
                let da = a.0 - addr;
                if db <= da {
                    format!("nearest allocation: {}", describe(b))
                } else {
                    format!("nearest allocation: {}", describe(a))
                }
            }
            (Some(b), None) => format!("nearest allocation: {}", describe(b)),
            (None, Some(a)) => format!("nearest allocation: {}", describe(a)),
            (None, None) => "no live allocations".to_string(),
        }
    }
}

fn tag_sep(tag: &str) -> &'static str {
    if tag.is_empty() {
        ""
    } else {
        " "
    }
}

/// All device memory of the simulated process.
pub struct DeviceMemory {
    table: RwLock<Table>,
}

impl Default for DeviceMemory {
    fn default() -> Self {
        DeviceMemory::new()
    }
}

impl DeviceMemory {
    pub fn new() -> DeviceMemory {
        DeviceMemory::at(GLOBAL_BASE)
    }

    /// An empty table whose first allocation is at `base` (device i: `GLOBAL_BASE + i * DEVICE_SPAN`).
    pub fn at(base: u64) -> DeviceMemory {
        DeviceMemory { table: RwLock::new(Table { next: base, ..Table::default() }) }
    }

    /// A new allocation of `size` bytes (uninitialised for initcheck; its bytes are zero on the host side).
    /// `tag` is free text shown in reports (e.g. "module global __cudart_i2opi_f").
    pub fn alloc(&self, size: u64, tag: &str) -> Result<u64, MemError> {
        let a = Allocation::new(size, tag)?;
        let mut t = self.table.write().unwrap();
        let base = t.next;
        t.next = (base + size.max(1) + GUARD).div_ceil(ALIGN) * ALIGN;
        t.live_bytes += size;
        t.allocs.insert(base, a);
        Ok(base)
    }

    pub fn free(&self, addr: u64) -> Result<(), MemError> {
        let mut t = self.table.write().unwrap();
        let a = t.allocs.remove(&addr).ok_or(MemError::BadFree { addr })?;
        t.live_bytes -= a.size;
        Ok(())
    }

    /// Bytes in live allocations.
    pub fn live_bytes(&self) -> u64 {
        self.table.read().unwrap().live_bytes
    }

    /// Host -> device; marks the bytes initialised.
    pub fn write(&self, dst: u64, src: &[u8]) -> Result<(), MemError> {
        let t = self.table.read().unwrap();
        let len = src.len() as u64;
        let (base, a) = t.find(dst, len).ok_or_else(|| oob(&t, dst, len))?;
        let off = (dst - base) as usize;
        // SAFETY: [off, off+len) is inside the allocation; no launch runs while the driver copies.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), a.data.add(off), src.len());
            std::ptr::write_bytes(a.init.add(off), 1, src.len());
        }
        Ok(())
    }

    /// Device -> host.
    pub fn read(&self, src: u64, dst: &mut [u8]) -> Result<(), MemError> {
        let t = self.table.read().unwrap();
        let len = dst.len() as u64;
        let (base, a) = t.find(src, len).ok_or_else(|| oob(&t, src, len))?;
        let off = (src - base) as usize;
        // SAFETY: [off, off+len) is inside the allocation.
        unsafe { std::ptr::copy_nonoverlapping(a.data.add(off), dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    /// How many of the bytes at `[src, src+len)` were never written (for an initcheck of copies, if wanted).
    pub fn uninitialised_bytes(&self, src: u64, len: u64) -> Result<u64, MemError> {
        let t = self.table.read().unwrap();
        let (base, a) = t.find(src, len).ok_or_else(|| oob(&t, src, len))?;
        let off = (src - base) as usize;
        // SAFETY: inside the allocation.
        let init = unsafe { std::slice::from_raw_parts(a.init.add(off), len as usize) };
        Ok(init.iter().filter(|&&b| b == 0).count() as u64)
    }

    /// `count` copies of `pattern` (1, 2 or 4 bytes: cuMemsetD8/D16/D32) from `dst`.
    pub fn fill(&self, dst: u64, pattern: &[u8], count: u64) -> Result<(), MemError> {
        let t = self.table.read().unwrap();
        let len = count * pattern.len() as u64;
        let (base, a) = t.find(dst, len).ok_or_else(|| oob(&t, dst, len))?;
        let off = (dst - base) as usize;
        // SAFETY: inside the allocation.
        unsafe {
            let bytes = std::slice::from_raw_parts_mut(a.data.add(off), len as usize);
            for chunk in bytes.chunks_exact_mut(pattern.len()) {
                chunk.copy_from_slice(pattern);
            }
            std::ptr::write_bytes(a.init.add(off), 1, len as usize);
        }
        Ok(())
    }

    /// Device -> device (the init shadow travels with the bytes). Overlap is allowed.
    pub fn copy(&self, dst: u64, src: u64, len: u64) -> Result<(), MemError> {
        let t = self.table.read().unwrap();
        let (sb, sa) = t.find(src, len).ok_or_else(|| oob(&t, src, len))?;
        let (db, da) = t.find(dst, len).ok_or_else(|| oob(&t, dst, len))?;
        let (so, doff) = ((src - sb) as usize, (dst - db) as usize);
        // SAFETY: both ranges are inside their allocations; `copy` handles overlap.
        unsafe {
            std::ptr::copy(sa.data.add(so), da.data.add(doff), len as usize);
            std::ptr::copy(sa.init.add(so), da.init.add(doff), len as usize);
        }
        Ok(())
    }

    /// "nearest allocation: ..." for a report about `addr`.
    pub fn describe(&self, addr: u64) -> String {
        self.table.read().unwrap().nearest(addr)
    }

    /// A snapshot for one launch; the table cannot change while it lives.
    pub fn view(&self) -> MemView<'_> {
        let guard = self.table.read().unwrap();
        let regions = guard
            .allocs
            .iter()
            .map(|(&base, a)| Region { base, end: base + a.size, data: a.data, init: a.init })
            .collect();
        MemView { guard, regions }
    }
}

fn oob(t: &Table, addr: u64, len: u64) -> MemError {
    MemError::OutOfBounds { addr, len, nearest: t.nearest(addr) }
}

/// One live allocation as a launch sees it.
#[derive(Clone, Copy, Debug)]
pub struct Region {
    pub base: u64,
    pub end: u64,
    /// `data[addr - base]` is the byte at `addr`.
    pub data: *mut u8,
    /// `init[addr - base]` is 1 once the byte at `addr` has been written.
    pub init: *mut u8,
}

/// The allocation table frozen for one launch.
pub struct MemView<'a> {
    guard: RwLockReadGuard<'a, Table>,
    regions: Vec<Region>,
}

// SAFETY: the regions point into allocations the read guard keeps alive; kernels' concurrent accesses to them are
// the simulated program's business (racy kernels are reported, not prevented).
unsafe impl Send for MemView<'_> {}
unsafe impl Sync for MemView<'_> {}

impl MemView<'_> {
    /// The region holding all of `[addr, addr+len)`.
    #[inline]
    pub fn find(&self, addr: u64, len: u64) -> Option<&Region> {
        let i = self.regions.partition_point(|r| r.base <= addr);
        let r = self.regions.get(i.checked_sub(1)?)?;
        (addr.checked_add(len)? <= r.end).then_some(r)
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// "nearest allocation: ..." for a report about `addr`.
    pub fn describe(&self, addr: u64) -> String {
        self.guard.nearest(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_fill_copy_and_bounds() {
        let m = DeviceMemory::new();
        let a = m.alloc(16, "a").unwrap();
        let b = m.alloc(16, "b").unwrap();
        assert!(b >= a + 16 + GUARD && b.is_multiple_of(ALIGN));
        m.write(a, &[1, 2, 3, 4]).unwrap();
        assert_eq!(m.uninitialised_bytes(a, 16).unwrap(), 12);
        m.fill(a + 4, &[9, 8], 6).unwrap();
        m.copy(b, a, 16).unwrap();
        let mut out = [0u8; 16];
        m.read(b, &mut out).unwrap();
        assert_eq!(out, [1, 2, 3, 4, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8]);
        assert_eq!(m.uninitialised_bytes(b, 16).unwrap(), 0);
        let err = m.write(a + 12, &[0; 8]).unwrap_err();
        assert!(matches!(err, MemError::OutOfBounds { .. }), "{err}");
        assert!(err.to_string().contains("16 bytes at"), "{err}");
        let v = m.view();
        assert_eq!(v.find(a + 15, 1).unwrap().base, a);
        assert!(v.find(a + 15, 2).is_none());
        assert!(v.find(a - 1, 1).is_none());
        drop(v);
        m.free(a).unwrap();
        assert_eq!(m.free(a), Err(MemError::BadFree { addr: a }));
        assert!(m.view().find(a, 1).is_none(), "freed memory is unmapped, never reused");
    }
}
