//! The UMEM: the packet memory shared by an AF_XDP socket and the kernel, cut into frames, and
//! the ownership of each frame.
//!
//! A frame belongs to exactly one party at a time:
//!
//! ```text
//! RX:  Free ──post──▶ Fill (fill ring / kernel) ──rx desc──▶ Lent (a batch JS can see) ──release──▶ Free
//! TX:  Free ──allocate──▶ TxLent (a slot JS writes) ──commit──▶ TxQueued (TX ring / kernel) ──completion──▶ Free
//!      Free ──send (copy)────────────────────────────────────▶ TxQueued
//! ```
//!
//! Only a Free frame may be posted to the fill ring, so a frame JavaScript can still see is
//! never handed to the kernel for writing. Every address the kernel hands back is checked
//! against this table before anything reads the frame: a descriptor that points outside the
//! socket's frames, crosses a frame, or names a frame in the wrong state is an error.
//!
//! RX frames are posted in address order, cycling over the RX range, so the frames of one RX
//! batch are consecutive in memory (one or two runs, split where the range wraps): each run is
//! lent to JavaScript as one ArrayBuffer covering only that batch's frames.

use std::ops::Range;

use crate::ffi;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameState {
    Free,
    Fill,
    Lent,
    TxLent,
    TxQueued,
}

/// Why a descriptor from the kernel was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadDescriptor {
    OutsideRange { addr: u64 },
    CrossesFrame { addr: u64, len: u32 },
    Empty { addr: u64 },
    WrongState { frame: u32, state: FrameState },
}

impl std::fmt::Display for BadDescriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadDescriptor::OutsideRange { addr } => write!(f, "address {addr:#x} is outside this socket's frames"),
            BadDescriptor::CrossesFrame { addr, len } => write!(f, "{len} bytes at {addr:#x} cross a frame boundary"),
            BadDescriptor::Empty { addr } => write!(f, "zero-length descriptor at {addr:#x}"),
            BadDescriptor::WrongState { frame, state } => {
                write!(f, "frame {frame} came back from the kernel while it was {state:?}")
            }
        }
    }
}

/// A received packet, checked: its frame, offset in the frame and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxFrame {
    pub frame: u32,
    pub offset: u32,
    pub len: u32,
}

/// The frame table of one UMEM.
pub struct Frames {
    frame_size: u32,
    states: Vec<FrameState>,
    rx: Range<u32>,
    tx: Range<u32>,
    /// The next RX frame to post to the fill ring (cycles over `rx`).
    fill_cursor: u32,
    /// The next TX frame to hand out (cycles over `tx`).
    tx_cursor: u32,
    tx_free: u32,
}

impl Frames {
    pub fn new(frame_size: u32, rx: Range<u32>, tx: Range<u32>) -> Frames {
        assert!(frame_size.is_power_of_two() && (rx.is_empty() || tx.is_empty() || rx.end <= tx.start));
        let count = rx.end.max(tx.end);
        Frames {
            frame_size,
            states: vec![FrameState::Free; count as usize],
            fill_cursor: rx.start,
            tx_cursor: tx.start,
            tx_free: tx.len() as u32,
            rx,
            tx,
        }
    }

    pub fn frame_size(&self) -> u32 {
        self.frame_size
    }

    pub fn state(&self, frame: u32) -> FrameState {
        self.states[frame as usize]
    }

    pub fn addr(&self, frame: u32) -> u64 {
        frame as u64 * self.frame_size as u64
    }

    pub fn rx_range(&self) -> Range<u32> {
        self.rx.clone()
    }

    pub fn tx_range(&self) -> Range<u32> {
        self.tx.clone()
    }

    /// Takes up to `max` Free RX frames for the fill ring, in address order from the cursor,
    /// stopping at the first frame that is not Free (still lent): frames come back in order, so
    /// waiting for it keeps batches consecutive. Each is marked Fill and passed to `post`.
    pub fn take_for_fill(&mut self, max: u32, mut post: impl FnMut(u64)) -> u32 {
        let mut n = 0;
        while n < max && !self.rx.is_empty() && self.states[self.fill_cursor as usize] == FrameState::Free {
            self.states[self.fill_cursor as usize] = FrameState::Fill;
            post(self.addr(self.fill_cursor));
            n += 1;
            self.fill_cursor += 1;
            if self.fill_cursor == self.rx.end {
                self.fill_cursor = self.rx.start;
            }
        }
        n
    }

    /// Checks an RX descriptor and marks its frame Lent.
    pub fn accept_rx(&mut self, desc: &ffi::xdp_desc) -> Result<RxFrame, BadDescriptor> {
        let fs = self.frame_size as u64;
        let frame = desc.addr / fs;
        if frame < self.rx.start as u64 || frame >= self.rx.end as u64 {
            return Err(BadDescriptor::OutsideRange { addr: desc.addr });
        }
        let offset = (desc.addr % fs) as u32;
        if desc.len == 0 {
            return Err(BadDescriptor::Empty { addr: desc.addr });
        }
        if offset as u64 + desc.len as u64 > fs {
            return Err(BadDescriptor::CrossesFrame { addr: desc.addr, len: desc.len });
        }
        let frame = frame as u32;
        match self.states[frame as usize] {
            FrameState::Fill => {
                self.states[frame as usize] = FrameState::Lent;
                Ok(RxFrame { frame, offset, len: desc.len })
            }
            state => Err(BadDescriptor::WrongState { frame, state }),
        }
    }

    /// A released batch's frames become Free (the caller detached every buffer over them).
    pub fn release_lent(&mut self, first: u32, count: u32) {
        for f in first..first + count {
            debug_assert_eq!(self.states[f as usize], FrameState::Lent);
            self.states[f as usize] = FrameState::Free;
        }
    }

    /// TX frames not in use.
    pub fn tx_free(&self) -> u32 {
        self.tx_free
    }

    /// Takes up to `max` consecutive Free TX frames from the cursor, marked `state` (TxLent or
    /// TxQueued). Returns the first frame and how many; frames leave the run at the range end or
    /// at the first frame still in use.
    pub fn take_tx_run(&mut self, max: u32, state: FrameState) -> Option<(u32, u32)> {
        if self.tx_free == 0 || max == 0 {
            return None;
        }
        // Completions come back in submission order in copy mode, so the cursor frame is
        // usually free; otherwise look for the next free one.
        let len = self.tx.len() as u32;
        let mut start = self.tx_cursor;
        for _ in 0..len {
            if self.states[start as usize] == FrameState::Free {
                break;
            }
            start = if start + 1 == self.tx.end { self.tx.start } else { start + 1 };
        }
        let mut n = 0;
        while n < max && start + n < self.tx.end && self.states[(start + n) as usize] == FrameState::Free {
            self.states[(start + n) as usize] = state;
            n += 1;
        }
        self.tx_free -= n;
        let next = start + n;
        self.tx_cursor = if next == self.tx.end { self.tx.start } else { next };
        Some((start, n))
    }

    /// Gives back a frame `take_tx_run` marked TxQueued that never reached the kernel.
    pub fn untake_tx(&mut self, frame: u32) {
        debug_assert_eq!(self.states[frame as usize], FrameState::TxQueued);
        self.states[frame as usize] = FrameState::Free;
        self.tx_free += 1;
    }

    /// A lent TX slot's frame, checked: `Some(())` when it was TxLent.
    pub fn tx_lent_to(&mut self, frame: u32, state: FrameState) -> bool {
        if !self.tx.contains(&frame) || self.states[frame as usize] != FrameState::TxLent {
            return false;
        }
        self.states[frame as usize] = state;
        if state == FrameState::Free {
            self.tx_free += 1;
        }
        true
    }

    /// A completion-ring address: must be a TxQueued frame, which becomes Free.
    pub fn complete(&mut self, addr: u64) -> Result<u32, BadDescriptor> {
        let frame = addr / self.frame_size as u64;
        if frame < self.tx.start as u64 || frame >= self.tx.end as u64 {
            return Err(BadDescriptor::OutsideRange { addr });
        }
        let frame = frame as u32;
        match self.states[frame as usize] {
            FrameState::TxQueued => {
                self.states[frame as usize] = FrameState::Free;
                self.tx_free += 1;
                Ok(frame)
            }
            state => Err(BadDescriptor::WrongState { frame, state }),
        }
    }

    /// TX frames handed to the kernel and not completed yet.
    pub fn tx_in_flight(&self) -> u32 {
        self.tx.clone().filter(|&f| self.states[f as usize] == FrameState::TxQueued).count() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(addr: u64, len: u32) -> ffi::xdp_desc {
        ffi::xdp_desc { addr, len, options: 0 }
    }

    const HEAD: u64 = ffi::XDP_PACKET_HEADROOM as u64;

    #[test]
    fn descriptors_outside_the_rx_frames_or_crossing_a_frame_are_refused() {
        let mut f = Frames::new(2048, 0..4, 4..8);
        f.take_for_fill(4, |_| {});
        assert_eq!(f.accept_rx(&desc(4 * 2048 + HEAD, 60)), Err(BadDescriptor::OutsideRange { addr: 4 * 2048 + HEAD }));
        assert!(matches!(f.accept_rx(&desc(1 << 40, 60)), Err(BadDescriptor::OutsideRange { .. })));
        assert!(matches!(f.accept_rx(&desc(2048 + 2000, 60)), Err(BadDescriptor::CrossesFrame { .. })));
        assert!(matches!(f.accept_rx(&desc(HEAD, 0)), Err(BadDescriptor::Empty { .. })));
        assert_eq!(f.accept_rx(&desc(2048 + HEAD, 1500)), Ok(RxFrame { frame: 1, offset: 256, len: 1500 }));
        // The same frame again: it is lent now, not in the kernel's hands.
        assert_eq!(
            f.accept_rx(&desc(2048 + HEAD, 60)),
            Err(BadDescriptor::WrongState { frame: 1, state: FrameState::Lent })
        );
    }

    #[test]
    fn a_frame_javascript_can_see_is_never_posted_to_the_fill_ring() {
        let mut f = Frames::new(2048, 0..8, 8..8);
        let mut ring: Vec<u64> = Vec::new();
        assert_eq!(f.take_for_fill(8, |a| ring.push(a)), 8);
        // The kernel hands back frames 0..5; JS holds them.
        for (i, addr) in ring.drain(..5).enumerate() {
            assert_eq!(f.accept_rx(&desc(addr + HEAD, 64)).unwrap().frame, i as u32);
        }
        // Refilling while they are lent posts nothing (the cursor is at frame 0, still lent).
        let mut posted = Vec::new();
        assert_eq!(f.take_for_fill(8, |a| posted.push(a)), 0);
        // Releasing frees them in order; only then do they go back.
        f.release_lent(0, 5);
        assert_eq!(f.take_for_fill(8, |a| posted.push(a)), 5);
        assert_eq!(posted, (0..5).map(|i| i * 2048).collect::<Vec<u64>>());
        for a in posted {
            let frame = (a / 2048) as u32;
            assert_eq!(f.state(frame), FrameState::Fill);
        }
        // Every path into the fill ring checks for Free: exhaustively, no Lent frame is taken.
        for lent in 0..8 {
            let mut f = Frames::new(2048, 0..8, 8..8);
            f.take_for_fill(8, |_| {});
            for fr in 0..=lent {
                f.accept_rx(&desc(fr as u64 * 2048 + HEAD, 64)).unwrap();
            }
            f.release_lent(0, lent);
            let mut again = Vec::new();
            f.take_for_fill(8, |a| again.push((a / 2048) as u32));
            assert!(!again.contains(&lent), "frame {lent} is still lent");
        }
    }

    #[test]
    fn fill_order_wraps_so_batches_are_at_most_two_runs() {
        let mut f = Frames::new(4096, 2..6, 6..6);
        let mut order = Vec::new();
        f.take_for_fill(3, |a| order.push(a / 4096));
        for a in &order {
            f.accept_rx(&desc(a * 4096 + HEAD, 64)).unwrap();
        }
        f.release_lent(2, 3);
        f.take_for_fill(4, |a| order.push(a / 4096));
        assert_eq!(order, [2, 3, 4, 5, 2, 3, 4]);
    }

    #[test]
    fn tx_frames_cycle_and_completions_must_match_what_was_queued() {
        let mut f = Frames::new(2048, 0..0, 0..4);
        assert_eq!(f.take_tx_run(3, FrameState::TxQueued), Some((0, 3)));
        assert_eq!(f.tx_free(), 1);
        // The run stops at the end of the range: the wrap starts a new run.
        assert_eq!(f.take_tx_run(3, FrameState::TxLent), Some((3, 1)));
        assert_eq!(f.take_tx_run(1, FrameState::TxQueued), None);
        assert!(matches!(f.complete(3 * 2048), Err(BadDescriptor::WrongState { frame: 3, state: FrameState::TxLent })));
        assert!(matches!(f.complete(9 * 2048), Err(BadDescriptor::OutsideRange { .. })));
        assert_eq!(f.complete(0), Ok(0));
        assert!(matches!(f.complete(0), Err(BadDescriptor::WrongState { .. })), "completed twice");
        assert!(f.tx_lent_to(3, FrameState::TxQueued));
        assert!(!f.tx_lent_to(3, FrameState::TxQueued), "not lent any more");
        assert_eq!(f.tx_in_flight(), 3);
        assert_eq!(f.take_tx_run(4, FrameState::TxQueued), Some((0, 1)));
    }
}
