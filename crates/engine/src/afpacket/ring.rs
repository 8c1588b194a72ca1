//! The memory of a packet ring: the shared mapping, its geometry, and the handing of blocks and
//! frames back and forth between the kernel and us.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use nix::errno::Errno;

use crate::error::{Error, Result, Subject};
use crate::ffi;

/// Size and shape of a ring, already validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingGeometry {
    pub block_size: u32,
    pub block_count: u32,
    pub frame_size: u32,
}

impl RingGeometry {
    pub fn frames_per_block(&self) -> u32 {
        self.block_size / self.frame_size
    }

    pub fn frame_count(&self) -> u32 {
        self.frames_per_block() * self.block_count
    }

    /// Where frame `index` starts in the mapping (frames never straddle blocks).
    pub fn frame_offset(&self, index: u32) -> usize {
        let per_block = self.frames_per_block();
        (index / per_block) as usize * self.block_size as usize
            + (index % per_block) as usize * self.frame_size as usize
    }

    pub fn total_bytes(&self) -> usize {
        self.block_size as usize * self.block_count as usize
    }

    /// The rules of `packet_set_ring()`, checked before any system call so the error can name
    /// the option. `min_frame` is the smallest frame that holds the headers of this ring kind.
    pub fn validate(&self, min_frame: u32) -> Result<()> {
        let page = page_size();
        let bs = self.block_size;
        if bs == 0 || !bs.is_power_of_two() || !bs.is_multiple_of(page) {
            return Err(Error::invalid_option(
                "blockSize",
                format!("must be a power of two and a multiple of the page size ({page}), got {bs}"),
            ));
        }
        if self.block_count == 0 {
            return Err(Error::invalid_option("blockCount", "must be at least 1, got 0"));
        }
        // The kernel computes block_size * block_nr in 32 bits.
        if self.total_bytes() > u32::MAX as usize {
            return Err(Error::invalid_option(
                "blockCount",
                format!("blockSize × blockCount must stay below 4 GiB, got {} bytes", self.total_bytes()),
            ));
        }
        let fs = self.frame_size;
        if !fs.is_multiple_of(ffi::TPACKET_ALIGNMENT as u32) || fs < min_frame || fs > bs {
            return Err(Error::invalid_option(
                "frameSize",
                format!(
                    "must be a multiple of {}, at least {min_frame} and at most blockSize ({bs}), got {fs}",
                    ffi::TPACKET_ALIGNMENT
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn to_req3(self, retire_tov_ms: u32, feature_req_word: u32) -> ffi::tpacket_req3 {
        ffi::tpacket_req3 {
            tp_block_size: self.block_size,
            tp_block_nr: self.block_count,
            tp_frame_size: self.frame_size,
            tp_frame_nr: self.frame_count(),
            tp_retire_blk_tov: retire_tov_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: feature_req_word,
        }
    }
}

pub fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as u32
    } else {
        4096
    }
}

/// A shared mapping of a packet socket's rings.
///
/// It is reference-counted on purpose: the engine holds one reference, and the binding hands
/// one to every JavaScript buffer it creates over ring memory. The pages stay mapped until the
/// last of them is gone, so no buffer can ever point at unmapped memory, whatever order the
/// socket and the buffers are released in; and after that, the range becomes an inert mapping
/// rather than a hole (see `Drop`).
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    locked: bool,
}

// SAFETY: the mapping is plain shared memory; who may touch which block is governed by the ring
// protocol (status words), not by the thread that holds the pointer.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of the socket's rings. Tries `MAP_LOCKED` first so the pages never fault
    /// on the hot path, and falls back without it when the memlock limit refuses (an
    /// unprivileged process without CAP_IPC_LOCK).
    pub fn map(fd: BorrowedFd<'_>, len: usize, subject: &Subject) -> Result<Arc<Mapping>> {
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let attempt = |flags: libc::c_int| {
            // SAFETY: a fresh shared mapping of the socket; the kernel checks `len` against the
            // ring it set up.
            let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd.as_raw_fd(), 0) };
            if p == libc::MAP_FAILED {
                Err(Errno::last())
            } else {
                Ok(p.cast::<u8>())
            }
        };
        let (ptr, locked) = match attempt(libc::MAP_SHARED | libc::MAP_LOCKED | libc::MAP_POPULATE) {
            Ok(p) => (p, true),
            Err(Errno::EAGAIN | Errno::ENOMEM | Errno::EPERM) => match attempt(libc::MAP_SHARED) {
                Ok(p) => (p, false),
                Err(e) => return Err(Error::sys(e, "mmap", subject.clone(), format!("mapping the {len}-byte ring"))),
            },
            Err(e) => return Err(Error::sys(e, "mmap", subject.clone(), format!("mapping the {len}-byte ring"))),
        };
        Ok(Arc::new(Mapping { ptr: NonNull::new(ptr).expect("mmap returned NULL"), len, locked }))
    }

    /// Anonymous memory of `len` bytes (an AF_XDP UMEM), page aligned and populated, lent to
    /// JavaScript the same way as a ring.
    pub fn anonymous(len: usize, subject: &Subject) -> Result<Arc<Mapping>> {
        // SAFETY: a fresh private anonymous mapping.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::last("mmap", subject.clone(), format!("allocating {len} bytes of packet memory")));
        }
        Ok(Arc::new(Mapping { ptr: NonNull::new(p.cast()).expect("mmap returned NULL"), len, locked: false }))
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn locked(&self) -> bool {
        self.locked
    }

    /// The status word at `offset`, shared with the kernel.
    ///
    /// # Safety
    /// `offset` must be 4-byte aligned and `offset + 4 <= len`.
    pub(crate) unsafe fn status_word(&self, offset: usize) -> &AtomicU32 {
        debug_assert!(offset.is_multiple_of(4) && offset + 4 <= self.len);
        &*self.ptr.as_ptr().add(offset).cast::<AtomicU32>()
    }
}

impl Drop for Mapping {
    /// Every reference we know of is gone, but a pointer may still be out there: a Buffer over
    /// the ring handed to an asynchronous native API (zlib, fs, crypto on the thread pool) is
    /// read after JavaScript let go of it. So the ring is never unmapped into a hole: one
    /// `mmap(MAP_FIXED)` atomically replaces it with an inert, private, anonymous mapping of
    /// the same range (reads see zeros, the kernel frees the ring), and that range stays
    /// reserved for the life of the process. It costs address space only (no memory: the
    /// pages are never touched, and adjacent ranges merge into one VMA); a late reader gets
    /// zeros instead of SIGSEGV. It is writable, since a late writer is as possible as a late
    /// reader: a lent ArrayBuffer moved to another thread (transfer list) outlives the
    /// environment that lent it, whose exit hook runs the buffer's finalizer while that thread
    /// still writes into it. A page written then costs memory, nothing else.
    fn drop(&mut self) {
        // SAFETY: we own this range; MAP_FIXED replaces exactly it, and nothing of ours uses it.
        let inert = unsafe {
            libc::mmap(
                self.ptr.as_ptr().cast(),
                self.len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if inert == libc::MAP_FAILED {
            // Out of mappings (vm.max_map_count): unmapping is all that is left to free the ring.
            // SAFETY: as above.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}

/// The RX ring: `block_count` blocks that the kernel fills and we read.
pub struct RxRing {
    map: Arc<Mapping>,
    geometry: RingGeometry,
}

impl RxRing {
    pub(crate) fn new(map: Arc<Mapping>, geometry: RingGeometry) -> Self {
        RxRing { map, geometry }
    }

    pub fn mapping(&self) -> &Arc<Mapping> {
        &self.map
    }

    pub fn geometry(&self) -> RingGeometry {
        self.geometry
    }

    fn block_offset(&self, index: u32) -> usize {
        index as usize * self.geometry.block_size as usize
    }

    fn status(&self, index: u32) -> &AtomicU32 {
        assert!(index < self.geometry.block_count);
        // SAFETY: the block starts inside the mapping and is page aligned.
        unsafe { self.map.status_word(self.block_offset(index) + ffi::BLOCK_STATUS_OFFSET) }
    }

    /// Whether the kernel has handed block `index` to us. Acquire pairs with the kernel's
    /// `smp_wmb()` before it sets TP_STATUS_USER, so the block's contents are visible once we
    /// see the flag.
    pub fn is_user(&self, index: u32) -> bool {
        self.status(index).load(Ordering::Acquire) & ffi::TP_STATUS_USER != 0
    }

    /// Hands block `index` back to the kernel. Release orders every read and write we made to
    /// the block before the kernel can see it as its own again.
    pub fn release(&self, index: u32) {
        self.status(index).store(ffi::TP_STATUS_KERNEL, Ordering::Release);
    }

    /// The bytes of block `index`.
    ///
    /// # Safety
    /// The block must be ours (`is_user`) and stay ours while the slice lives.
    // Exclusive access comes from the ring protocol (the block is ours while TP_STATUS_USER),
    // not from Rust borrows of the shared mapping; the contract is in `# Safety`.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn block_mut(&self, index: u32) -> &mut [u8] {
        std::slice::from_raw_parts_mut(
            self.map.as_ptr().add(self.block_offset(index)),
            self.geometry.block_size as usize,
        )
    }
}

/// The TX ring: frames of `frame_size` bytes that we fill and the kernel sends.
///
/// Layout, chosen deliberately: the socket is TPACKET_V3, so every TX frame starts with a
/// `tpacket3_hdr` (status at byte 20, `tp_len` at 16, `tp_next_offset` at 0, which must be 0:
/// V3 TX has no variable-sized slots). Without PACKET_TX_HAS_OFF the kernel reads the frame
/// data at `TPACKET3_HDRLEN - sizeof(sockaddr_ll)` = 48 bytes into the frame
/// (`tpacket_parse_header()` in net/packet/af_packet.c). A V1/V2 header written here would be
/// accepted by sendto() and silently never sent. Unlike RX, TX frames have no block
/// descriptors: blocks only group whole frames.
pub struct TxRing {
    map: Arc<Mapping>,
    geometry: RingGeometry,
}

/// Where frame data starts inside a TX frame.
pub const TX_DATA_OFFSET: usize = ffi::TPACKET3_HDRLEN - ffi::SOCKADDR_LL_LEN;

impl TxRing {
    pub(crate) fn new(map: Arc<Mapping>, geometry: RingGeometry) -> Self {
        TxRing { map, geometry }
    }

    pub fn mapping(&self) -> &Arc<Mapping> {
        &self.map
    }

    pub fn frame_count(&self) -> u32 {
        self.geometry.frame_count()
    }

    /// Bytes of frame data a slot holds.
    pub fn capacity(&self) -> usize {
        self.geometry.frame_size as usize - TX_DATA_OFFSET
    }

    fn frame_offset(&self, index: u32) -> usize {
        assert!(index < self.frame_count());
        self.geometry.frame_offset(index)
    }

    /// The frame's status. Acquire pairs with the kernel setting TP_STATUS_AVAILABLE once the
    /// frame was sent, so we never write into a frame the kernel may still read.
    pub fn status(&self, index: u32) -> u32 {
        // SAFETY: frames are 16-byte aligned inside the mapping.
        unsafe { self.map.status_word(self.frame_offset(index) + ffi::TP3_STATUS_OFFSET) }.load(Ordering::Acquire)
    }

    /// Marks a frame we own AVAILABLE again (after the kernel rejected it, or when a lent frame
    /// is given back: its header may have been written through a run's buffer).
    pub fn reset(&self, index: u32) {
        // SAFETY: as in `status`.
        unsafe { self.map.status_word(self.frame_offset(index) + ffi::TP3_STATUS_OFFSET) }
            .store(ffi::TP_STATUS_AVAILABLE, Ordering::Release);
    }

    /// The data area of frame `index`.
    pub fn data_ptr(&self, index: u32) -> *mut u8 {
        // SAFETY: inside the mapping (frame_offset asserts the index).
        unsafe { self.map.as_ptr().add(self.frame_offset(index) + TX_DATA_OFFSET) }
    }

    /// Hands frame `index`, holding `len` bytes of data, to the kernel. Release orders the data
    /// and header writes before the status the kernel reads.
    ///
    /// # Safety
    /// The frame must be ours (AVAILABLE and not handed out elsewhere), `len <= capacity()`.
    pub unsafe fn submit(&self, index: u32, len: u32) {
        let hdr = self.map.as_ptr().add(self.frame_offset(index)).cast::<ffi::tpacket3_hdr>();
        // The whole header is written, never read back: a run of slots lent as one buffer
        // spans the headers of its later frames, so whatever JavaScript wrote there is replaced
        // here before the kernel may read it. The status word is published last.
        let h = ffi::tpacket3_hdr {
            tp_len: len,
            tp_snaplen: len,
            tp_mac: TX_DATA_OFFSET as u16,
            tp_status: ffi::TP_STATUS_AVAILABLE,
            ..Default::default()
        };
        std::ptr::write(hdr, h);
        self.map
            .status_word(self.frame_offset(index) + ffi::TP3_STATUS_OFFSET)
            .store(ffi::TP_STATUS_SEND_REQUEST, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geo(block_size: u32, block_count: u32, frame_size: u32) -> RingGeometry {
        RingGeometry { block_size, block_count, frame_size }
    }

    #[test]
    fn a_dropped_mapping_leaves_an_inert_readable_writable_range_not_a_hole() {
        let len = 4 * page_size() as usize;
        // SAFETY: a fresh shared anonymous mapping stands in for a ring.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        let ptr = p.cast::<u8>();
        // SAFETY: inside the mapping just created.
        unsafe { ptr.add(len - 1).write(0xab) };
        drop(Mapping { ptr: NonNull::new(ptr).unwrap(), len, locked: false });
        // A late reader (a thread-pool job holding the pointer) reads zeros instead of faulting.
        // SAFETY: the range is still mapped, readable and writable: that is what is under test.
        let last = unsafe { std::ptr::read_volatile(ptr.add(len - 1)) };
        assert_eq!(last, 0);
        // A late writer (a lent buffer moved to a thread that outlived the lender) does not fault.
        // SAFETY: as above.
        unsafe { std::ptr::write_volatile(ptr, 0xcd) };
        let start = ptr as usize;
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let line = maps
            .lines()
            .find(|l| {
                let (range, _) = l.split_once(' ').unwrap();
                let (a, b) = range.split_once('-').unwrap();
                let (a, b) = (usize::from_str_radix(a, 16).unwrap(), usize::from_str_radix(b, 16).unwrap());
                a <= start && start < b
            })
            .expect("the range is still mapped");
        assert!(line.split_whitespace().nth(1).unwrap().starts_with("rw-p"), "{line}");
    }

    #[test]
    fn accepts_a_normal_ring() {
        assert!(geo(1 << 20, 16, 2048).validate(80).is_ok());
        assert_eq!(geo(1 << 20, 16, 2048).frame_count(), 16 * 512);
    }

    #[test]
    fn names_the_option_that_is_wrong() {
        let opt = |g: RingGeometry| match g.validate(80).unwrap_err().subject {
            Subject::Option(o) => o,
            other => panic!("{other:?}"),
        };
        assert_eq!(opt(geo(5000, 4, 2048)), "blockSize");
        assert_eq!(opt(geo(3 * 4096, 4, 2048)), "blockSize");
        assert_eq!(opt(geo(2048, 4, 2048)), "blockSize");
        assert_eq!(opt(geo(1 << 20, 0, 2048)), "blockCount");
        assert_eq!(opt(geo(1 << 22, 1024, 2048)), "blockCount");
        assert_eq!(opt(geo(1 << 20, 4, 2050)), "frameSize");
        assert_eq!(opt(geo(1 << 20, 4, 64)), "frameSize");
        assert_eq!(opt(geo(4096, 4, 8192)), "frameSize");
    }
}
