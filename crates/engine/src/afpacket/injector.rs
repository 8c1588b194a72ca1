//! An injector: one AF_PACKET socket with a TPACKET_V3 TX ring. Frames are written into ring
//! slots, marked SEND_REQUEST, and sent by one `sendto()` kick for many frames.
//!
//! Frame life cycle, as the kernel sees it (tp_status): AVAILABLE -> SEND_REQUEST (ours, queued)
//! -> SENDING (the kernel holds the skb) -> AVAILABLE (sent) or WRONG_FORMAT (rejected). On our
//! side each frame is Free, Lent (a zero-copy slot handed out) or Queued (SEND_REQUEST, in
//! `queue`, not yet seen taken by the kernel).
//!
//! Order: the kernel walks the ring from its head and stops at the first frame that is not
//! SEND_REQUEST (`tpacket_snd()`). So frames are allocated strictly in ring order from a
//! cursor, and leave in the order they were allocated.
//!
//! No slot may hold back the frames after it. The socket has PACKET_LOSS set, so the kernel
//! skips a frame it cannot send (marks it AVAILABLE and moves on) instead of stopping there
//! with WRONG_FORMAT. A slot given back out of order (discarded, or a failed commit) becomes a
//! skip frame: zero bytes long, shorter than any link-layer header, so `tpacket_fill_skb()`
//! refuses it (`dev_validate_header()`) and the kernel steps over it at the next kick. A frame
//! queued but withdrawn (its sender was told it failed) becomes a skip frame the same way.
//!
//! Every queued frame gets a sequence number, in commit order, so the caller can tell which
//! frames were settled (`settled_before`) and which of them the kernel refused (`take_rejection`).
//! With PACKET_LOSS a refused frame is not marked: `sendto()` returns the bytes of the frames it
//! sent, so a shortfall says some were skipped, and the frames too long for the MTU read again
//! are the ones (frames are checked against the MTU when queued; only a shrinking MTU gets one
//! refused).

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::error::{Error, Result};
use crate::ffi;
use crate::reactor::{Callback, Reactor, Token};
use crate::syscall;

use super::offload::{self, JumboSender};
use super::ring::{page_size, Mapping, RingGeometry, TxRing, TX_DATA_OFFSET};
use super::socket::{Interface, PacketSocket};

/// What a caller asks for; every field optional.
#[derive(Debug, Clone, Default)]
pub struct InjectorOptions {
    pub frame_size: Option<u32>,
    pub frame_count: Option<u32>,
    pub qdisc_bypass: Option<bool>,
    /// Send each frame with offload metadata (the virtio-net header; see `offload`).
    pub offload: Option<bool>,
}

pub const DEFAULT_TX_FRAME_SIZE: u32 = 2048;
pub const DEFAULT_TX_FRAME_COUNT: u32 = 1024;
/// The smallest frame: the V3 header plus an Ethernet header, aligned.
const MIN_TX_FRAME_SIZE: u32 = ffi::tpacket_align(TX_DATA_OFFSET + ffi::ETH_HLEN) as u32;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InjectorStats {
    /// Frames the kernel took from the ring and did not reject.
    pub sent: u64,
    /// Frames the kernel refused (too long for the MTU at the time of the flush).
    pub rejected: u64,
    /// Frames queued, then withdrawn before the kernel took them (their sender was told).
    pub withdrawn: u64,
    /// Frames queued and not yet taken by the kernel, or taken and still in flight.
    pub pending: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Free,
    /// Handed out for a frame of up to this many bytes.
    Lent(u32),
    /// SEND_REQUEST with a frame of `len` bytes, the `seq`-th queued.
    Queued {
        seq: u64,
        len: u32,
    },
    /// SEND_REQUEST with a zero-length frame the kernel skips (see the module comment).
    Skip,
}

/// Frames the kernel refused, by sequence number, and the error that says why.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub seqs: Vec<u64>,
    pub error: Error,
}

/// A frame of a list, or a slot of a run, refused before anything of the call was queued:
/// which one (`None` when the call itself was refused, e.g. a bad count), and why.
#[derive(Debug, Clone)]
pub struct RefusedFrame {
    pub index: Option<usize>,
    pub error: Error,
}

/// The result of a call over a list of frames or a run of slots.
pub type Refusable<T> = std::result::Result<T, RefusedFrame>;

impl RefusedFrame {
    fn call(error: Error) -> RefusedFrame {
        RefusedFrame { index: None, error }
    }
}

pub struct Injector {
    socket: PacketSocket,
    ring: TxRing,
    iface: Interface,
    geometry: RingGeometry,
    qdisc_bypass: bool,
    slots: Vec<Slot>,
    /// Queued frames (and skip frames) in the order they were queued; the kernel walks them in
    /// ring order.
    queue: VecDeque<u32>,
    /// The frames the last collection found taken (kept to avoid an allocation per flush).
    taken: Vec<u32>,
    cursor: u32,
    next_seq: u64,
    mtu: u32,
    stats: InjectorStats,
    rejection: Option<Rejection>,
    wait: Option<Token>,
    /// With offload metadata on: frames too large for a slot, and room to redo their checksums.
    jumbo: Option<(JumboSender, Vec<u8>)>,
    /// Each lent or queued slot's offload metadata, written into the ring when the frame is
    /// queued (only with offload metadata on; all zeroes otherwise).
    offloads: Vec<ffi::virtio_net_hdr>,
}

impl Injector {
    /// Opens an injector on `interface`. The socket is bound with protocol 0, so it never
    /// receives: it only sends.
    pub fn open(interface: &str, options: InjectorOptions) -> Result<Injector> {
        let geometry = tx_geometry(&options)?;
        let iface = Interface::resolve(interface)?;
        let socket = PacketSocket::open(&iface)?;
        let jumbo = if options.offload.unwrap_or(false) {
            // Before the version and the ring: the kernel refuses it afterwards (EBUSY).
            offload::set_vnet_header(&socket)?;
            Some((JumboSender::open(&iface)?, Vec::with_capacity(offload::MAX_GSO_FRAME_LEN)))
        } else {
            None
        };
        socket.set_version_v3()?;
        let qdisc_bypass = options.qdisc_bypass.unwrap_or(false);
        if qdisc_bypass {
            socket.set(ffi::SOL_PACKET, ffi::PACKET_QDISC_BYPASS, &1i32, "PACKET_QDISC_BYPASS")?;
        }
        // The kernel skips a frame it cannot send instead of stopping the ring on it; it must be
        // set before the ring exists (EBUSY after).
        socket.set(ffi::SOL_PACKET, ffi::PACKET_LOSS, &1i32, "PACKET_LOSS")?;
        // V3 TX takes no retire timeout, private area or feature word (packet_set_ring()).
        socket.set_ring(ffi::PACKET_TX_RING, &geometry.to_req3(0, 0)).map_err(|e| {
            Error::sys(
                e,
                "setsockopt",
                iface.subject(),
                format!("creating the TX ring ({} frames of {} bytes)", geometry.frame_count(), geometry.frame_size),
            )
        })?;
        let mapping = Mapping::map(socket.as_fd(), geometry.total_bytes(), &iface.subject())?;
        socket.bind(iface.index, 0)?;
        let frames = geometry.frame_count() as usize;
        let mtu = iface.mtu().unwrap_or(1500);
        Ok(Injector {
            socket,
            ring: TxRing::new(mapping, geometry),
            iface,
            geometry,
            qdisc_bypass,
            slots: vec![Slot::Free; frames],
            queue: VecDeque::with_capacity(frames),
            taken: Vec::with_capacity(frames),
            cursor: 0,
            next_seq: 0,
            mtu,
            stats: InjectorStats::default(),
            rejection: None,
            wait: None,
            offloads: vec![ffi::virtio_net_hdr::default(); frames],
            jumbo,
        })
    }

    pub fn interface(&self) -> &Interface {
        &self.iface
    }

    pub fn geometry(&self) -> RingGeometry {
        self.geometry
    }

    pub fn qdisc_bypass(&self) -> bool {
        self.qdisc_bypass
    }

    pub fn mapping(&self) -> &Arc<Mapping> {
        self.ring.mapping()
    }

    pub fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Bytes of frame data one slot holds.
    pub fn slot_capacity(&self) -> u32 {
        (self.ring.capacity() - self.header_len()) as u32
    }

    /// Bytes of offload metadata in front of each frame in a slot (0 without `offload`).
    fn header_len(&self) -> usize {
        if self.jumbo.is_some() {
            ffi::VIRTIO_NET_HDR_LEN
        } else {
            0
        }
    }

    pub fn offload(&self) -> bool {
        self.jumbo.is_some()
    }

    /// The largest frame this injector can send now: the slot, or the interface MTU plus the
    /// Ethernet header, whichever is smaller; 4 bytes more for a frame with an 802.1Q tag
    /// (the kernel's `size_max` and `packet_extra_vlan_len_allowed()`).
    pub fn max_frame_len(&self, tagged: bool) -> u32 {
        let vlan = if tagged { ffi::VLAN_HLEN as u32 } else { 0 };
        self.slot_capacity().min(self.mtu + ffi::ETH_HLEN as u32 + vlan)
    }

    /// Checks a frame length before it is queued: a frame the kernel would reject must not
    /// reach the ring (a rejected frame stops the kernel's walk of the ring).
    pub fn check_len(&mut self, len: usize, tagged: bool) -> Result<()> {
        if len < ffi::ETH_HLEN {
            return Err(Error::new(
                Errno::EINVAL,
                self.iface.subject(),
                format!("a frame of {len} bytes is shorter than an Ethernet header ({} bytes)", ffi::ETH_HLEN),
            ));
        }
        if len > self.max_frame_len(tagged) as usize {
            // The MTU may have grown since we read it.
            self.mtu = self.read_mtu();
            if len > self.max_frame_len(tagged) as usize {
                return Err(Error::new(
                    Errno::EMSGSIZE,
                    self.iface.subject(),
                    format!(
                        "a frame of {len} bytes is larger than the largest '{}' can send: {} bytes (slot {} bytes; MTU {} + {} header bytes{})",
                        self.iface.name,
                        self.max_frame_len(tagged),
                        self.slot_capacity(),
                        self.mtu,
                        ffi::ETH_HLEN,
                        if tagged { " + 4 for the 802.1Q tag" } else { ", 4 more with an 802.1Q tag" },
                    ),
                )
                .with_hint("use a larger frameSize, or raise the interface MTU"));
            }
        }
        Ok(())
    }

    /// Takes a free slot for a frame of up to `len` bytes and lends it out; `None` when the
    /// ring is full (flush, wait, and try again).
    pub fn allocate(&mut self, len: usize) -> Result<Option<u32>> {
        self.check_lend_len(len)?;
        Ok(self.next_free(len as u32))
    }

    /// Checks the length of a slot to lend. The content is not known yet: allow for a tag, and
    /// for a GSO frame (larger than the MTU) where frames carry offload metadata; the frame is
    /// checked in full when it is sent.
    fn check_lend_len(&mut self, len: usize) -> Result<()> {
        if self.jumbo.is_none() || len < ffi::ETH_HLEN {
            return self.check_len(len, true);
        }
        if len > self.slot_capacity() as usize {
            return Err(Error::new(
                Errno::EMSGSIZE,
                self.iface.subject(),
                format!("a slot of {len} bytes is larger than a slot holds ({} bytes)", self.slot_capacity()),
            )
            .with_hint(
                "use a larger frameSize, or send larger GSO frames with send() (they leave through a second socket)",
            ));
        }
        Ok(())
    }

    /// Lends the frame at the cursor; `None` when the ring is full.
    fn next_free(&mut self, len: u32) -> Option<u32> {
        let index = self.cursor;
        if self.slots[index as usize] != Slot::Free || self.ring.status(index) != ffi::TP_STATUS_AVAILABLE {
            return None;
        }
        self.slots[index as usize] = Slot::Lent(len);
        self.offloads[index as usize] = ffi::virtio_net_hdr::default();
        self.cursor = (index + 1) % self.ring.frame_count();
        Some(index)
    }

    /// Lends up to `max` consecutive frames for frames of up to `len` bytes, adjacent in memory
    /// (`frame_stride()` bytes apart), as `(first, count)`; `None` when the ring is full. Fewer
    /// than `max` at the end of the ring, at the end of a block whose size is not a multiple of
    /// the frame size, or where frames are still in flight.
    pub fn allocate_run(&mut self, max: u32, len: usize) -> Result<Option<(u32, u32)>> {
        self.check_lend_len(len)?;
        let first = self.cursor;
        let n = self.ring.frame_count();
        let mut end = n.min(first.saturating_add(max.max(1)));
        let g = self.geometry;
        if !g.block_size.is_multiple_of(g.frame_size) {
            // Frames are contiguous only inside one block.
            end = end.min((first / g.frames_per_block() + 1) * g.frames_per_block());
        }
        let count = (first..end)
            .take_while(|&i| self.slots[i as usize] == Slot::Free && self.ring.status(i) == ffi::TP_STATUS_AVAILABLE)
            .count() as u32;
        if count == 0 {
            return Ok(None);
        }
        for i in first..first + count {
            self.slots[i as usize] = Slot::Lent(len as u32);
            self.offloads[i as usize] = ffi::virtio_net_hdr::default();
        }
        self.cursor = (first + count) % n;
        Ok(Some((first, count)))
    }

    /// Bytes from one frame's data to the next frame's, inside a run.
    pub fn frame_stride(&self) -> usize {
        self.geometry.frame_size as usize
    }

    /// The data area of a lent slot.
    pub fn slot_ptr(&self, index: u32) -> *mut u8 {
        // SAFETY: the header fits in front of the frame data inside the slot.
        unsafe { self.ring.data_ptr(index).add(self.header_len()) }
    }

    /// Sets the offload metadata a lent slot is sent with (checked at commit). It is kept here,
    /// not in the ring: the header in front of the data is a word the kernel reads, written
    /// only when the frame is queued, after it was checked.
    pub fn set_slot_offload(&mut self, index: u32, h: &ffi::virtio_net_hdr) -> Result<()> {
        self.lent_len(index)?;
        if self.jumbo.is_none() {
            return Err(offload_not_enabled());
        }
        self.offloads[index as usize] = *h;
        Ok(())
    }

    /// Checks a frame and the offload metadata it goes with: a GSO frame may exceed the MTU
    /// (the kernel segments it), any other frame may not.
    fn check_offloaded(&mut self, frame: &[u8], h: &ffi::virtio_net_hdr) -> Result<()> {
        let tagged = is_vlan_tagged(frame);
        if !offload::is_gso(h) {
            self.check_len(frame.len(), tagged)?;
        }
        let vlan = if tagged { ffi::VLAN_HLEN } else { 0 };
        offload::check(h, frame, self.mtu as usize + ffi::ETH_HLEN + vlan)
    }

    /// Like `send`, with offload metadata (the injector must have been opened with `offload`).
    /// `redo_checksums`: the bytes were rewritten, so their checksums are redone (see
    /// `offload::redo_checksums`). A frame larger than a slot leaves at once through the
    /// injector's second socket, after everything queued before it.
    pub fn send_offload(
        &mut self,
        frame: &[u8],
        header: Option<&ffi::virtio_net_hdr>,
        redo_checksums: bool,
    ) -> Result<Option<u64>> {
        if self.jumbo.is_none() {
            if header.is_some() || redo_checksums {
                return Err(offload_not_enabled());
            }
            return self.send(frame);
        }
        let mut h = header.copied().unwrap_or_default();
        if frame.len() <= self.slot_capacity() as usize {
            let Some(index) = self.next_free(frame.len() as u32) else { return Ok(None) };
            // SAFETY: the slot is ours (Lent) and holds at least frame.len() bytes.
            let data = unsafe { std::slice::from_raw_parts_mut(self.slot_ptr(index), frame.len()) };
            data.copy_from_slice(frame);
            if redo_checksums {
                offload::redo_checksums(data, &mut h);
            }
            self.offloads[index as usize] = h;
            return self.commit(index, frame.len()).map(Some);
        }
        let mut scratch = std::mem::take(&mut self.jumbo.as_mut().expect("checked above").1);
        let result = {
            let bytes = if redo_checksums {
                scratch.clear();
                scratch.extend_from_slice(frame);
                offload::redo_checksums(&mut scratch, &mut h);
                &scratch[..]
            } else {
                frame
            };
            self.send_jumbo(bytes, &h)
        };
        self.jumbo.as_mut().expect("an offload injector").1 = scratch;
        result
    }

    /// Sends a frame larger than a slot through the second socket, once everything queued
    /// before it has been taken (in order); `None` while some is still queued (backpressure,
    /// like a full ring). A frame sent this way is settled when this returns: it takes the
    /// next sequence number, and `settled_before` moves past it.
    fn send_jumbo(&mut self, frame: &[u8], h: &ffi::virtio_net_hdr) -> Result<Option<u64>> {
        self.check_offloaded(frame, h)?;
        // After what is queued, to keep the order frames were given in.
        self.flush()?;
        if !self.queue.is_empty() {
            return Ok(None);
        }
        let (jumbo, _) = self.jumbo.as_ref().expect("an offload injector");
        match jumbo.send(h, frame) {
            Ok(false) => Ok(None),
            Ok(true) => {
                self.stats.sent += 1;
                let seq = self.next_seq;
                self.next_seq += 1;
                Ok(Some(seq))
            }
            Err(e) => {
                self.stats.rejected += 1;
                Err(Error::sys(e, "sendmsg", self.iface.subject(), format!("sending a {}-byte frame", frame.len())))
            }
        }
    }

    /// Checks that a lent slot may be sent with `len` bytes: at most what was lent, and a
    /// frame the interface takes (its content decides whether it is tagged).
    fn check_commit(&mut self, index: u32, len: usize) -> Result<()> {
        let lent = self.lent_len(index)?;
        if len > lent as usize {
            return Err(Error::invalid_option("length", format!("cannot send {len} bytes from a slot of {lent}")));
        }
        // SAFETY: the slot is ours and holds at least `lent` >= len bytes.
        let frame = unsafe { std::slice::from_raw_parts(self.slot_ptr(index), len) };
        if self.jumbo.is_some() {
            let h = self.offloads[index as usize];
            self.check_offloaded(frame, &h)
        } else {
            self.check_len(len, is_vlan_tagged(frame))
        }
    }

    /// Queues a lent, checked slot; returns its sequence number.
    fn queue_frame(&mut self, index: u32, len: usize) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.jumbo.is_some() {
            // Written now, from the engine's copy: nothing lent reaches it after the check.
            // SAFETY: the header lies in front of the slot's data, inside the slot, which is ours.
            let at = unsafe { std::slice::from_raw_parts_mut(self.ring.data_ptr(index), ffi::VIRTIO_NET_HDR_LEN) };
            offload::write(&self.offloads[index as usize], at);
        }
        // SAFETY: the slot is ours (Lent), and len (with the header in front) fits (checked).
        unsafe { self.ring.submit(index, (len + self.header_len()) as u32) };
        self.slots[index as usize] = Slot::Queued { seq, len: len as u32 };
        self.queue.push_back(index);
        seq
    }

    /// Queues a lent slot holding `len` bytes; returns its sequence number. On error the slot
    /// is given back (its buffer is gone by then), so a bad call never holds the ring up.
    pub fn commit(&mut self, index: u32, len: usize) -> Result<u64> {
        if let Err(e) = self.check_commit(index, len) {
            if self.lent_len(index).is_ok() {
                self.discard(index)?;
            }
            return Err(e);
        }
        Ok(self.queue_frame(index, len))
    }

    /// Queues the first `send` slots of the run of `count` lent slots at `first`, with
    /// `lengths` bytes each (one length for all, or one per slot sent), and gives the rest back.
    /// Everything is checked first: on error nothing is queued and the whole run goes back.
    pub fn commit_run(&mut self, first: u32, count: u32, send: u32, lengths: &[u32]) -> Result<()> {
        self.commit_run_checked(first, count, send, lengths).map_err(|r| r.error)
    }

    /// Like `commit_run`, with offload metadata for the slots sent: `headers` holds raw
    /// virtio-net headers (`offload::read`), one for every slot or one per slot sent. A refused
    /// slot says which it was.
    pub fn commit_run_offload(
        &mut self,
        first: u32,
        count: u32,
        send: u32,
        lengths: &[u32],
        headers: &[u8],
    ) -> Refusable<()> {
        let refused = if self.jumbo.is_none() {
            Some(offload_not_enabled())
        } else if !header_count_fits(headers, send as usize) {
            Some(Error::invalid_option(
                "offload",
                format!("needs one header for all slots or one per slot sent ({send})"),
            ))
        } else {
            None
        };
        if let Some(error) = refused {
            self.commit_run_checked(first, count, 0, &[0])?;
            return Err(RefusedFrame::call(error));
        }
        for i in 0..send.min(count) {
            if self.lent_len(first + i).is_ok() {
                self.offloads[(first + i) as usize] = header_at(headers, i as usize);
            }
        }
        self.commit_run_checked(first, count, send, lengths)
    }

    fn commit_run_checked(&mut self, first: u32, count: u32, send: u32, lengths: &[u32]) -> Refusable<()> {
        let checked = self.check_run(first, count, send, lengths);
        let queued = if checked.is_ok() { send } else { 0 };
        for i in 0..queued {
            let len = if lengths.len() == 1 { lengths[0] } else { lengths[i as usize] };
            self.queue_frame(first + i, len as usize);
        }
        // Give back what was not queued, last first, so the cursor steps back over it.
        for index in (first + queued..first + count).rev() {
            if self.lent_len(index).is_ok() {
                self.discard(index).map_err(RefusedFrame::call)?;
            }
        }
        checked
    }

    fn check_run(&mut self, first: u32, count: u32, send: u32, lengths: &[u32]) -> Refusable<()> {
        if send > count {
            return Err(RefusedFrame::call(Error::invalid_option(
                "count",
                format!("must be at most the {count} slots lent, got {send}"),
            )));
        }
        if lengths.is_empty() || (lengths.len() != 1 && lengths.len() < send as usize) {
            return Err(RefusedFrame::call(Error::invalid_option(
                "lengths",
                format!("needs one length for all slots or one per slot sent ({send}), got {}", lengths.len()),
            )));
        }
        for i in 0..count {
            self.lent_len(first + i).map_err(RefusedFrame::call)?;
        }
        for i in 0..send {
            let len = if lengths.len() == 1 { lengths[0] } else { lengths[i as usize] };
            self.check_commit(first + i, len as usize).map_err(|mut error| {
                error.message = format!("slot {i} of the run: {}", error.message);
                RefusedFrame { index: Some(i as usize), error }
            })?;
        }
        Ok(())
    }

    /// Gives a lent slot back unused. The latest allocation steps the cursor back; any other
    /// becomes a skip frame, so the frames allocated after it are not held back.
    pub fn discard(&mut self, index: u32) -> Result<()> {
        self.lent_len(index)?;
        // The header may have been written through a run's buffer while lent: the status word
        // is ours again, so the kernel never takes a discarded frame for a send request.
        self.ring.reset(index);
        let n = self.ring.frame_count();
        if (index + 1) % n == self.cursor {
            self.slots[index as usize] = Slot::Free;
            self.cursor = index;
        } else {
            // SAFETY: the slot is ours (Lent); zero bytes fit.
            unsafe { self.ring.submit(index, 0) };
            self.slots[index as usize] = Slot::Skip;
            self.queue.push_back(index);
        }
        Ok(())
    }

    /// The length a slot was lent with; EINVAL when it is not lent out.
    fn lent_len(&self, index: u32) -> Result<u32> {
        match self.slots.get(index as usize) {
            Some(Slot::Lent(len)) => Ok(*len),
            _ => Err(Error::new(Errno::EINVAL, self.iface.subject(), format!("slot {index} is not lent out"))),
        }
    }

    /// Checks `frame` (with its offload metadata, if any) as `send` / `send_offload` would,
    /// queueing nothing: lets a caller refuse a list of frames whole before it queues any.
    pub fn check_frame(&mut self, frame: &[u8], header: Option<&ffi::virtio_net_hdr>) -> Result<()> {
        match header {
            None => self.check_len(frame.len(), is_vlan_tagged(frame)),
            Some(_) if self.jumbo.is_none() => Err(offload_not_enabled()),
            Some(h) => self.check_offloaded(frame, h),
        }
    }

    /// Copies `frame` into the next free slot and queues it; returns its sequence number, or
    /// `None` when the ring is full. With `offload`, the frame goes without offload metadata.
    pub fn send(&mut self, frame: &[u8]) -> Result<Option<u64>> {
        self.check_len(frame.len(), is_vlan_tagged(frame))?;
        Ok(self.copy_in(frame))
    }

    /// Queues a checked frame; `None` when the ring is full.
    fn copy_in(&mut self, frame: &[u8]) -> Option<u64> {
        let index = self.next_free(frame.len() as u32)?;
        // SAFETY: the slot is ours and holds at least frame.len() bytes (checked by the caller).
        unsafe { std::ptr::copy_nonoverlapping(frame.as_ptr(), self.slot_ptr(index), frame.len()) };
        Some(self.queue_frame(index, frame.len()))
    }

    /// Queues frames in order until the ring is full; returns how many were queued. Every
    /// frame is checked first: on error nothing is queued, so a retry never sends one twice.
    pub fn send_frames<F: AsRef<[u8]>>(&mut self, frames: &[F]) -> Result<u32> {
        for (i, frame) in frames.iter().enumerate() {
            let frame = frame.as_ref();
            self.check_len(frame.len(), is_vlan_tagged(frame)).map_err(|mut e| {
                e.message = format!("frames[{i}]: {}", e.message);
                e
            })?;
        }
        let mut queued = 0;
        for frame in frames {
            if self.copy_in(frame.as_ref()).is_none() {
                break;
            }
            queued += 1;
        }
        Ok(queued)
    }

    /// Like `send_frames`, with offload metadata: `headers` holds raw virtio-net headers
    /// (`offload::read`), one for every frame or one per frame. Frames that fit a slot go into
    /// the ring; a larger (GSO) frame leaves through the second socket once everything queued
    /// before it has been taken, so the list keeps its order, and the call stops there (returns
    /// how many were queued) while some is still queued. Every frame is checked first; a
    /// refused frame says which it was, and nothing is queued.
    pub fn send_frames_offload<F: AsRef<[u8]>>(&mut self, frames: &[F], headers: &[u8]) -> Refusable<u32> {
        if self.jumbo.is_none() {
            return Err(RefusedFrame::call(offload_not_enabled()));
        }
        if !header_count_fits(headers, frames.len()) {
            return Err(RefusedFrame::call(Error::invalid_option(
                "offload",
                format!("needs one header for all frames or one per frame ({})", frames.len()),
            )));
        }
        for (i, frame) in frames.iter().enumerate() {
            self.check_offloaded(frame.as_ref(), &header_at(headers, i)).map_err(|mut error| {
                error.message = format!("frames[{i}]: {}", error.message);
                RefusedFrame { index: Some(i), error }
            })?;
        }
        let mut queued = 0;
        for (i, frame) in frames.iter().enumerate() {
            let (frame, h) = (frame.as_ref(), header_at(headers, i));
            let sent = if frame.len() <= self.slot_capacity() as usize {
                self.next_free(frame.len() as u32).map(|index| {
                    // SAFETY: the slot is ours (Lent) and holds at least frame.len() bytes (checked).
                    unsafe { std::ptr::copy_nonoverlapping(frame.as_ptr(), self.slot_ptr(index), frame.len()) };
                    self.offloads[index as usize] = h;
                    self.queue_frame(index, frame.len())
                })
            } else {
                match self.send_jumbo(frame, &h) {
                    Ok(sent) => sent,
                    // What was queued before it stays queued: the caller learns of the failure
                    // when this frame comes first.
                    Err(_) if queued > 0 => None,
                    Err(error) => return Err(RefusedFrame { index: Some(i), error }),
                }
            };
            if sent.is_none() {
                break;
            }
            queued += 1;
        }
        Ok(queued)
    }

    /// Turns the queued frame `seq` into a skip frame, if the kernel has not taken it yet: its
    /// sender was told it failed, so it must not leave later. Returns whether it was withdrawn.
    pub fn withdraw(&mut self, seq: u64) -> bool {
        let Some(&index) =
            self.queue.iter().find(|&&i| matches!(self.slots[i as usize], Slot::Queued { seq: s, .. } if s == seq))
        else {
            return false;
        };
        if self.ring.status(index) != ffi::TP_STATUS_SEND_REQUEST {
            return false;
        }
        // SAFETY: still SEND_REQUEST, and the kernel reads the ring only inside our own sendto()
        // (tpacket_snd()), which cannot run while we hold &mut self.
        unsafe { self.ring.submit(index, 0) };
        self.slots[index as usize] = Slot::Skip;
        self.stats.withdrawn += 1;
        true
    }

    /// Every frame with a smaller sequence number has been settled: sent, refused or withdrawn.
    pub fn settled_before(&self) -> u64 {
        // The queue is in commit order, so its first real frame has the smallest number.
        self.queue
            .iter()
            .find_map(|&i| match self.slots[i as usize] {
                Slot::Queued { seq, .. } => Some(seq),
                _ => None,
            })
            .unwrap_or(self.next_seq)
    }

    /// Kicks the kernel to send everything queued; returns how many queued frames it took.
    /// ENOBUFS/EAGAIN are backpressure: what was not taken stays queued for the next flush.
    pub fn flush(&mut self) -> Result<u32> {
        if self.queue.is_empty() {
            return Ok(0);
        }
        let kicked = syscall::kick(self.socket.as_fd(), libc::MSG_DONTWAIT);
        let taken = self.collect_taken(kicked.ok());
        match kicked {
            Ok(_) | Err(Errno::EAGAIN | Errno::ENOBUFS) => Ok(taken),
            Err(e) => {
                let what = format!("sending on '{}'", self.iface.name);
                let err = Error::sys(e, "sendto", self.iface.subject(), what);
                Err(if e == Errno::ENETDOWN {
                    err.with_hint("bring the interface up (`ip link set <name> up`); queued frames stay queued")
                } else {
                    err
                })
            }
        }
    }

    /// Pops the queued frames the kernel has taken, in order, counting sent and refused ones.
    /// `sent_bytes` is what the kick returned: the bytes of the frames it sent.
    fn collect_taken(&mut self, sent_bytes: Option<usize>) -> u32 {
        self.taken.clear();
        let mut taken_bytes = 0;
        let mut marked_wrong = false;
        while let Some(&index) = self.queue.front() {
            let status = self.ring.status(index);
            if status == ffi::TP_STATUS_SEND_REQUEST {
                break;
            }
            if status & ffi::TP_STATUS_WRONG_FORMAT != 0 {
                // Not with PACKET_LOSS set; kept so that a kernel that marks it anyway cannot
                // stop the ring on it.
                self.ring.reset(index);
                marked_wrong = true;
            }
            self.queue.pop_front();
            if let Slot::Queued { len, .. } = self.slots[index as usize] {
                taken_bytes += len as usize;
            }
            self.taken.push(index);
        }
        // The common case: the kick sent exactly what it took. Otherwise some frame was
        // skipped (or taken by an earlier kick that failed half-way): the MTU tells which.
        let all_sent = sent_bytes == Some(taken_bytes) && !marked_wrong;
        if !all_sent {
            self.mtu = self.read_mtu();
        }
        let mut rejected = Vec::new();
        for i in 0..self.taken.len() {
            let index = self.taken[i];
            if let Slot::Queued { seq, len } = self.slots[index as usize] {
                // SAFETY: the frame is no longer the kernel's to read or write (it was taken and
                // is either sent, in flight with its data copied into the skb, or skipped).
                let frame = unsafe { std::slice::from_raw_parts(self.slot_ptr(index), len as usize) };
                // A GSO frame may exceed the MTU: the kernel segments it.
                let gso = self.jumbo.is_some() && offload::is_gso(&self.offloads[index as usize]);
                if !all_sent && !gso && len > self.max_frame_len(is_vlan_tagged(frame)) {
                    rejected.push(seq);
                } else {
                    self.stats.sent += 1;
                }
            }
            self.slots[index as usize] = Slot::Free;
        }
        if !rejected.is_empty() {
            self.reject(rejected);
        }
        self.taken.len() as u32
    }

    /// The interface's MTU now (the last one read if the ioctl fails). An ioctl on our socket
    /// with the request on the stack: called after kicks that met backpressure, so it must not
    /// allocate.
    fn read_mtu(&self) -> u32 {
        // SAFETY: ifreq is plain data; all zeroes is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        // The name fits: Interface::resolve checked it against IFNAMSIZ, and the last byte stays 0.
        for (dst, &src) in req.ifr_name.iter_mut().zip(self.iface.name.as_bytes()) {
            *dst = src as libc::c_char;
        }
        // SAFETY: SIOCGIFMTU reads ifr_name and writes ifr_mtu of the ifreq we own.
        let rc = unsafe { libc::ioctl(self.socket.as_raw_fd(), ffi::SIOCGIFMTU as _, &mut req) };
        // SAFETY: the kernel filled the union's mtu member.
        if rc < 0 {
            self.mtu
        } else {
            unsafe { req.ifr_ifru.ifru_mtu as u32 }
        }
    }

    /// Records frames the kernel refused, to be reported to whoever queued them.
    fn reject(&mut self, seqs: Vec<u64>) {
        self.stats.rejected += seqs.len() as u64;
        let mut all = self.rejection.take().map_or_else(Vec::new, |r| r.seqs);
        all.extend(seqs);
        // Said of one frame: each refused frame is reported to its own owner.
        let error = Error::new(
            Errno::EMSGSIZE,
            self.iface.subject(),
            format!(
                "the kernel refused a queued frame on '{}': longer than the MTU ({}) when it was flushed; it was dropped",
                self.iface.name, self.mtu,
            ),
        )
        .with_syscall("sendto")
        .with_hint("frames must fit the interface MTU when they are flushed, not only when queued");
        self.rejection = Some(Rejection { seqs: all, error });
    }

    /// The frames refused since the last call, if any.
    pub fn take_rejection(&mut self) -> Option<Rejection> {
        self.rejection.take()
    }

    /// Frames queued or in flight.
    pub fn pending(&self) -> u32 {
        let in_flight = (0..self.ring.frame_count())
            .filter(|&i| self.slots[i as usize] == Slot::Free && self.ring.status(i) & ffi::TP_STATUS_SENDING != 0)
            .count();
        self.queue.len() as u32 + in_flight as u32
    }

    pub fn stats(&self) -> InjectorStats {
        InjectorStats { pending: self.pending(), ..self.stats }
    }

    /// Flushes and waits until the kernel has sent everything queued, or `timeout` passes.
    /// Returns whether everything was sent.
    pub fn drain(&mut self, timeout: Option<Duration>) -> Result<bool> {
        // A deadline past what an Instant can hold is no deadline: checked_add, never a panic.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            self.flush()?;
            if self.pending() == 0 {
                return Ok(true);
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Ok(false);
            }
            // The kernel wakes POLLOUT writers as frames complete; a short cap re-kicks frames
            // that met backpressure.
            let step = left.map_or(Duration::from_millis(5), |l| l.min(Duration::from_millis(5)));
            syscall::poll(self.socket.as_fd(), libc::POLLOUT, Some(step))
                .map_err(|e| Error::sys(e, "poll", self.iface.subject(), "waiting for the TX ring to drain"))?;
            std::thread::sleep(Duration::from_micros(200).min(step));
        }
    }

    /// Asks the reactor thread to call `callback` once when the ring may have room (POLLOUT) or
    /// the socket reports an error. Arming again withdraws the previous wait.
    pub fn arm_wait(&mut self, callback: Callback) -> Result<()> {
        if let Some(previous) = self.disarm_wait() {
            previous(crate::reactor::Readiness::Cancelled);
        }
        let events = (libc::EPOLLOUT | libc::EPOLLERR | libc::EPOLLHUP) as u32;
        self.wait = Some(Reactor::global()?.arm(self.fd(), events, callback)?);
        Ok(())
    }

    pub fn disarm_wait(&mut self) -> Option<Callback> {
        let token = self.wait.take()?;
        Reactor::global().ok()?.disarm(token)
    }
}

impl Drop for Injector {
    fn drop(&mut self) {
        if let Some(callback) = self.disarm_wait() {
            callback(crate::reactor::Readiness::Cancelled);
        }
    }
}

/// Offload metadata given to an injector opened without `{ offload: true }`.
fn offload_not_enabled() -> Error {
    Error::invalid_option("offload", "this injector was opened without { offload: true }")
}

/// Whether `headers` holds one raw virtio-net header for all of `n` items, or one per item.
fn header_count_fits(headers: &[u8], n: usize) -> bool {
    let len = ffi::VIRTIO_NET_HDR_LEN;
    headers.len() == len || (headers.len() == n * len && n > 0)
}

/// Item `i`'s header in `headers` (one for all, or one per item; see `header_count_fits`).
fn header_at(headers: &[u8], i: usize) -> ffi::virtio_net_hdr {
    let len = ffi::VIRTIO_NET_HDR_LEN;
    if headers.len() == len {
        offload::read(headers)
    } else {
        offload::read(&headers[i * len..][..len])
    }
}

/// Whether an Ethernet frame carries an 802.1Q tag (the only tag the kernel lets exceed the MTU).
fn is_vlan_tagged(frame: &[u8]) -> bool {
    frame.get(12..14) == Some(&ffi::ETH_P_8021Q.to_be_bytes())
}

/// The TX ring shape: blocks just large enough for whole frames (a power of two, at least a
/// page), and the frame count rounded up to whole blocks.
fn tx_geometry(options: &InjectorOptions) -> Result<RingGeometry> {
    let frame_size = options.frame_size.unwrap_or(DEFAULT_TX_FRAME_SIZE);
    let frame_count = options.frame_count.unwrap_or(DEFAULT_TX_FRAME_COUNT);
    if !frame_size.is_multiple_of(ffi::TPACKET_ALIGNMENT as u32) || !(MIN_TX_FRAME_SIZE..=1 << 20).contains(&frame_size)
    {
        return Err(Error::invalid_option(
            "frameSize",
            format!(
                "must be a multiple of {}, from {MIN_TX_FRAME_SIZE} to 1048576, got {frame_size}",
                ffi::TPACKET_ALIGNMENT
            ),
        ));
    }
    if !(1..=1 << 20).contains(&frame_count) {
        return Err(Error::invalid_option("frameCount", format!("must be from 1 to 1048576, got {frame_count}")));
    }
    let block_size = frame_size.next_power_of_two().max(page_size());
    let per_block = block_size / frame_size;
    let geometry = RingGeometry { block_size, block_count: frame_count.div_ceil(per_block), frame_size };
    if geometry.total_bytes() > u32::MAX as usize {
        return Err(Error::invalid_option("frameCount", "frameSize × frameCount must stay below 4 GiB"));
    }
    Ok(geometry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Subject;

    #[test]
    fn geometry_rounds_frames_up_to_whole_blocks() {
        let g = tx_geometry(&InjectorOptions { frame_size: Some(2048), frame_count: Some(3), ..Default::default() })
            .unwrap();
        assert_eq!((g.block_size, g.block_count, g.frame_count()), (4096, 2, 4));
        let g = tx_geometry(&InjectorOptions { frame_size: Some(9216), frame_count: Some(10), ..Default::default() })
            .unwrap();
        assert_eq!((g.block_size, g.frames_per_block(), g.frame_count()), (16384, 1, 10));
    }

    #[test]
    fn bad_options_name_themselves() {
        for (options, name) in [
            (InjectorOptions { frame_size: Some(100), ..Default::default() }, "frameSize"),
            (InjectorOptions { frame_size: Some(48), ..Default::default() }, "frameSize"),
            (InjectorOptions { frame_count: Some(0), ..Default::default() }, "frameCount"),
        ] {
            assert_eq!(tx_geometry(&options).unwrap_err().subject, Subject::Option(name));
        }
    }

    #[test]
    fn frames_of_a_run_are_one_stride_apart_in_memory() {
        // The binding lends a run as one buffer, so consecutive frames must be evenly spaced.
        for frame_size in [64, 2048, 4096, 9216] {
            let g = tx_geometry(&InjectorOptions {
                frame_size: Some(frame_size),
                frame_count: Some(64),
                ..Default::default()
            })
            .unwrap();
            let per_block =
                if g.block_size.is_multiple_of(g.frame_size) { g.frame_count() } else { g.frames_per_block() };
            for i in 1..per_block {
                assert_eq!(
                    g.frame_offset(i) - g.frame_offset(i - 1),
                    frame_size as usize,
                    "frame size {frame_size}, frame {i}"
                );
            }
        }
    }

    #[test]
    fn tx_data_starts_after_the_aligned_v3_header() {
        assert_eq!(TX_DATA_OFFSET, 48);
        assert_eq!(MIN_TX_FRAME_SIZE, 64);
    }

    /// A veth pair (removed on drop) with a capture on its `b` end; `None` when not root (CI
    /// runs as root, so there it never skips).
    struct Link {
        a: String,
        capture: crate::Capture,
    }

    impl Link {
        fn new(tag: &str) -> Option<Link> {
            if unsafe { libc::geteuid() } != 0 {
                assert!(std::env::var("CI").is_err(), "CI runs as root");
                return None;
            }
            let id = std::process::id() % 100000;
            let (a, b) = (format!("n{tag}{id}a"), format!("n{tag}{id}b"));
            let ip = |args: &[&str]| assert!(std::process::Command::new("ip").args(args).status().unwrap().success());
            ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
            for dev in [&a, &b] {
                let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6"), "1");
                ip(&["link", "set", dev, "up"]);
            }
            let capture = crate::Capture::open(&b, Default::default()).unwrap();
            Some(Link { a, capture })
        }

        /// The first payload byte of each test frame arriving, until `want` arrived or 3 s passed.
        fn received(&mut self, want: usize) -> Vec<u8> {
            let mut seen = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(3);
            while seen.len() < want && Instant::now() < deadline {
                if let Some(mut batch) = self.capture.next_batch_blocking(Some(Duration::from_millis(50))).unwrap() {
                    while let Some(p) = batch.next_packet() {
                        let p = p.unwrap();
                        let bytes = &batch.bytes()[p.data_offset as usize..][..p.captured_len as usize];
                        if bytes[12..14] == 0x88b5u16.to_be_bytes() {
                            seen.push(bytes[14]);
                        }
                    }
                }
            }
            seen
        }
    }

    impl Drop for Link {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip").args(["link", "del", &self.a]).status();
        }
    }

    fn test_frame(seq: u8) -> [u8; 60] {
        let mut frame = [0u8; 60];
        frame[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
        frame[14] = seq;
        frame
    }

    /// Frames queued on one end of a veth pair arrive on the other, counted there by a capture.
    #[test]
    fn frames_sent_arrive_on_the_peer() {
        let Some(mut link) = Link::new("tx") else { return };
        let mut tx = Injector::open(&link.a, InjectorOptions { frame_count: Some(8), ..Default::default() }).unwrap();
        let mut queued = 0;
        for seq in 0..20u8 {
            while tx.send(&test_frame(seq)).unwrap().is_none() {
                tx.drain(Some(Duration::from_secs(1))).unwrap();
            }
            queued += 1;
        }
        assert!(tx.drain(Some(Duration::from_secs(2))).unwrap());
        assert_eq!(tx.stats().sent, queued);
        assert_eq!(link.received(20), (0..20).collect::<Vec<u8>>());
    }

    /// A slot given back out of order, a commit refused, and a withdrawn frame all become skip
    /// frames: none holds back the frames after it, and none leaves.
    #[test]
    fn slots_given_back_out_of_order_never_hold_later_frames() {
        skip_frames_are_never_sent("sk", false);
    }

    /// The same with offload metadata: the kernel reads a virtio-net header in front of each
    /// frame, and a skip frame (length 0) is still refused and stepped over, never sent.
    #[test]
    fn skip_frames_are_never_sent_with_offload_metadata() {
        skip_frames_are_never_sent("so", true);
    }

    fn skip_frames_are_never_sent(tag: &str, offload: bool) {
        let Some(mut link) = Link::new(tag) else { return };
        let options = InjectorOptions { frame_count: Some(8), offload: Some(offload), ..Default::default() };
        let mut tx = Injector::open(&link.a, options).unwrap();
        let discarded = tx.allocate(60).unwrap().unwrap();
        // Written, then given back: had the skip frame been sent, this would arrive.
        // SAFETY: the slot is lent and holds at least 60 bytes.
        unsafe { std::ptr::copy_nonoverlapping(test_frame(7).as_ptr(), tx.slot_ptr(discarded), 60) };
        if offload {
            let h = ffi::virtio_net_hdr {
                flags: ffi::VIRTIO_NET_HDR_F_NEEDS_CSUM,
                csum_start: 14,
                csum_offset: 2,
                ..Default::default()
            };
            tx.set_slot_offload(discarded, &h).unwrap();
        }
        let refused = tx.allocate(60).unwrap().unwrap();
        let withdrawn = tx.send(&test_frame(9)).unwrap().unwrap();
        let sent = tx.send(&test_frame(1)).unwrap().unwrap();
        tx.discard(discarded).unwrap();
        let e = tx.commit(refused, 61).unwrap_err();
        assert_eq!((e.errno, e.subject), (Errno::EINVAL, crate::error::Subject::Option("length")));
        assert!(tx.commit(refused, 60).is_err(), "the refused slot was given back");
        if offload {
            // Metadata is set only on a lent slot: once queued or given back, it is the engine's.
            let e = tx.set_slot_offload(refused, &Default::default()).unwrap_err();
            assert_eq!(e.errno, Errno::EINVAL);
        }
        assert!(tx.withdraw(withdrawn));
        assert_eq!(tx.settled_before(), sent, "a withdrawn frame counts as settled");
        assert!(tx.drain(Some(Duration::from_secs(2))).unwrap());
        assert_eq!(tx.settled_before(), sent + 1);
        assert_eq!((tx.stats().sent, tx.stats().withdrawn, tx.stats().rejected, tx.stats().pending), (1, 1, 0, 0));
        // The withdrawn frame sat before it in the ring: had it left, it would have come first.
        assert_eq!(link.received(1), vec![1]);
    }

    /// Offload headers for a list: one for all or one per frame; a refused one says which
    /// frame it was, and nothing is queued.
    #[test]
    fn send_frames_offload_names_the_refused_frame_and_queues_none() {
        let Some(link) = Link::new("fo") else { return };
        let options = InjectorOptions { frame_count: Some(8), offload: Some(true), ..Default::default() };
        let mut tx = Injector::open(&link.a, options).unwrap();
        let frames: Vec<Vec<u8>> = (0..3).map(|i| test_frame(i).to_vec()).collect();
        // Frame 1's header: a GSO type without a segment size.
        let mut headers = [0u8; 30];
        headers[11] = ffi::VIRTIO_NET_HDR_GSO_TCPV4;
        let refused = tx.send_frames_offload(&frames, &headers).unwrap_err();
        assert_eq!((refused.index, refused.error.subject), (Some(1), Subject::Option("offload.gsoSize")));
        assert!(refused.error.message.starts_with("frames[1]: "), "{}", refused.error.message);
        assert_eq!(tx.pending(), 0);
        // Neither one per frame nor one for all.
        assert_eq!(tx.send_frames_offload(&frames, &[0u8; 20]).unwrap_err().index, None);
        assert_eq!(tx.send_frames_offload(&frames, &[0u8; 10]).unwrap(), 3);
        assert!(tx.drain(Some(Duration::from_secs(2))).unwrap());
        assert_eq!(tx.stats().sent, 3);
    }

    /// A list of frames with one bad frame queues none of it.
    #[test]
    fn send_frames_checks_every_frame_before_queueing_any() {
        let Some(link) = Link::new("sb") else { return };
        let mut tx = Injector::open(&link.a, InjectorOptions { frame_count: Some(8), ..Default::default() }).unwrap();
        let frames: Vec<Vec<u8>> = vec![test_frame(0).to_vec(), test_frame(1).to_vec(), vec![0; 3000]];
        let e = tx.send_frames(&frames).unwrap_err();
        assert_eq!(e.errno, Errno::EMSGSIZE);
        assert!(e.message.starts_with("frames[2]: "), "{}", e.message);
        assert_eq!(tx.pending(), 0);
        assert_eq!(tx.send_frames(&frames[..2]).unwrap(), 2);
    }

    /// check_frame refuses what send and send_offload would refuse, and queues nothing.
    #[test]
    fn check_frame_refuses_what_send_would_and_queues_nothing() {
        let Some(link) = Link::new("cf") else { return };
        let mut plain =
            Injector::open(&link.a, InjectorOptions { frame_count: Some(8), ..Default::default() }).unwrap();
        let good = test_frame(0);
        plain.check_frame(&good, None).unwrap();
        assert_eq!(plain.check_frame(&[0; 3000], None).unwrap_err().errno, Errno::EMSGSIZE);
        assert_eq!(plain.check_frame(&[0; 10], None).unwrap_err().errno, Errno::EINVAL);
        let h = ffi::virtio_net_hdr::default();
        assert_eq!(plain.check_frame(&good, Some(&h)).unwrap_err().subject, Subject::Option("offload"));
        assert_eq!(plain.pending(), 0);
        drop(plain);
        let options = InjectorOptions { frame_count: Some(8), offload: Some(true), ..Default::default() };
        let mut tx = Injector::open(&link.a, options).unwrap();
        tx.check_frame(&good, Some(&h)).unwrap();
        // A checksum to fill in past the end of the frame.
        let misfit = ffi::virtio_net_hdr {
            flags: ffi::VIRTIO_NET_HDR_F_NEEDS_CSUM,
            csum_start: 100,
            csum_offset: 6,
            ..Default::default()
        };
        assert_eq!(tx.check_frame(&good, Some(&misfit)).unwrap_err().errno, Errno::EINVAL);
        assert_eq!(tx.pending(), 0);
        assert_eq!(tx.stats(), InjectorStats::default());
    }
}
