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
//! cursor, and leave in the order they were allocated. A frame that is discarded, or rejected
//! by the kernel, leaves a hole the kernel would stop at; holes are remembered and the next
//! allocation fills the earliest one, so the ring never stalls behind it.

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::error::{Error, Result};
use crate::ffi;
use crate::reactor::{Callback, Reactor, Token};
use crate::syscall;

use super::ring::{page_size, Mapping, RingGeometry, TxRing, TX_DATA_OFFSET};
use super::socket::{Interface, PacketSocket};

/// What a caller asks for; every field optional.
#[derive(Debug, Clone, Default)]
pub struct InjectorOptions {
    pub frame_size: Option<u32>,
    pub frame_count: Option<u32>,
    pub qdisc_bypass: Option<bool>,
}

pub const DEFAULT_TX_FRAME_SIZE: u32 = 2048;
pub const DEFAULT_TX_FRAME_COUNT: u32 = 1024;
/// The smallest frame: the V3 header plus an Ethernet header, aligned.
const MIN_TX_FRAME_SIZE: u32 = ffi::tpacket_align(TX_DATA_OFFSET + ffi::ETH_HLEN) as u32;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InjectorStats {
    /// Frames the kernel took from the ring and did not reject.
    pub sent: u64,
    /// Frames the kernel marked WRONG_FORMAT.
    pub rejected: u64,
    /// Frames queued and not yet taken by the kernel, or taken and still in flight.
    pub pending: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Free,
    Lent,
    Queued,
}

pub struct Injector {
    socket: PacketSocket,
    ring: TxRing,
    iface: Interface,
    geometry: RingGeometry,
    qdisc_bypass: bool,
    slots: Vec<Slot>,
    /// Queued frames in the order they were queued; the kernel walks them in ring order.
    queue: VecDeque<u32>,
    /// Free frames between the kernel's head and `cursor` that must be filled next.
    holes: Vec<u32>,
    cursor: u32,
    mtu: u32,
    stats: InjectorStats,
    rejection: Option<Error>,
    wait: Option<Token>,
}

impl Injector {
    /// Opens an injector on `interface`. The socket is bound with protocol 0, so it never
    /// receives: it only sends.
    pub fn open(interface: &str, options: InjectorOptions) -> Result<Injector> {
        let geometry = tx_geometry(&options)?;
        let iface = Interface::resolve(interface)?;
        let socket = PacketSocket::open(&iface)?;
        socket.set_version_v3()?;
        let qdisc_bypass = options.qdisc_bypass.unwrap_or(false);
        if qdisc_bypass {
            socket.set(ffi::SOL_PACKET, ffi::PACKET_QDISC_BYPASS, &1i32, "PACKET_QDISC_BYPASS")?;
        }
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
            holes: Vec::with_capacity(frames),
            cursor: 0,
            mtu,
            stats: InjectorStats::default(),
            rejection: None,
            wait: None,
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
        self.ring.capacity() as u32
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
            self.mtu = self.iface.mtu().unwrap_or(self.mtu);
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

    /// Takes a free slot for a frame of `len` bytes and lends it out; `None` when the ring is
    /// full (flush, wait, and try again).
    pub fn allocate(&mut self, len: usize) -> Result<Option<u32>> {
        // The content is not known yet: allow for a tag, and check again at commit.
        self.check_len(len, true)?;
        Ok(self.next_free())
    }

    /// Lends the next frame in ring order (or the earliest hole); `None` when the ring is full.
    fn next_free(&mut self) -> Option<u32> {
        let n = self.ring.frame_count();
        // The earliest hole in ring order (the farthest behind the cursor) comes first.
        if let Some(pos) = (0..self.holes.len()).max_by_key(|&i| (self.cursor + n - 1 - self.holes[i]) % n) {
            let index = self.holes.swap_remove(pos);
            self.slots[index as usize] = Slot::Lent;
            return Some(index);
        }
        let index = self.cursor;
        if self.slots[index as usize] != Slot::Free || self.ring.status(index) != ffi::TP_STATUS_AVAILABLE {
            return None;
        }
        self.slots[index as usize] = Slot::Lent;
        self.cursor = (index + 1) % n;
        Some(index)
    }

    /// Lends up to `max` consecutive frames for frames of up to `len` bytes, adjacent in memory
    /// (`frame_stride()` bytes apart), as `(first, count)`; `None` when the ring is full. Fewer
    /// than `max` at the end of the ring, at the end of a block whose size is not a multiple of
    /// the frame size, or where frames are still in flight; one frame while holes wait to be
    /// filled (they come first, to keep the ring moving).
    pub fn allocate_run(&mut self, max: u32, len: usize) -> Result<Option<(u32, u32)>> {
        self.check_len(len, true)?;
        if !self.holes.is_empty() || max <= 1 {
            return Ok(self.next_free().map(|i| (i, 1)));
        }
        let first = self.cursor;
        let n = self.ring.frame_count();
        let mut end = n.min(first.saturating_add(max));
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
            self.slots[i as usize] = Slot::Lent;
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
        self.ring.data_ptr(index)
    }

    /// Queues a lent slot holding `len` bytes. On error the slot stays lent.
    pub fn commit(&mut self, index: u32, len: usize) -> Result<()> {
        self.expect_lent(index)?;
        if len > self.slot_capacity() as usize {
            return Err(Error::new(Errno::EMSGSIZE, self.iface.subject(), format!("{len} bytes do not fit a slot")));
        }
        // SAFETY: the slot is ours and holds at least len bytes.
        let frame = unsafe { std::slice::from_raw_parts(self.ring.data_ptr(index), len) };
        self.check_len(len, is_vlan_tagged(frame))?;
        // SAFETY: the slot is ours (Lent), and len fits.
        unsafe { self.ring.submit(index, len as u32) };
        self.slots[index as usize] = Slot::Queued;
        self.queue.push_back(index);
        Ok(())
    }

    /// Gives a lent slot back unused.
    pub fn discard(&mut self, index: u32) -> Result<()> {
        self.expect_lent(index)?;
        // The header may have been written through a run's buffer while lent: the status word
        // is ours again, so the kernel never takes a discarded frame for a send request.
        self.ring.reset(index);
        self.slots[index as usize] = Slot::Free;
        let n = self.ring.frame_count();
        if (index + 1) % n == self.cursor {
            // The latest allocation: step back as if it never happened.
            self.cursor = index;
        } else {
            self.holes.push(index);
        }
        Ok(())
    }

    fn expect_lent(&self, index: u32) -> Result<()> {
        match self.slots.get(index as usize) {
            Some(Slot::Lent) => Ok(()),
            _ => Err(Error::new(Errno::EINVAL, self.iface.subject(), format!("slot {index} is not lent out"))),
        }
    }

    /// Copies `frame` into the next free slot and queues it. `false` when the ring is full.
    pub fn send(&mut self, frame: &[u8]) -> Result<bool> {
        self.check_len(frame.len(), is_vlan_tagged(frame))?;
        let Some(index) = self.next_free() else { return Ok(false) };
        // SAFETY: the slot is ours and holds at least frame.len() bytes (checked by allocate).
        unsafe { std::ptr::copy_nonoverlapping(frame.as_ptr(), self.ring.data_ptr(index), frame.len()) };
        self.commit(index, frame.len())?;
        Ok(true)
    }

    /// Kicks the kernel to send everything queued; returns how many queued frames it took.
    /// ENOBUFS/EAGAIN are backpressure: what was not taken stays queued for the next flush.
    pub fn flush(&mut self) -> Result<u32> {
        if self.queue.is_empty() {
            return Ok(0);
        }
        let kicked = syscall::kick(self.socket.as_fd(), libc::MSG_DONTWAIT);
        let taken = self.collect_taken();
        match kicked {
            Ok(_) | Err(Errno::EAGAIN | Errno::ENOBUFS) => Ok(taken),
            // A rejected frame makes sendto() fail; collect_taken has counted it.
            Err(_) if self.rejection.is_some() => Ok(taken),
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

    /// Pops the queued frames the kernel has taken, in order, counting sent and rejected ones.
    fn collect_taken(&mut self) -> u32 {
        let mut taken = 0;
        while let Some(&index) = self.queue.front() {
            let status = self.ring.status(index);
            if status == ffi::TP_STATUS_SEND_REQUEST {
                break;
            }
            self.queue.pop_front();
            self.slots[index as usize] = Slot::Free;
            taken += 1;
            if status & ffi::TP_STATUS_WRONG_FORMAT != 0 {
                self.stats.rejected += 1;
                self.ring.reset(index);
                // The kernel's head stays on a rejected frame: it is a hole, filled next.
                self.holes.push(index);
                self.mtu = self.iface.mtu().unwrap_or(self.mtu);
                self.rejection = Some(
                    Error::new(
                        Errno::EMSGSIZE,
                        self.iface.subject(),
                        format!(
                            "the kernel rejected a queued frame (TP_STATUS_WRONG_FORMAT) on '{}'; it was dropped",
                            self.iface.name
                        ),
                    )
                    .with_syscall("sendto")
                    .with_hint("frames must fit the interface MTU when they are flushed, not only when queued"),
                );
            } else {
                self.stats.sent += 1;
            }
        }
        taken
    }

    /// The last rejection not yet reported, if any.
    pub fn take_rejection(&mut self) -> Option<Error> {
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

    /// Root only (CI runs as root): frames queued on one end of a veth pair arrive on the
    /// other, counted there by a capture.
    #[test]
    fn frames_sent_arrive_on_the_peer() {
        if unsafe { libc::geteuid() } != 0 {
            assert!(std::env::var("CI").is_err(), "CI runs as root");
            return;
        }
        let (a, b) = (format!("ntx{}a", std::process::id() % 100000), format!("ntx{}b", std::process::id() % 100000));
        let ip = |args: &[&str]| assert!(std::process::Command::new("ip").args(args).status().unwrap().success());
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
        struct Cleanup(String);
        impl Drop for Cleanup {
            fn drop(&mut self) {
                let _ = std::process::Command::new("ip").args(["link", "del", &self.0]).status();
            }
        }
        let _cleanup = Cleanup(a.clone());
        for dev in [&a, &b] {
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6"), "1");
            ip(&["link", "set", dev, "up"]);
        }
        let mut capture = crate::Capture::open(&b, Default::default()).unwrap();
        let mut tx = Injector::open(&a, InjectorOptions { frame_count: Some(8), ..Default::default() }).unwrap();
        let mut frame = [0u8; 60];
        frame[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
        let mut queued = 0;
        for seq in 0..20u8 {
            frame[14] = seq;
            while !tx.send(&frame).unwrap() {
                tx.drain(Some(Duration::from_secs(1))).unwrap();
            }
            queued += 1;
        }
        assert!(tx.drain(Some(Duration::from_secs(2))).unwrap());
        assert_eq!(tx.stats().sent, queued);
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        while seen.len() < 20 && Instant::now() < deadline {
            if let Some(mut batch) = capture.next_batch_blocking(Some(Duration::from_millis(50))).unwrap() {
                while let Some(p) = batch.next_packet() {
                    let p = p.unwrap();
                    let bytes = &batch.bytes()[p.data_offset as usize..][..p.captured_len as usize];
                    if bytes[12..14] == 0x88b5u16.to_be_bytes() {
                        seen.push(bytes[14]);
                    }
                }
            }
        }
        assert_eq!(seen, (0..20).collect::<Vec<u8>>());
    }
}
