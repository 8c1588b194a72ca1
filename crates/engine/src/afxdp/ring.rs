//! The four AF_XDP rings (fill, completion, RX, TX): single-producer single-consumer queues of
//! descriptors in memory shared with the kernel.
//!
//! Protocol (`net/xdp/xsk_queue.h`): a producer Acquire-loads the consumer index (so it never
//! overwrites a slot the consumer still reads), writes descriptors, then Release-stores the
//! producer index (so the consumer sees the descriptors once it sees the index). A consumer
//! Acquire-loads the producer index, reads, then Release-stores the consumer index. Indices are
//! free-running u32 counters; a slot is `index & mask`.
//!
//! The rings are never lent to JavaScript and are unmapped when the socket closes: a closed
//! socket whose rings are still mapped keeps its queue busy.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::errno::Errno;

use crate::ffi;

/// One mmap of a ring, unmapped on drop.
pub struct RingMemory {
    ptr: NonNull<u8>,
    len: usize,
}

impl RingMemory {
    pub fn map(fd: BorrowedFd<'_>, len: usize, pgoff: libc::off_t) -> Result<RingMemory, Errno> {
        // SAFETY: a fresh shared mapping of the socket's ring; the kernel checks len and offset.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                pgoff,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        Ok(RingMemory { ptr: NonNull::new(p.cast()).expect("mmap returned NULL"), len })
    }
}

impl Drop for RingMemory {
    fn drop(&mut self) {
        // SAFETY: our own mapping; the ring that points into it is dropped with it.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A ring of `T` (u64 addresses for fill/completion, `xdp_desc` for RX/TX).
pub struct Ring<T: Copy> {
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    descs: NonNull<T>,
    size: u32,
    /// Our copy of the index we own, and the last seen value of the other side's.
    cached_prod: u32,
    cached_cons: u32,
    /// Keeps the memory mapped; `None` for synthetic rings in tests.
    _memory: Option<RingMemory>,
}

// SAFETY: the ring is used from one thread at a time (the owner of the socket); the shared
// indices are atomics.
unsafe impl<T: Copy> Send for Ring<T> {}

impl<T: Copy> Ring<T> {
    /// Maps the ring of `size` entries at `pgoff` with the offsets the kernel reported.
    pub fn map(fd: BorrowedFd<'_>, off: &ffi::xdp_ring_offset, size: u32, pgoff: libc::off_t) -> Result<Self, Errno> {
        let len = off.desc as usize + size as usize * std::mem::size_of::<T>();
        let memory = RingMemory::map(fd, len, pgoff)?;
        let base = memory.ptr.as_ptr();
        // SAFETY: the kernel's offsets lie inside the mapping it sized for this ring.
        unsafe { Ok(Self::from_raw(base, off, size, Some(memory))) }
    }

    /// # Safety
    /// `base` plus the offsets must address a live ring of `size` entries (a power of two),
    /// with 4-byte aligned indices, for as long as the ring lives.
    unsafe fn from_raw(base: *mut u8, off: &ffi::xdp_ring_offset, size: u32, memory: Option<RingMemory>) -> Self {
        assert!(size.is_power_of_two());
        let at = |o: u64| NonNull::new(base.add(o as usize)).expect("non-null");
        let producer = at(off.producer).cast::<AtomicU32>();
        let consumer = at(off.consumer).cast::<AtomicU32>();
        Ring {
            cached_prod: producer.as_ref().load(Ordering::Acquire),
            cached_cons: consumer.as_ref().load(Ordering::Acquire),
            producer,
            consumer,
            flags: at(off.flags).cast(),
            descs: at(off.desc).cast(),
            size,
            _memory: memory,
        }
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    fn slot(&self, index: u32) -> *mut T {
        // SAFETY: masked into the descriptor array.
        unsafe { self.descs.as_ptr().add((index & (self.size - 1)) as usize) }
    }

    /// Whether the kernel asks to be woken (XDP_RING_NEED_WAKEUP, with XDP_USE_NEED_WAKEUP).
    pub fn needs_wakeup(&self) -> bool {
        // SAFETY: the flags word lives as long as the ring.
        unsafe { self.flags.as_ref() }.load(Ordering::Relaxed) & ffi::XDP_RING_NEED_WAKEUP != 0
    }

    // --- producer side (fill, TX) ---

    /// Slots we may write now.
    pub fn free(&mut self) -> u32 {
        // Acquire: the consumer is done reading every slot before this index.
        // SAFETY: the consumer word lives as long as the ring.
        self.cached_cons = unsafe { self.consumer.as_ref() }.load(Ordering::Acquire);
        self.size - self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Writes the `i`-th next entry (not yet visible to the kernel). `i < free()`.
    pub fn write(&mut self, i: u32, value: T) {
        debug_assert!(i < self.size - self.cached_prod.wrapping_sub(self.cached_cons));
        // SAFETY: a slot the consumer has released (checked by `free`).
        unsafe { self.slot(self.cached_prod.wrapping_add(i)).write_volatile(value) };
    }

    /// The `i`-th next entry as written, before it is published (to take a write back).
    pub fn written(&self, i: u32) -> T {
        // SAFETY: a slot we own (past the producer index), as `write` wrote it.
        unsafe { self.slot(self.cached_prod.wrapping_add(i)).read_volatile() }
    }

    /// Publishes `n` written entries. Release: the entries before the index.
    pub fn submit(&mut self, n: u32) {
        self.cached_prod = self.cached_prod.wrapping_add(n);
        // SAFETY: as above.
        unsafe { self.producer.as_ref() }.store(self.cached_prod, Ordering::Release);
    }

    /// Entries published and not yet consumed by the kernel.
    pub fn outstanding(&mut self) -> u32 {
        self.size - self.free()
    }

    // --- consumer side (RX, completion) ---

    /// Entries ready to read.
    pub fn available(&mut self) -> u32 {
        // Acquire: the entries before this index are written.
        // SAFETY: the producer word lives as long as the ring.
        self.cached_prod = unsafe { self.producer.as_ref() }.load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// The `i`-th entry ready to read. `i < available()`.
    pub fn read(&self, i: u32) -> T {
        debug_assert!(i < self.cached_prod.wrapping_sub(self.cached_cons));
        // SAFETY: a slot the producer has published.
        unsafe { self.slot(self.cached_cons.wrapping_add(i)).read_volatile() }
    }

    /// Hands `n` read entries back. Release: our reads before the index.
    pub fn release(&mut self, n: u32) {
        self.cached_cons = self.cached_cons.wrapping_add(n);
        // SAFETY: as above.
        unsafe { self.consumer.as_ref() }.store(self.cached_cons, Ordering::Release);
    }
}

/// A ring in ordinary memory with the kernel's layout, for tests: the test plays the kernel.
#[cfg(test)]
pub mod synthetic {
    use super::*;

    pub struct Synthetic {
        pub memory: Vec<u64>,
        pub offsets: ffi::xdp_ring_offset,
    }

    impl Synthetic {
        pub fn new<T: Copy>(size: u32) -> Synthetic {
            let words = 8 + (size as usize * std::mem::size_of::<T>()).div_ceil(8);
            Synthetic {
                memory: vec![0; words],
                offsets: ffi::xdp_ring_offset { producer: 0, consumer: 8, flags: 16, desc: 64 },
            }
        }

        pub fn ring<T: Copy>(&mut self, size: u32) -> Ring<T> {
            // SAFETY: the vector outlives the ring in every test (both live in the test body),
            // and is sized for `size` entries after the 64-byte header.
            unsafe { Ring::from_raw(self.memory.as_mut_ptr().cast(), &self.offsets, size, None) }
        }

        fn word(&self, at: usize) -> &AtomicU32 {
            // SAFETY: inside the vector, 8-byte aligned.
            unsafe { &*(self.memory.as_ptr() as *const u8).add(at).cast::<AtomicU32>() }
        }

        /// The kernel side producing into a consumer ring.
        pub fn kernel_produce<T: Copy>(&mut self, size: u32, values: &[T]) {
            let prod = self.word(0).load(Ordering::Relaxed);
            let base = (self.memory.as_mut_ptr() as *mut u8).wrapping_add(64).cast::<T>();
            for (i, v) in values.iter().enumerate() {
                // SAFETY: masked into the descriptor area.
                unsafe { base.add((prod.wrapping_add(i as u32) & (size - 1)) as usize).write(*v) };
            }
            self.word(0).store(prod.wrapping_add(values.len() as u32), Ordering::Release);
        }

        /// The kernel side consuming `n` entries of a producer ring.
        pub fn kernel_consume<T: Copy>(&mut self, size: u32, n: u32) -> Vec<T> {
            let cons = self.word(8).load(Ordering::Relaxed);
            let base = (self.memory.as_ptr() as *const u8).wrapping_add(64).cast::<T>();
            // SAFETY: masked into the descriptor area.
            let out =
                (0..n).map(|i| unsafe { base.add((cons.wrapping_add(i) & (size - 1)) as usize).read() }).collect();
            self.word(8).store(cons.wrapping_add(n), Ordering::Release);
            out
        }

        pub fn set_flags(&self, v: u32) {
            self.word(16).store(v, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::synthetic::Synthetic;
    use super::*;

    #[test]
    fn producer_never_overruns_the_consumer_and_wraps() {
        let mut s = Synthetic::new::<u64>(4);
        let mut ring = s.ring::<u64>(4);
        for round in 0..5u64 {
            assert_eq!(ring.free(), 4);
            for i in 0..4 {
                ring.write(i, round * 10 + i as u64);
            }
            ring.submit(4);
            assert_eq!(ring.free(), 0, "full until the kernel consumes");
            let got: Vec<u64> = s.kernel_consume(4, 4);
            assert_eq!(got, (0..4).map(|i| round * 10 + i).collect::<Vec<_>>());
        }
    }

    #[test]
    fn consumer_sees_only_published_entries() {
        let mut s = Synthetic::new::<ffi::xdp_desc>(8);
        let mut ring = s.ring::<ffi::xdp_desc>(8);
        assert_eq!(ring.available(), 0);
        let d = |a| ffi::xdp_desc { addr: a, len: 60, options: 0 };
        s.kernel_produce(8, &[d(1), d(2), d(3)]);
        assert_eq!(ring.available(), 3);
        assert_eq!(ring.read(0), d(1));
        assert_eq!(ring.read(2), d(3));
        ring.release(2);
        assert_eq!(ring.available(), 1);
        assert_eq!(ring.read(0), d(3));
        s.set_flags(ffi::XDP_RING_NEED_WAKEUP);
        assert!(ring.needs_wakeup());
    }

    #[test]
    fn indices_survive_u32_wraparound() {
        let mut s = Synthetic::new::<u64>(4);
        // Start both indices just below the wrap, as after four billion entries.
        s.memory[0] = (u32::MAX - 1) as u64;
        s.memory[1] = (u32::MAX - 1) as u64;
        let mut ring = s.ring::<u64>(4);
        assert_eq!(ring.free(), 4);
        for i in 0..4 {
            ring.write(i, i as u64);
        }
        ring.submit(4);
        assert_eq!(s.kernel_consume::<u64>(4, 4), vec![0, 1, 2, 3]);
    }
}
