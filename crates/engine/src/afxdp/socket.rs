//! An AF_XDP socket: its UMEM, its four rings, its place in the XSKMAP, and the handing of
//! frames between the kernel, the engine and the caller.
//!
//! Set-up order (Documentation/networking/af_xdp.rst; each step needs the one before): socket →
//! XDP_UMEM_REG → fill and completion ring sizes (both mandatory, even for one direction) → RX /
//! TX sizes → XDP_MMAP_OFFSETS and the mmaps → fill addresses posted (before bind, so the first
//! packets are not dropped) → program attached → bind → socket inserted into the XSKMAP (after
//! bind: an unbound socket in the map drops traffic).

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::afpacket::ring::Mapping;
use crate::afpacket::socket::Interface;
use crate::error::{Error, Result, Subject};
use crate::ffi;
use crate::reactor::{Callback, Reactor, Readiness, Token};
use crate::syscall;

use super::config::{XdpConfig, XdpOptions, ZeroCopy};
use super::program::{self, AttachMode, Attachment, XDP_PERMISSION_HINT};
use super::ring::Ring;
use super::umem::{FrameState, Frames, RxFrame};

/// How long a bind that finds the queue busy is retried: the kernel releases a closed socket's
/// queue from deferred work, ~25 ms after close on an idle machine, past 500 ms with both cores
/// busy; 2 s also covers a queue another process (a child killed, say) has just closed.
const BIND_RETRY: Duration = Duration::from_secs(2);
/// How long after this process closed a socket on a queue a bind there keeps retrying: the
/// release runs from a kernel work queue and after an RCU grace period, which on a loaded
/// machine can lag further still. A queue someone else
/// holds still fails after BIND_RETRY.
const OWN_RELEASE_GRACE: Duration = Duration::from_secs(5);
/// How often a wait with no packets checks that the interface still exists: a deleted
/// interface wakes no epoll waiter.
pub const LIVENESS_INTERVAL: Duration = Duration::from_millis(200);
/// Most runs (contiguous stretches of frames) in one RX batch; each is one lent buffer.
pub const MAX_RUNS: usize = 4;
/// Kicks per flush: one copy-mode sendto sends at most 32 descriptors.
const MAX_KICKS: u32 = 1024;

/// Cumulative counters: the kernel's (XDP_STATISTICS) and netring's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XdpStats {
    /// Packets handed out in batches.
    pub received: u64,
    /// RX batches handed out, and how often the socket slept waiting for packets (a poll, or an
    /// armed wait for readability): packets per batch and waits per packet say whether the
    /// reader keeps up in few large batches or wakes for every few packets.
    pub batches: u64,
    pub waits: u64,
    /// Frames the kernel completed.
    pub sent: u64,
    /// Descriptors netring refused (they also count in `kernel.rx_invalid_descs`).
    pub refused: u64,
    pub kernel: ffi::xdp_statistics,
    /// Now, not cumulative: RX frames posted to the fill ring and not yet taken by the kernel
    /// (what it can still receive into before the next refill), and packets waiting in the RX
    /// ring.
    pub fill_ring: u32,
    pub rx_ring: u32,
}

/// What the kernel gave.
#[derive(Debug, Clone)]
pub struct XdpInfo {
    pub zero_copy: bool,
    /// Driver or Skb, or None without a program of netring's.
    pub attach: Option<AttachMode>,
    pub prog_id: u32,
    pub rx_frames: u32,
    pub tx_frames: u32,
}

/// A contiguous stretch of frames of an RX batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub first: u32,
    pub count: u32,
}

/// The RX batch held by the caller: its packets and the runs of frames they lie in.
pub struct RxBatch<'a> {
    pub packets: &'a [RxFrame],
    pub runs: &'a [Run],
}

pub struct XdpSocket {
    // Field order is drop order: the rings are unmapped before the socket closes (a closed
    // socket with mapped rings keeps its queue), the socket closes before the attachment goes
    // (closing removes it from the XSKMAP), and the UMEM mapping lasts while anyone lends it.
    fill: Ring<u64>,
    completion: Ring<u64>,
    rx: Option<Ring<ffi::xdp_desc>>,
    tx: Option<Ring<ffi::xdp_desc>>,
    fd: OwnedFd,
    attachment: Option<Arc<Attachment>>,
    umem: Arc<Mapping>,
    frames: Frames,
    iface: Interface,
    config: XdpConfig,
    info: XdpInfo,
    /// The held RX batch.
    packets: Vec<RxFrame>,
    runs: Vec<Run>,
    /// TX descriptors written but not yet published.
    tx_unsubmitted: u32,
    /// The length each lent TX frame was lent with (`allocate_run`), by frame.
    tx_lent_len: Vec<u32>,
    stats: XdpStats,
    failed: Option<Error>,
    last_liveness: Instant,
    wait: Option<Token>,
}

impl XdpSocket {
    pub fn open(interface: &str, options: XdpOptions) -> Result<XdpSocket> {
        let config = XdpConfig::resolve(options)?;
        let iface = Interface::resolve(interface)?;
        let subject = iface.subject();
        let queues = rx_queue_count(&iface);
        if config.queue >= queues {
            return Err(Error::new(
                Errno::EINVAL,
                Subject::Option("queue"),
                format!(
                    "invalid option queue: '{}' has {queues} RX queue(s) (0 to {}), got {}",
                    iface.name,
                    queues - 1,
                    config.queue
                ),
            )
            .with_hint("list the queues with `ls /sys/class/net/<name>/queues` or `ethtool -l <name>`"));
        }

        // SAFETY: plain socket(2).
        let raw = unsafe { libc::socket(ffi::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            let e = Error::last("socket", subject.clone(), format!("opening an AF_XDP socket for '{}'", iface.name));
            return Err(match e.errno {
                Errno::EPERM | Errno::EACCES => e.with_hint(XDP_PERMISSION_HINT),
                Errno::EAFNOSUPPORT => e.with_hint("this kernel has no AF_XDP (CONFIG_XDP_SOCKETS, Linux 4.18+)"),
                _ => e,
            });
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let set = |name: libc::c_int, value: &u32, what: &str| {
            syscall::setsockopt(fd.as_fd(), ffi::SOL_XDP, name, value)
                .map_err(|e| Error::sys(e, "setsockopt", subject.clone(), format!("setting {what}")))
        };

        let umem_len = config.frame_size as usize * config.frame_count as usize;
        let umem = Mapping::anonymous(umem_len, &subject)?;
        let reg = ffi::xdp_umem_reg {
            addr: umem.as_ptr() as u64,
            len: umem_len as u64,
            chunk_size: config.frame_size,
            headroom: config.headroom,
            ..Default::default()
        };
        syscall::setsockopt(fd.as_fd(), ffi::SOL_XDP, ffi::XDP_UMEM_REG, &reg).map_err(|e| {
            let err = Error::sys(e, "setsockopt", subject.clone(), format!("registering the {umem_len}-byte UMEM (XDP_UMEM_REG)"));
            if e == Errno::ENOBUFS || e == Errno::ENOMEM {
                err.with_hint("the UMEM is pinned and counts against RLIMIT_MEMLOCK without CAP_IPC_LOCK: ask for fewer frames (frameCount)")
            } else {
                err
            }
        })?;
        let (rx_frames, tx_frames) = config.split();
        let n = config.ring_size;
        set(ffi::XDP_UMEM_FILL_RING, &n, "the fill ring size (XDP_UMEM_FILL_RING)")?;
        set(ffi::XDP_UMEM_COMPLETION_RING, &n, "the completion ring size (XDP_UMEM_COMPLETION_RING)")?;
        if config.mode.receives() {
            set(ffi::XDP_RX_RING, &n, "the RX ring size (XDP_RX_RING)")?;
        }
        if config.mode.transmits() {
            set(ffi::XDP_TX_RING, &n, "the TX ring size (XDP_TX_RING)")?;
        }
        if let Some(us) = config.busy_poll_us {
            syscall::setsockopt(fd.as_fd(), libc::SOL_SOCKET, ffi::SO_BUSY_POLL, &(us as i32))
                .map_err(|e| Error::sys(e, "setsockopt", Subject::Option("busyPollUs"), "setting SO_BUSY_POLL"))?;
        }
        let off: ffi::xdp_mmap_offsets = syscall::getsockopt(fd.as_fd(), ffi::SOL_XDP, ffi::XDP_MMAP_OFFSETS)
            .map_err(|e| Error::sys(e, "getsockopt", subject.clone(), "reading the ring offsets (XDP_MMAP_OFFSETS)"))?;
        let map_err = |e: Errno| Error::sys(e, "mmap", subject.clone(), "mapping an AF_XDP ring");
        let mut fill = Ring::<u64>::map(fd.as_fd(), &off.fr, n, ffi::XDP_UMEM_PGOFF_FILL_RING).map_err(map_err)?;
        let completion =
            Ring::<u64>::map(fd.as_fd(), &off.cr, n, ffi::XDP_UMEM_PGOFF_COMPLETION_RING).map_err(map_err)?;
        let rx = config
            .mode
            .receives()
            .then(|| Ring::map(fd.as_fd(), &off.rx, n, ffi::XDP_PGOFF_RX_RING))
            .transpose()
            .map_err(map_err)?;
        let tx = config
            .mode
            .transmits()
            .then(|| Ring::map(fd.as_fd(), &off.tx, n, ffi::XDP_PGOFF_TX_RING))
            .transpose()
            .map_err(map_err)?;

        let mut frames = Frames::new(config.frame_size, 0..rx_frames, rx_frames..rx_frames + tx_frames);
        let room = fill.free();
        let mut i = 0;
        let posted = frames.take_for_fill(room, |addr| {
            fill.write(i, addr);
            i += 1;
        });
        fill.submit(posted);

        let steering = program::steer(&config.program, &iface, config.attach, queues)?;

        bind(&fd, &iface, &config)?;
        let options: ffi::xdp_options = syscall::getsockopt(fd.as_fd(), ffi::SOL_XDP, ffi::XDP_OPTIONS)
            .map_err(|e| Error::sys(e, "getsockopt", subject.clone(), "reading XDP_OPTIONS"))?;

        if let Some(map) = steering.map() {
            super::bpf::xskmap_insert(map, config.queue, fd.as_fd()).map_err(|e| {
                Error::sys(
                    e,
                    "bpf",
                    subject.clone(),
                    format!("putting the socket into the XSKMAP at queue {}", config.queue),
                )
            })?;
        }

        let attachment = steering.attachment;
        let info = XdpInfo {
            zero_copy: options.flags & ffi::XDP_OPTIONS_ZEROCOPY != 0,
            attach: attachment.as_ref().map(|a| a.mode()),
            prog_id: attachment.as_ref().map_or(0, |a| a.prog_id()),
            rx_frames,
            tx_frames,
        };
        let batch = config.batch_size as usize;
        Ok(XdpSocket {
            fill,
            completion,
            rx,
            tx,
            fd,
            attachment,
            umem,
            frames,
            iface,
            config,
            info,
            packets: Vec::with_capacity(batch),
            runs: Vec::with_capacity(MAX_RUNS),
            tx_unsubmitted: 0,
            tx_lent_len: vec![0; (rx_frames + tx_frames) as usize],
            stats: XdpStats::default(),
            failed: None,
            last_liveness: Instant::now(),
            wait: None,
        })
    }

    pub fn interface(&self) -> &Interface {
        &self.iface
    }

    pub fn config(&self) -> &XdpConfig {
        &self.config
    }

    pub fn info(&self) -> &XdpInfo {
        &self.info
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The UMEM, for lending frames.
    pub fn umem(&self) -> &Arc<Mapping> {
        &self.umem
    }

    pub fn frame_size(&self) -> u32 {
        self.config.frame_size
    }

    /// Whether netring's program on this interface is still the one this socket uses.
    pub fn has_program(&self) -> bool {
        self.attachment.is_some()
    }

    // --- RX ---------------------------------------------------------------------------------

    /// Hands the held batch's frames back: they become Free and go to the fill ring. The
    /// caller must have detached every buffer over them first.
    pub fn release(&mut self) {
        for run in self.runs.drain(..) {
            self.frames.release_lent(run.first, run.count);
        }
        self.packets.clear();
        self.refill();
    }

    /// RX frames in the fill ring: posted and not yet taken by the kernel (which publishes
    /// what it took at the end of each receive round, `xsk_flush()`).
    pub fn fill_level(&mut self) -> u32 {
        self.fill.outstanding()
    }

    /// Received packets waiting in the RX ring.
    pub fn rx_backlog(&mut self) -> u32 {
        self.rx.as_mut().map_or(0, |rx| rx.available())
    }

    fn refill(&mut self) {
        if self.rx.is_none() {
            return;
        }
        let room = self.fill.free();
        let fill = &mut self.fill;
        let mut i = 0;
        let posted = self.frames.take_for_fill(room, |addr| {
            fill.write(i, addr);
            i += 1;
        });
        if posted > 0 {
            fill.submit(posted);
        }
    }

    /// The next received packets, or `None` when none are ready. The batch held before is
    /// released first: one batch is held at a time.
    pub fn next_batch(&mut self) -> Result<Option<RxBatch<'_>>> {
        self.release();
        let Some(rx) = self.rx.as_mut() else {
            return Err(Error::new(
                Errno::EINVAL,
                Subject::Option("mode"),
                "this socket was opened with mode 'tx': it receives nothing",
            ));
        };
        let available = rx.available().min(self.config.batch_size);
        if available == 0 {
            self.wake_fill()?;
            self.check_alive()?;
            return Ok(None);
        }
        let mut taken = 0;
        let mut bad = None;
        for i in 0..available {
            let desc = rx.read(i);
            // A run may grow by this frame only if it directly follows the run's last frame.
            let frame = (desc.addr / self.config.frame_size as u64) as u32;
            let extends = self.runs.last().is_some_and(|r| r.first + r.count == frame);
            if !extends && self.runs.len() == MAX_RUNS {
                break;
            }
            match self.frames.accept_rx(&desc) {
                Ok(p) => {
                    if extends {
                        self.runs.last_mut().expect("checked").count += 1;
                    } else {
                        self.runs.push(Run { first: p.frame, count: 1 });
                    }
                    self.packets.push(p);
                    taken += 1;
                }
                Err(why) => {
                    bad = Some(why);
                    break;
                }
            }
        }
        if let Some(why) = bad {
            if taken == 0 {
                // Skip the bad descriptor so the ring moves on; its frame is not touched.
                rx.release(1);
                self.stats.refused += 1;
                return Err(Error::new(
                    Errno::EBADMSG,
                    self.iface.subject(),
                    format!(
                        "the kernel handed back an invalid RX descriptor on '{}': {why}; it was skipped",
                        self.iface.name
                    ),
                ));
            }
        }
        rx.release(taken);
        self.stats.received += taken as u64;
        self.stats.batches += 1;
        Ok(Some(RxBatch { packets: &self.packets, runs: &self.runs }))
    }

    /// The held batch, again (after `next_batch`).
    pub fn held(&self) -> RxBatch<'_> {
        RxBatch { packets: &self.packets, runs: &self.runs }
    }

    /// Blocks until packets are ready or `timeout` passes; whether they are.
    pub fn wait_ready(&mut self, timeout: Option<Duration>) -> Result<bool> {
        self.release();
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if self.rx.as_mut().is_some_and(|rx| rx.available() > 0) {
                return Ok(true);
            }
            self.wake_fill()?;
            self.check_alive()?;
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Ok(false);
            }
            // Never longer than the liveness interval: a deleted interface wakes nobody.
            let step = left.map_or(LIVENESS_INTERVAL, |l| l.min(LIVENESS_INTERVAL));
            self.stats.waits += 1;
            syscall::poll(self.fd.as_fd(), libc::POLLIN, Some(step))
                .map_err(|e| Error::sys(e, "poll", self.iface.subject(), "waiting for packets"))?;
        }
    }

    /// In zero-copy mode the driver may need a wakeup to pick up fill addresses.
    fn wake_fill(&mut self) -> Result<()> {
        if !(self.config.need_wakeup && self.fill.needs_wakeup()) {
            return Ok(());
        }
        // SAFETY: a zero-length non-blocking receive; no buffer is written.
        let rc = unsafe {
            libc::recvfrom(
                self.fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            match Errno::last() {
                Errno::EAGAIN | Errno::EINTR | Errno::EBUSY => {}
                e => return Err(self.socket_error(e, "recvfrom")),
            }
        }
        Ok(())
    }

    /// Reports a deleted interface (ENODEV) or a pending socket error; checked at most every
    /// LIVENESS_INTERVAL.
    fn check_alive(&mut self) -> Result<()> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.last_liveness.elapsed() < LIVENESS_INTERVAL {
            return Ok(());
        }
        self.last_liveness = Instant::now();
        if !self.iface.still_exists() {
            let err = Error::new(
                Errno::ENODEV,
                self.iface.subject(),
                format!("interface '{}' was removed while the AF_XDP socket was open", self.iface.name),
            )
            .with_hint("the socket cannot continue; open a new one once the interface exists again");
            self.failed = Some(err.clone());
            return Err(err);
        }
        Ok(())
    }

    fn socket_error(&mut self, e: Errno, syscall: &'static str) -> Error {
        if !self.iface.still_exists() {
            self.last_liveness = Instant::now() - LIVENESS_INTERVAL;
            if let Err(err) = self.check_alive() {
                return err;
            }
        }
        let err =
            Error::sys(e, syscall, self.iface.subject(), format!("using the AF_XDP socket on '{}'", self.iface.name));
        if e == Errno::ENETDOWN {
            err.with_hint("bring the interface up (`ip link set <name> up`); the socket works again once it is")
        } else {
            err
        }
    }

    // --- TX -----------------------------------------------------------------------------------

    fn tx_ring(&mut self) -> Result<&mut Ring<ffi::xdp_desc>> {
        self.tx.as_mut().ok_or_else(|| {
            Error::new(Errno::EINVAL, Subject::Option("mode"), "this socket was opened with mode 'rx': it cannot send")
        })
    }

    /// The largest frame a TX slot holds.
    pub fn slot_capacity(&self) -> u32 {
        self.config.frame_size
    }

    /// Checks `frame` as `send` would (EINVAL shorter than an Ethernet header, EMSGSIZE longer
    /// than a TX frame), queueing nothing: lets a caller refuse a list whole before it queues any.
    pub fn check_frame(&self, frame: &[u8]) -> Result<()> {
        self.check_len(frame.len())
    }

    fn check_len(&self, len: usize) -> Result<()> {
        if len < ffi::ETH_HLEN {
            // As the Injector says it: too short is a bad argument, too long a size error.
            return Err(Error::new(
                Errno::EINVAL,
                self.iface.subject(),
                format!("a frame of {len} bytes is shorter than an Ethernet header ({} bytes)", ffi::ETH_HLEN),
            ));
        }
        if len > self.slot_capacity() as usize {
            return Err(Error::new(
                Errno::EMSGSIZE,
                self.iface.subject(),
                format!("a frame must be {} to {} bytes (frameSize), got {len}", ffi::ETH_HLEN, self.slot_capacity()),
            )
            .with_syscall("sendto"));
        }
        Ok(())
    }

    /// TX ring slots we may still write.
    fn tx_room(&mut self) -> Result<u32> {
        let unsubmitted = self.tx_unsubmitted;
        Ok(self.tx_ring()?.free() - unsubmitted)
    }

    /// Moves completed TX frames back to the free list; returns how many.
    pub fn reap(&mut self) -> Result<u32> {
        let n = self.completion.available();
        let mut bad = None;
        for i in 0..n {
            let addr = self.completion.read(i);
            match self.frames.complete(addr) {
                Ok(_) => self.stats.sent += 1,
                Err(why) => bad = Some(why),
            }
        }
        self.completion.release(n);
        if let Some(why) = bad {
            return Err(Error::new(
                Errno::EBADMSG,
                self.iface.subject(),
                format!("the kernel completed a TX address netring did not queue on '{}': {why}", self.iface.name),
            ));
        }
        Ok(n)
    }

    fn push_tx(&mut self, frame: u32, len: u32) {
        let addr = self.frames.addr(frame);
        let i = self.tx_unsubmitted;
        self.tx.as_mut().expect("checked by tx_room").write(i, ffi::xdp_desc { addr, len, options: 0 });
        self.tx_unsubmitted += 1;
    }

    /// Copies frames into free TX frames and queues them in order, all or none: `frame_at(i)`
    /// gives frame `i` of `count`. Every frame is read and checked before any is queued, those
    /// beyond the room only checked; a refused frame names its index and nothing is queued, so a
    /// retry never sends a frame twice. Returns how many were queued.
    ///
    /// Each frame is copied before `frame_at` is called again, so a slice need only live until
    /// then: the caller may read frames from memory that can go away between calls (JavaScript
    /// buffers, where reading the next frame may run code that detaches the last one).
    pub fn send_frames_with<'a>(
        &mut self,
        count: u32,
        mut frame_at: impl FnMut(u32) -> Result<&'a [u8]>,
    ) -> Result<u32> {
        let mut want = count.min(self.tx_room()?);
        if self.frames.tx_free() < want {
            self.reap()?;
        }
        // Descriptors are written past the unsubmitted ones but counted only at the end: until
        // then neither a flush nor the kernel sees them, and a refusal takes them back.
        let base = self.tx_unsubmitted;
        let (mut staged, mut next, mut left) = (0u32, 0u32, 0u32);
        for i in 0..count {
            let checked = frame_at(i).and_then(|f| {
                self.check_len(f.len()).map(|()| f).map_err(|mut e| {
                    e.message = format!("frames[{i}]: {}", e.message);
                    e
                })
            });
            let frame = match checked {
                Ok(frame) => frame,
                Err(e) => {
                    // Frames taken and not yet written go back with the written ones.
                    for frame in next..next + left {
                        self.frames.untake_tx(frame);
                    }
                    self.unstage(base, staged);
                    return Err(e);
                }
            };
            if staged == want {
                continue;
            }
            if left == 0 {
                match self.frames.take_tx_run(want - staged, FrameState::TxQueued) {
                    Some((first, n)) if n > 0 => (next, left) = (first, n),
                    // No free frame: what is staged goes, the rest is only checked.
                    _ => {
                        want = staged;
                        continue;
                    }
                }
            }
            // SAFETY: a frame just taken (TxQueued, not yet visible to the kernel) of frame_size
            // bytes inside the UMEM; frame.len() <= frame_size was checked.
            unsafe { std::ptr::copy_nonoverlapping(frame.as_ptr(), self.frame_ptr(next), frame.len()) };
            let desc = ffi::xdp_desc { addr: self.frames.addr(next), len: frame.len() as u32, options: 0 };
            self.tx.as_mut().expect("checked by tx_room").write(base + staged, desc);
            (next, left, staged) = (next + 1, left - 1, staged + 1);
        }
        self.tx_unsubmitted += staged;
        Ok(staged)
    }

    /// Takes back `n` descriptors written from `base` past the published ones (not counted
    /// yet): their frames are Free again.
    fn unstage(&mut self, base: u32, n: u32) {
        let Some(tx) = self.tx.as_ref() else { return };
        for k in 0..n {
            let frame = (tx.written(base + k).addr / self.frames.frame_size() as u64) as u32;
            self.frames.untake_tx(frame);
        }
    }

    /// Copies `frame` into a free TX frame and queues it; `false` when no frame or ring slot is
    /// free (flush, or wait with `arm_wait`).
    pub fn send(&mut self, frame: &[u8]) -> Result<bool> {
        self.check_len(frame.len())?;
        if self.tx_room()? == 0 {
            return Ok(false);
        }
        if self.frames.tx_free() == 0 {
            self.reap()?;
        }
        let Some((index, 1)) = self.frames.take_tx_run(1, FrameState::TxQueued) else { return Ok(false) };
        // SAFETY: a Free TX frame (now TxQueued, not yet visible to the kernel) of frame_size
        // bytes inside the UMEM; frame.len() <= frame_size was checked.
        unsafe {
            std::ptr::copy_nonoverlapping(frame.as_ptr(), self.frame_ptr(index), frame.len());
        }
        self.push_tx(index, frame.len() as u32);
        Ok(true)
    }

    pub fn frame_ptr(&self, frame: u32) -> *mut u8 {
        // SAFETY: frame < frame_count (all callers pass frames from the table).
        unsafe { self.umem.as_ptr().add(self.frames.addr(frame) as usize) }
    }

    /// Lends up to `max` consecutive free TX frames for zero-copy writing; `(first, count)`.
    pub fn allocate_run(&mut self, max: u32, len: usize) -> Result<Option<(u32, u32)>> {
        self.check_len(len.max(ffi::ETH_HLEN))?;
        let room = self.tx_room()?;
        if self.frames.tx_free() < max {
            self.reap()?;
        }
        let run = self.frames.take_tx_run(max.min(room), FrameState::TxLent).filter(|r| r.1 > 0);
        if let Some((first, n)) = run {
            self.tx_lent_len[first as usize..(first + n) as usize].fill(len as u32);
        }
        Ok(run)
    }

    /// Queues the first `send` frames of the run of `count` lent frames at `first`, with
    /// `lengths` bytes each (one length for all, or one per frame sent), and gives the rest back.
    /// Everything is checked first, as the Injector's runs are: on error nothing is queued and
    /// the whole run goes back, so a bad call never holds frames or half-sends a run.
    pub fn commit_run(&mut self, first: u32, count: u32, send: u32, lengths: &[u32]) -> Result<()> {
        let checked = self.check_run(first, count, send, lengths);
        let queued = if checked.is_ok() { send } else { 0 };
        for i in 0..queued {
            self.frames.tx_lent_to(first + i, FrameState::TxQueued);
            self.push_tx(first + i, length_at(lengths, i));
        }
        for frame in first + queued..first.saturating_add(count) {
            // A frame of the run that is not lent (a bad `first`) is left as it is.
            self.frames.tx_lent_to(frame, FrameState::Free);
        }
        checked
    }

    fn check_run(&mut self, first: u32, count: u32, send: u32, lengths: &[u32]) -> Result<()> {
        if send > count {
            return Err(Error::invalid_option("count", format!("must be at most the {count} slots lent, got {send}")));
        }
        if lengths.is_empty() || (lengths.len() != 1 && lengths.len() < send as usize) {
            return Err(Error::invalid_option(
                "lengths",
                format!("needs one length for all slots or one per slot sent ({send}), got {}", lengths.len()),
            ));
        }
        for frame in first..first.saturating_add(count) {
            if !self.frames.tx_range().contains(&frame) || self.frames.state(frame) != FrameState::TxLent {
                return Err(Error::new(Errno::EINVAL, Subject::None, format!("TX frame {frame} is not lent out")));
            }
        }
        for i in 0..send {
            let (len, lent) = (length_at(lengths, i), self.tx_lent_len[(first + i) as usize]);
            let checked = if len > lent {
                Err(Error::invalid_option("length", format!("cannot send {len} bytes from a slot of {lent}")))
            } else {
                // A length of 0 too is an error, never a quiet discard: the caller asked to send.
                self.check_len(len as usize)
            };
            checked.map_err(|mut e| {
                e.message = format!("slot {i} of the run: {}", e.message);
                e
            })?;
        }
        if self.tx_room()? < send {
            // Cannot happen: allocate_run lends at most the ring room, and only commits use it.
            return Err(Error::new(Errno::ENOBUFS, self.iface.subject(), "the TX ring is full"));
        }
        Ok(())
    }

    /// Queues lent frame `frame` with `len` bytes (`discard` gives it back unsent); a run of
    /// one, so on error it goes back.
    pub fn commit(&mut self, frame: u32, len: usize) -> Result<()> {
        self.commit_run(frame, 1, 1, &[u32::try_from(len).unwrap_or(u32::MAX)])
    }

    pub fn discard(&mut self, frame: u32) -> Result<()> {
        self.commit_run(frame, 1, 0, &[0])
    }

    /// Publishes what was queued and kicks the kernel if it asks for it (always in copy mode);
    /// returns how many frames were published.
    pub fn flush(&mut self) -> Result<u32> {
        let Some(tx) = self.tx.as_mut() else { return Ok(0) };
        let published = self.tx_unsubmitted;
        if published > 0 {
            tx.submit(published);
            self.tx_unsubmitted = 0;
        }
        // One copy-mode sendto sends at most 32 frames and says EAGAIN while more remain
        // (xsk_generic_xmit()): kick until the ring is empty, reaping completions between
        // kicks so the completion ring never fills.
        for _ in 0..MAX_KICKS {
            let tx = self.tx.as_mut().expect("checked above");
            if tx.outstanding() == 0 || (self.config.need_wakeup && !tx.needs_wakeup()) {
                break;
            }
            match syscall::kick(self.fd.as_fd(), libc::MSG_DONTWAIT) {
                Ok(_) => {
                    self.reap()?;
                    if !self.info.zero_copy {
                        break;
                    }
                }
                // EBUSY: the device dropped a frame (e.g. longer than its MTU); it is still
                // completed. ENOBUFS: backpressure, the frames stay queued.
                Err(Errno::EAGAIN | Errno::EBUSY) => {
                    self.reap()?;
                }
                Err(Errno::ENOBUFS) => break,
                Err(e) => return Err(self.socket_error(e, "sendto")),
            }
        }
        self.reap()?;
        Ok(published)
    }

    /// TX frames queued or in flight.
    pub fn pending(&mut self) -> u32 {
        let _ = self.reap();
        self.frames.tx_in_flight()
    }

    /// Flushes and waits until everything queued was sent, or `timeout` passes.
    pub fn drain(&mut self, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            self.flush()?;
            if self.pending() == 0 {
                return Ok(true);
            }
            self.check_alive()?;
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Ok(false);
            }
            let step = left.map_or(Duration::from_millis(2), |l| l.min(Duration::from_millis(2)));
            std::thread::sleep(step);
        }
    }

    // --- waiting and counters ------------------------------------------------------------------

    /// Calls `callback` once, from the reactor thread, when the socket becomes readable (RX) or
    /// writable (TX), or reports an error. Arming again withdraws the previous wait.
    pub fn arm_wait(&mut self, writable: bool, callback: Callback) -> Result<()> {
        let want = if writable { libc::EPOLLOUT } else { libc::EPOLLIN };
        self.stats.waits += u64::from(!writable);
        let fd = self.fd();
        Reactor::rearm(&mut self.wait, fd, want as u32, callback)
    }

    pub fn disarm_wait(&mut self) -> Option<Callback> {
        Reactor::withdraw(&mut self.wait)
    }

    /// Cumulative counters (the kernel's are cumulative already).
    pub fn stats(&mut self) -> Result<XdpStats> {
        let _ = self.reap();
        let k: ffi::xdp_statistics = syscall::getsockopt(self.fd.as_fd(), ffi::SOL_XDP, ffi::XDP_STATISTICS)
            .map_err(|e| Error::sys(e, "getsockopt", self.iface.subject(), "reading XDP_STATISTICS"))?;
        let kernel = ffi::xdp_statistics { rx_invalid_descs: k.rx_invalid_descs + self.stats.refused, ..k };
        let (fill_ring, rx_ring) = (self.fill_level(), self.rx_backlog());
        Ok(XdpStats { kernel, fill_ring, rx_ring, ..self.stats })
    }
}

impl Drop for XdpSocket {
    fn drop(&mut self) {
        if let Some(callback) = self.disarm_wait() {
            callback(Readiness::Cancelled);
        }
        releasing::closed(self.iface.index, self.config.queue, Instant::now());
    }
}

/// Queues this process closed a socket on, by (ifindex, queue), while the kernel may still be
/// releasing them: a bind there waits for the release instead of failing with EBUSY.
mod releasing {
    use std::sync::Mutex;
    use std::time::Instant;

    use super::{BIND_RETRY, OWN_RELEASE_GRACE};

    static CLOSED: Mutex<Vec<((u32, u32), Instant)>> = Mutex::new(Vec::new());

    pub fn closed(ifindex: u32, queue: u32, at: Instant) {
        let mut closed = CLOSED.lock().unwrap_or_else(|p| p.into_inner());
        closed.retain(|&(key, when)| key != (ifindex, queue) && at.saturating_duration_since(when) < OWN_RELEASE_GRACE);
        closed.push(((ifindex, queue), at));
    }

    /// Bound: the queue is ours now, nothing is pending on it.
    pub fn bound(ifindex: u32, queue: u32) {
        CLOSED.lock().unwrap_or_else(|p| p.into_inner()).retain(|&(key, _)| key != (ifindex, queue));
    }

    /// Until when a bind that started `now` retries EBUSY on (ifindex, queue).
    pub fn bind_deadline(ifindex: u32, queue: u32, now: Instant) -> Instant {
        let closed = CLOSED.lock().unwrap_or_else(|p| p.into_inner());
        let own = closed.iter().find(|&&(key, _)| key == (ifindex, queue)).map(|&(_, when)| when + OWN_RELEASE_GRACE);
        own.map_or(now + BIND_RETRY, |own| own.max(now + BIND_RETRY))
    }
}

/// A run's length for frame `i`: one length for all, or one per frame.
fn length_at(lengths: &[u32], i: u32) -> u32 {
    if lengths.len() == 1 {
        lengths[0]
    } else {
        lengths[i as usize]
    }
}

/// RX queues of the interface, from sysfs (1 when it does not say).
pub fn rx_queue_count(iface: &Interface) -> u32 {
    std::fs::read_dir(format!("/sys/class/net/{}/queues", iface.name))
        .map(|d| d.filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with("rx-")).count() as u32)
        .unwrap_or(1)
        .max(1)
}

fn bind(fd: &OwnedFd, iface: &Interface, config: &XdpConfig) -> Result<()> {
    let mut flags = match config.zero_copy {
        ZeroCopy::Auto => 0,
        ZeroCopy::Required => ffi::XDP_ZEROCOPY,
        ZeroCopy::Off => ffi::XDP_COPY,
    };
    if config.need_wakeup {
        flags |= ffi::XDP_USE_NEED_WAKEUP;
    }
    let sxdp = ffi::sockaddr_xdp {
        sxdp_family: ffi::AF_XDP as u16,
        sxdp_flags: flags,
        sxdp_ifindex: iface.index,
        sxdp_queue_id: config.queue,
        sxdp_shared_umem_fd: 0,
    };
    let deadline = releasing::bind_deadline(iface.index, config.queue, Instant::now());
    loop {
        // SAFETY: a valid sockaddr_xdp of its own size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sxdp as *const ffi::sockaddr_xdp).cast(),
                std::mem::size_of::<ffi::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            releasing::bound(iface.index, config.queue);
            return Ok(());
        }
        let e = Errno::last();
        // The queue of a socket closed moments ago is released with a delay.
        if (e == Errno::EBUSY || e == Errno::EINTR) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let doing = format!("binding the AF_XDP socket to '{}' queue {}", iface.name, config.queue);
        let err = Error::sys(e, "bind", iface.subject(), doing);
        return Err(match e {
            Errno::EBUSY => err.with_hint("another AF_XDP socket is bound to this queue (in this or another process)"),
            Errno::EOPNOTSUPP if config.zero_copy == ZeroCopy::Required => {
                Error { subject: Subject::Option("zeroCopy"), ..err }.with_hint(
                    "the driver has no AF_XDP zero-copy support (veth never has): use zeroCopy: 'auto' or false",
                )
            }
            Errno::EPERM | Errno::EACCES => err.with_hint(XDP_PERMISSION_HINT),
            _ => err,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::afxdp::config::XdpMode;
    use crate::afxdp::is_root;
    use std::process::Command;

    /// A veth pair with one queue each, both ends here, IPv6 off; deleted on drop.
    struct Veth(String, String);

    impl Veth {
        fn new(tag: &str) -> Veth {
            let (a, b) = (format!("nx{}{tag}a", std::process::id()), format!("nx{}{tag}b", std::process::id()));
            let ip = |args: &[&str]| assert!(Command::new("ip").args(args).status().unwrap().success(), "ip {args:?}");
            ip(&["link", "add", &a, "numtxqueues", "1", "numrxqueues", "1", "type", "veth", "peer", "name", &b]);
            for d in [&a, &b] {
                let _ = Command::new("sysctl").args(["-qw", &format!("net.ipv6.conf.{d}.disable_ipv6=1")]).status();
                ip(&["link", "set", d, "up"]);
            }
            Veth(a, b)
        }
    }

    impl Drop for Veth {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["link", "del", &self.0]).status();
        }
    }

    #[test]
    fn a_bind_waits_longer_for_a_queue_this_process_closed_itself() {
        // An ifindex no interface has, so that no other test's sockets touch these entries.
        let (ifindex, now) = (u32::MAX, Instant::now());
        assert_eq!(releasing::bind_deadline(ifindex, 0, now), now + BIND_RETRY, "a queue nobody here closed");
        releasing::closed(ifindex, 0, now);
        assert_eq!(releasing::bind_deadline(ifindex, 0, now), now + OWN_RELEASE_GRACE, "our own close");
        assert_eq!(releasing::bind_deadline(ifindex, 1, now), now + BIND_RETRY, "another queue");
        let later = now + OWN_RELEASE_GRACE;
        assert_eq!(releasing::bind_deadline(ifindex, 0, later), later + BIND_RETRY, "never less than BIND_RETRY");
        releasing::bound(ifindex, 0);
        assert_eq!(releasing::bind_deadline(ifindex, 0, now), now + BIND_RETRY, "bound again: nothing pending");
    }

    fn xdp_attached(dev: &str) -> bool {
        let out = Command::new("ip").args(["-d", "link", "show", dev]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
    }

    fn frame(i: u8, len: usize) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, i]);
        f.extend_from_slice(&[0x88, 0xb5]);
        f.extend((0..len - 14).map(|j| (j as u8).wrapping_mul(7).wrapping_add(i)));
        f
    }

    /// The next `n` packets `rx` receives (fewer if 10 s pass), as copies.
    fn receive(rx: &mut XdpSocket, n: usize) -> Vec<Vec<u8>> {
        let mut got: Vec<Vec<u8>> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < n && Instant::now() < deadline {
            if !rx.wait_ready(Some(Duration::from_millis(100))).unwrap() {
                continue;
            }
            let umem = rx.umem().as_ptr();
            let fs = rx.frame_size() as usize;
            let batch = rx.next_batch().unwrap().unwrap();
            assert!(batch.runs.len() <= 2, "{:?}", batch.runs);
            for p in batch.packets {
                // SAFETY: a checked descriptor inside the UMEM, lent to us.
                let s = unsafe {
                    std::slice::from_raw_parts(umem.add(p.frame as usize * fs + p.offset as usize), p.len as usize)
                };
                got.push(s.to_vec());
            }
        }
        got
    }

    #[test]
    fn receives_and_sends_byte_exact_on_a_veth_pair_and_detaches_at_close() {
        if !is_root() {
            return;
        }
        let veth = Veth::new("e");
        let mut rx = XdpSocket::open(&veth.1, XdpOptions { mode: Some(XdpMode::Rx), ..Default::default() }).unwrap();
        assert!(!rx.info().zero_copy, "veth is copy mode only");
        assert!(xdp_attached(&veth.1));
        let mut tx = XdpSocket::open(&veth.0, XdpOptions { mode: Some(XdpMode::Tx), ..Default::default() }).unwrap();
        assert!(!xdp_attached(&veth.0), "a TX-only socket attaches no program");
        let frames: Vec<Vec<u8>> = (0..100u8).map(|i| frame(i, 60 + i as usize * 14)).collect();
        for f in &frames {
            assert!(tx.send(f).unwrap());
        }
        assert_eq!(tx.flush().unwrap(), 100);
        assert!(tx.drain(Some(Duration::from_secs(5))).unwrap());
        assert_eq!(receive(&mut rx, frames.len()), frames);
        assert_eq!(rx.stats().unwrap().received, 100);
        assert_eq!(tx.stats().unwrap().sent, 100);
        drop(rx);
        assert!(!xdp_attached(&veth.1), "the program goes with the last socket");
    }

    /// Sends `n` frames from a TX socket on the peer and waits until all wait in `rx`'s RX ring.
    fn deliver(tx: &mut XdpSocket, rx: &mut XdpSocket, n: usize, seq: usize) {
        let before = rx.rx_backlog() as usize;
        for i in 0..n {
            assert!(tx.send(&frame((seq + i) as u8, 60 + (seq + i) % 200)).unwrap());
        }
        tx.flush().unwrap();
        assert!(tx.drain(Some(Duration::from_secs(5))).unwrap());
        let deadline = Instant::now() + Duration::from_secs(10);
        while (rx.rx_backlog() as usize) < before + n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(rx.rx_backlog() as usize, before + n, "every frame reached the RX ring");
    }

    #[test]
    fn every_rx_frame_not_lent_or_waiting_is_in_the_fill_ring() {
        if !is_root() {
            return;
        }
        let veth = Veth::new("f");
        let mut tx = XdpSocket::open(&veth.0, XdpOptions { mode: Some(XdpMode::Tx), ..Default::default() }).unwrap();
        for mode in [XdpMode::Rx, XdpMode::RxTx] {
            // Default geometry: the fill ring must be able to hold every RX frame, or frames it
            // has no room for are UMEM the kernel never receives into.
            let mut rx = XdpSocket::open(&veth.1, XdpOptions { mode: Some(mode), ..Default::default() }).unwrap();
            let frames = rx.info().rx_frames;
            assert_eq!(rx.fill_level(), frames, "{mode:?}: every RX frame is posted at open");
            let batch = rx.config().batch_size;
            deliver(&mut tx, &mut rx, batch as usize + 44, 0);
            assert_eq!(rx.fill_level() + rx.rx_backlog(), frames, "{mode:?}: the kernel took one frame per packet");
            let lent = rx.next_batch().unwrap().unwrap().packets.len() as u32;
            assert_eq!(lent, batch);
            assert_eq!(rx.fill_level() + rx.rx_backlog() + lent, frames, "{mode:?}: nothing is posted while lent");
            rx.release();
            assert_eq!(rx.fill_level(), frames - 44, "{mode:?}: a released batch goes back to the fill ring at once");
            while rx.next_batch().unwrap().is_some() {}
            assert_eq!(rx.fill_level(), frames, "{mode:?}: all RX frames posted again");
            assert_eq!(rx.stats().unwrap().kernel.rx_fill_ring_empty_descs, 0);
        }
    }

    #[test]
    fn a_batch_that_wraps_the_rx_frames_is_two_runs_in_packet_order() {
        if !is_root() {
            return;
        }
        let veth = Veth::new("w");
        let mut tx = XdpSocket::open(&veth.0, XdpOptions { mode: Some(XdpMode::Tx), ..Default::default() }).unwrap();
        let options = XdpOptions {
            mode: Some(XdpMode::Rx),
            frame_count: Some(64),
            ring_size: Some(64),
            batch_size: Some(64),
            ..Default::default()
        };
        let mut rx = XdpSocket::open(&veth.1, options).unwrap();
        deliver(&mut tx, &mut rx, 40, 0);
        assert_eq!(rx.next_batch().unwrap().unwrap().runs, [Run { first: 0, count: 40 }]);
        rx.release();
        // Frames 40..64 and then 0..16: the batch wraps the RX range.
        deliver(&mut tx, &mut rx, 40, 40);
        let umem = rx.umem().as_ptr();
        let fs = rx.frame_size() as usize;
        let batch = rx.next_batch().unwrap().unwrap();
        assert_eq!(batch.runs, [Run { first: 40, count: 24 }, Run { first: 0, count: 16 }]);
        let mut packets = batch.packets.iter();
        for run in batch.runs {
            for j in 0..run.count {
                let p = packets.next().expect("one packet per frame of the runs");
                assert_eq!(p.frame, run.first + j, "packets come in run order");
            }
        }
        for (i, p) in batch.packets.iter().enumerate() {
            // SAFETY: a checked descriptor inside the UMEM, lent to us.
            let s = unsafe {
                std::slice::from_raw_parts(umem.add(p.frame as usize * fs + p.offset as usize), p.len as usize)
            };
            assert_eq!(s, frame((40 + i) as u8, 60 + (40 + i) % 200).as_slice());
        }
    }

    #[test]
    fn a_run_is_checked_whole_before_any_frame_is_queued() {
        if !is_root() {
            return;
        }
        let veth = Veth::new("r");
        let options =
            XdpOptions { mode: Some(XdpMode::Tx), frame_count: Some(64), ring_size: Some(64), ..Default::default() };
        let mut tx = XdpSocket::open(&veth.0, options).unwrap();
        let all = tx.info().tx_frames;
        let every_frame_is_free = |tx: &mut XdpSocket, what: &str| {
            let mut runs = Vec::new();
            while let Some(run) = tx.allocate_run(all, 60).unwrap() {
                runs.push(run);
            }
            assert_eq!(runs.iter().map(|r| r.1).sum::<u32>(), all, "{what}: every frame went back");
            for (first, n) in runs {
                tx.commit_run(first, n, 0, &[0]).unwrap();
            }
        };
        // What, how many to send, their lengths, the error and the option it names.
        type Refusal<'a> = (&'a str, u32, &'a [u32], Errno, Option<&'static str>);
        let refusals: [Refusal; 6] = [
            ("slot 1 longer than lent", 3, &[60, 61, 60], Errno::EINVAL, Some("length")),
            ("slot 2 shorter than a header", 3, &[60, 60, 13], Errno::EINVAL, None),
            ("slot 0 of 0 bytes", 1, &[0], Errno::EINVAL, None),
            ("more than lent", 5, &[60], Errno::EINVAL, Some("count")),
            ("too few lengths", 3, &[60, 60], Errno::EINVAL, Some("lengths")),
            ("no length", 1, &[], Errno::EINVAL, Some("lengths")),
        ];
        for (what, send, lengths, errno, option) in refusals {
            let (first, n) = tx.allocate_run(4, 60).unwrap().unwrap();
            assert_eq!(n, 4);
            let e = tx.commit_run(first, n, send, lengths).unwrap_err();
            assert_eq!(e.errno, errno, "{what}: {e:?}");
            if let Some(option) = option {
                assert_eq!(e.subject, Subject::Option(option), "{what}: {e:?}");
            }
            assert_eq!(tx.pending(), 0, "{what}: nothing queued");
            assert_eq!(tx.flush().unwrap(), 0, "{what}: nothing to publish");
            every_frame_is_free(&mut tx, what);
        }
        // A run given back is no longer lent: committing it again is refused and changes nothing.
        let (first, n) = tx.allocate_run(4, 60).unwrap().unwrap();
        tx.commit_run(first, n, 0, &[0]).unwrap();
        assert_eq!(tx.commit_run(first, n, 1, &[60]).unwrap_err().errno, Errno::EINVAL);
        // A good run: the first two go, the other two come back.
        let (first, n) = tx.allocate_run(4, 64).unwrap().unwrap();
        for i in 0..n {
            let f = frame(i as u8, 64);
            // SAFETY: the lent frame is ours until committed and holds 64 bytes.
            unsafe { std::ptr::copy_nonoverlapping(f.as_ptr(), tx.frame_ptr(first + i), f.len()) };
        }
        tx.commit_run(first, n, 2, &[64, 60]).unwrap();
        assert_eq!(tx.flush().unwrap(), 2);
        assert!(tx.drain(Some(Duration::from_secs(5))).unwrap());
        assert_eq!(tx.stats().unwrap().sent, 2);
        every_frame_is_free(&mut tx, "after a good run");
    }

    #[test]
    fn send_frames_with_checks_every_frame_first_and_queues_up_to_the_room() {
        if !is_root() {
            return;
        }
        let veth = Veth::new("s");
        let mut rx = XdpSocket::open(&veth.1, XdpOptions { mode: Some(XdpMode::Rx), ..Default::default() }).unwrap();
        let options =
            XdpOptions { mode: Some(XdpMode::Tx), frame_count: Some(64), ring_size: Some(64), ..Default::default() };
        let mut tx = XdpSocket::open(&veth.0, options).unwrap();
        let frames: Vec<Vec<u8>> = (0..100u8).map(|i| frame(i, 60 + i as usize)).collect();
        // A bad frame beyond the room (index 90) still refuses the whole list.
        for (bad, errno) in [(90usize, Errno::EINVAL), (0, Errno::EMSGSIZE), (63, Errno::EINVAL)] {
            let mut list: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
            let long = vec![0u8; 4096];
            list[bad] = if errno == Errno::EMSGSIZE { &long } else { &frames[0][..13] };
            let e = tx.send_frames_with(list.len() as u32, |i| Ok(list[i as usize])).unwrap_err();
            assert_eq!(e.errno, errno);
            assert!(e.message.starts_with(&format!("frames[{bad}]: ")), "{}", e.message);
            assert_eq!((tx.pending(), tx.flush().unwrap()), (0, 0), "frames[{bad}] refused: nothing queued");
        }
        // The caller's own error (as the binding reports a frame of the wrong type) likewise.
        let caller = Error::new(Errno::EINVAL, Subject::Option("frames"), "not a frame");
        let e = tx.send_frames_with(3, |i| if i < 2 { Ok(&frames[0][..]) } else { Err(caller.clone()) }).unwrap_err();
        assert_eq!(e, caller);
        assert_eq!(tx.pending(), 0);
        // Every TX frame is free again: the list queues up to the room, in order, byte-exact.
        let room = tx.info().tx_frames;
        assert_eq!(tx.send_frames_with(100, |i| Ok(&frames[i as usize][..])).unwrap(), room);
        assert_eq!(tx.send_frames_with(100, |i| Ok(&frames[i as usize][..])).unwrap(), 0, "no room left");
        assert_eq!(tx.flush().unwrap(), room);
        assert!(tx.drain(Some(Duration::from_secs(5))).unwrap());
        assert_eq!(receive(&mut rx, room as usize), frames[..room as usize]);
    }
}
