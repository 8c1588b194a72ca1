//! A capture: one AF_PACKET socket with a TPACKET_V3 RX ring, read one block (batch) at a time.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::error::{Error, Result, Subject};
use crate::ffi;
use crate::reactor::{Callback, Reactor, Readiness, Token};
use crate::syscall;

use super::block::{read_block_header, reinsert_vlan, BlockInfo, CorruptBlock, PacketDesc, Walker};
use super::config::{CaptureConfig, CaptureOptions, TimestampSource};
use super::fanout::FanoutConfig;
use super::filter::BpfProgram;
use super::offload;
use super::ring::{Mapping, RingGeometry, RxRing};
use super::socket::{Interface, PacketSocket};
use super::user_filter::{self, PacketMeta};

/// Cumulative counters. The kernel's `tp_packets` counts drops too; `packets` here is what
/// reached the ring (`tp_packets - tp_drops`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    pub packets: u64,
    pub drops: u64,
    pub freeze_count: u64,
}

pub struct Capture {
    socket: PacketSocket,
    ring: RxRing,
    iface: Interface,
    config: CaptureConfig,
    requested: RingGeometry,
    next_block: u32,
    held: Option<u32>,
    stats: CaptureStats,
    /// Set once the socket reported an error (interface down or removed); every later read
    /// reports it again after the blocks already captured have been read.
    failed: Option<Error>,
    wait: Option<Token>,
    /// After `set_filter`: the new program and how many more blocks may hold packets that
    /// arrived under the old one (see user_filter.rs).
    user_filter: Option<(BpfProgram, u32)>,
}

impl Capture {
    /// Opens a capture on `interface`.
    ///
    /// The order matters, so that no packet of another interface, and none the filter rejects,
    /// ever lands in the ring: the socket is created with protocol 0 (it receives nothing), then
    /// gets its version, ring and mapping, its filter and memberships, and only then is bound to
    /// the interface with ETH_P_ALL. Fanout comes right after bind, because the kernel only lets
    /// a bound (running) socket join a group (`fanout_add()` in net/packet/af_packet.c).
    pub fn open(interface: &str, options: CaptureOptions) -> Result<Capture> {
        let config = CaptureConfig::resolve(options)?;
        let iface = Interface::resolve(interface)?;
        let socket = PacketSocket::open(&iface)?;
        let subject = iface.subject();

        if config.offload_info {
            // Before the version and the ring: the kernel refuses it afterwards (EBUSY).
            super::offload::set_vnet_header(&socket)?;
        }
        socket.set_version_v3()?;
        if config.reserve() > 0 {
            socket.set_reserve(config.reserve())?;
        }
        if config.timestamp_source == TimestampSource::Hardware {
            // SOFTWARE too: a packet the NIC did not stamp then carries the skb's software stamp
            // where the kernel took one (flagged TP_STATUS_TS_SOFTWARE), else the time it was
            // written to the ring (tpacket_get_timestamp() in net/packet/af_packet.c).
            let flags = ffi::SOF_TIMESTAMPING_RAW_HARDWARE | ffi::SOF_TIMESTAMPING_SOFTWARE;
            socket.set(ffi::SOL_PACKET, ffi::PACKET_TIMESTAMP, &flags, "hardware timestamps (PACKET_TIMESTAMP)")?;
        }
        if config.ignore_outgoing {
            socket.set(ffi::SOL_PACKET, ffi::PACKET_IGNORE_OUTGOING, &1i32, "PACKET_IGNORE_OUTGOING")?;
        }
        if let Some(us) = config.busy_poll_us {
            socket.set(libc::SOL_SOCKET, ffi::SO_BUSY_POLL, &(us as i32), "SO_BUSY_POLL")?;
        }

        let requested = config.geometry;
        let geometry = setup_rx_ring(&socket, &config)?;
        let mapping = Mapping::map(socket.as_fd(), geometry.total_bytes(), &subject)?;
        let ring = RxRing::new(mapping, geometry);

        if let Some(filter) = config.effective_filter() {
            socket.attach_filter(&filter)?;
        }
        if config.promiscuous {
            socket.set_promiscuous(iface.index)?;
        }
        socket.bind(iface.index, ffi::ETH_P_ALL)?;
        if let Some(fanout) = &config.fanout {
            socket.set(ffi::SOL_PACKET, ffi::PACKET_FANOUT, &fanout.socket_option_value(), "PACKET_FANOUT").map_err(
                |e| {
                    let e = Error { subject: Subject::Option("fanout"), ..e };
                    if e.errno == Errno::EINVAL {
                        e.with_hint("every member of a fanout group must use the same interface, mode and flags")
                    } else {
                        e
                    }
                },
            )?;
        }
        // With the uniqueId flag the kernel picks the group id (fanout_find_new_id() in
        // net/packet/af_packet.c); read it back so that other sockets can join that group.
        let fanout = match config.fanout {
            Some(f) if f.flags.unique_id => {
                let v: u32 = syscall::getsockopt(socket.as_fd(), ffi::SOL_PACKET, ffi::PACKET_FANOUT).map_err(|e| {
                    Error::sys(
                        e,
                        "getsockopt",
                        Subject::Option("fanout"),
                        "reading the fanout group id (PACKET_FANOUT)",
                    )
                })?;
                Some(FanoutConfig { group: (v & 0xffff) as u16, ..f })
            }
            other => other,
        };

        let config = CaptureConfig { geometry, fanout, ..config };
        Ok(Capture {
            socket,
            ring,
            iface,
            config,
            requested,
            next_block: 0,
            held: None,
            stats: CaptureStats::default(),
            failed: None,
            wait: None,
            user_filter: None,
        })
    }

    pub fn interface(&self) -> &Interface {
        &self.iface
    }

    /// The configuration in effect, with the ring geometry the kernel accepted.
    pub fn config(&self) -> &CaptureConfig {
        &self.config
    }

    /// The geometry that was asked for (it differs from `config().geometry` after an ENOMEM
    /// retry).
    pub fn requested_geometry(&self) -> RingGeometry {
        self.requested
    }

    pub fn mapping(&self) -> &Arc<Mapping> {
        self.ring.mapping()
    }

    pub fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// The next filled block, or `None` when the kernel has none ready. The block handed out
    /// before (if any) goes back to the kernel first: one batch is held at a time.
    pub fn next_batch(&mut self) -> Result<Option<Batch<'_>>> {
        self.release();
        // Every block that could hold packets from before `set_filter` was read.
        if matches!(self.user_filter, Some((_, 0))) {
            self.user_filter = None;
        }
        if !self.ring.is_user(self.next_block) {
            self.check_socket()?;
            return Ok(None);
        }
        let index = self.next_block;
        self.next_block = (index + 1) % self.ring.geometry().block_count;
        self.held = Some(index);
        // Check the header before lending the block out, so a corrupt block can be handed
        // straight back.
        // SAFETY: the kernel handed this block to us (TP_STATUS_USER, read with Acquire).
        let header = read_block_header(unsafe { self.ring.block_mut(index) });
        let info = match header {
            Ok(info) => info,
            Err(corrupt) => {
                self.release();
                return Err(corrupt_error(&self.iface.name, index, corrupt));
            }
        };
        let filter = match &mut self.user_filter {
            Some((program, blocks_left)) => {
                *blocks_left -= 1;
                Some(program.instructions())
            }
            None => None,
        };
        Ok(Some(Batch {
            walker: Walker::new(&info),
            filter,
            info,
            // SAFETY: as above; the block stays ours until `release`, which needs `&mut self`,
            // so not while the batch lives.
            block: unsafe { self.ring.block_mut(index) },
            index,
            reinsert_vlan: self.config.reinsert_vlan,
            offload_info: self.config.offload_info,
            subject: &self.iface.name,
        }))
    }

    /// Replaces the filter of the open socket. The kernel applies it to packets that arrive from
    /// now on; the packets already in the ring (every block up to the one the kernel is
    /// filling) are filtered in user space with the new program as they are read, as libpcap
    /// does, so no packet the new filter rejects is delivered after this returns. The held
    /// block is released first.
    pub fn set_filter(&mut self, program: Option<BpfProgram>) -> Result<()> {
        self.release();
        self.config.filter = program;
        let effective = self.config.effective_filter().unwrap_or_else(|| BpfProgram::accept_all(u32::MAX));
        self.socket.attach_filter(&effective)?;
        self.user_filter = Some((effective, self.ring.geometry().block_count));
        Ok(())
    }

    /// Blocks until a batch is ready or `timeout` passes (`None`: no limit). Returns whether a
    /// batch is ready. Signals do not shorten or lengthen the wait.
    pub fn wait_ready(&mut self, timeout: Option<Duration>) -> Result<bool> {
        self.release();
        // A deadline past what an Instant can hold is no deadline: checked_add, never a panic.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            if self.ring.is_user(self.next_block) {
                return Ok(true);
            }
            self.check_socket()?;
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Ok(false);
            }
            syscall::poll(self.socket.as_fd(), libc::POLLIN, left)
                .map_err(|e| Error::sys(e, "poll", self.iface.subject(), "waiting for packets"))?;
        }
    }

    /// `wait_ready` then `next_batch`.
    pub fn next_batch_blocking(&mut self, timeout: Option<Duration>) -> Result<Option<Batch<'_>>> {
        if self.wait_ready(timeout)? {
            self.next_batch()
        } else {
            Ok(None)
        }
    }

    /// Hands the held block (if any) back to the kernel.
    pub fn release(&mut self) {
        if let Some(index) = self.held.take() {
            self.ring.release(index);
        }
    }

    /// Cumulative counters since the capture was opened.
    pub fn stats(&mut self) -> Result<CaptureStats> {
        let k = self.socket.take_stats()?;
        self.stats.packets += (k.tp_packets as u64).saturating_sub(k.tp_drops as u64);
        self.stats.drops += k.tp_drops as u64;
        self.stats.freeze_count += k.tp_freeze_q_cnt as u64;
        Ok(self.stats)
    }

    /// Asks the reactor thread to call `callback` once when a batch may be ready or the socket
    /// reports an error. One wait at a time: arming again withdraws the previous wait, which is
    /// told `Cancelled`.
    pub fn arm_wait(&mut self, callback: Callback) -> Result<()> {
        if let Some(previous) = self.disarm_wait() {
            previous(Readiness::Cancelled);
        }
        // Give the held block back first: while we hold a block the kernel reports POLLIN.
        self.release();
        let events = (libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP) as u32;
        self.wait = Some(Reactor::global()?.arm(self.fd(), events, callback)?);
        Ok(())
    }

    /// Withdraws the pending wait, if it has not fired, and hands its callback back.
    pub fn disarm_wait(&mut self) -> Option<Callback> {
        let token = self.wait.take()?;
        Reactor::global().ok()?.disarm(token)
    }

    /// Reports an error the socket has pending (once), and keeps reporting it.
    fn check_socket(&mut self) -> Result<()> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let revents = syscall::poll(self.socket.as_fd(), libc::POLLIN, Some(Duration::ZERO))
            .map_err(|e| Error::sys(e, "poll", self.iface.subject(), "checking the socket"))?;
        if revents & (libc::POLLERR | libc::POLLHUP) == 0 {
            return Ok(());
        }
        let errno = syscall::take_socket_error(self.socket.as_fd())
            .map_err(|e| Error::sys(e, "getsockopt", self.iface.subject(), "reading SO_ERROR"))?
            .unwrap_or(Errno::EIO);
        let name = &self.iface.name;
        let err = if !self.iface.still_exists() {
            Error::new(Errno::ENODEV, self.iface.subject(), format!("interface '{name}' was removed while capturing"))
                .with_hint("the capture cannot continue; open a new one once the interface exists again")
        } else if errno == Errno::ENETDOWN {
            Error::new(Errno::ENETDOWN, self.iface.subject(), format!("interface '{name}' went down while capturing"))
        } else {
            Error::sys(errno, "poll", self.iface.subject(), format!("capturing on '{name}'"))
        };
        self.failed = Some(err.clone());
        Err(err)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        // Withdraw the wait before the descriptor closes, and tell the waiter.
        if let Some(callback) = self.disarm_wait() {
            callback(Readiness::Cancelled);
        }
    }
}

/// Asks the kernel for the RX ring, halving the block count while it answers ENOMEM.
fn setup_rx_ring(socket: &PacketSocket, config: &CaptureConfig) -> Result<RingGeometry> {
    let feature = if config.fill_rxhash { ffi::TP_FT_REQ_FILL_RXHASH } else { 0 };
    shrink_until_allocated(config.geometry, |g| {
        socket.set_ring(ffi::PACKET_RX_RING, &g.to_req3(config.block_timeout_ms, feature))
    })
    .map_err(|(e, g)| {
        let what = format!(
            "creating the RX ring ({} blocks of {} bytes, frames of {})",
            g.block_count, g.block_size, g.frame_size
        );
        Error::sys(e, "setsockopt", socket.subject().clone(), what)
    })
}

/// Tries `allocate` with `geometry`, halving the block count on ENOMEM down to one block.
/// Returns the geometry that was allocated, or the error and the geometry last tried.
fn shrink_until_allocated(
    mut geometry: RingGeometry,
    mut allocate: impl FnMut(&RingGeometry) -> std::result::Result<(), Errno>,
) -> std::result::Result<RingGeometry, (Errno, RingGeometry)> {
    loop {
        match allocate(&geometry) {
            Ok(()) => return Ok(geometry),
            Err(Errno::ENOMEM) if geometry.block_count > 1 => geometry.block_count /= 2,
            Err(e) => return Err((e, geometry)),
        }
    }
}

fn corrupt_error(iface: &str, block: u32, c: CorruptBlock) -> Error {
    Error::new(
        Errno::EBADMSG,
        Subject::Interface(iface.to_string()),
        format!(
            "block {block} of the RX ring on '{iface}' is corrupt at byte {}: {}; the block was skipped",
            c.offset, c.reason
        ),
    )
}

/// One block lent by the kernel. Its packets are walked once, in order.
pub struct Batch<'a> {
    block: &'a mut [u8],
    info: BlockInfo,
    walker: Walker,
    /// A program the packets must pass first (after `set_filter`).
    filter: Option<&'a [ffi::sock_filter]>,
    index: u32,
    reinsert_vlan: bool,
    offload_info: bool,
    subject: &'a str,
}

impl Batch<'_> {
    pub fn info(&self) -> &BlockInfo {
        &self.info
    }

    /// Which block of the ring this is.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Start of the whole block.
    pub fn block_ptr(&self) -> *mut u8 {
        self.block.as_ptr() as *mut u8
    }

    /// The part of the block that holds packets (headers, addresses, frames): from the first
    /// packet to the end of the used part. What may be lent to a reader: it leaves out the
    /// block descriptor, whose status word hands the block back to the kernel, and the private
    /// area (`tp_sizeof_priv`) before the first packet.
    pub fn packet_area(&self) -> std::ops::Range<usize> {
        let start = if self.info.num_packets > 0 { self.info.first_offset } else { ffi::BLOCK_DESC_LEN };
        let start = start.min(self.block.len());
        start..self.info.used_len.clamp(start, self.block.len())
    }

    /// The bytes of the block (after the VLAN tags of the packets walked so far were
    /// re-inserted).
    pub fn bytes(&self) -> &[u8] {
        self.block
    }

    /// The next packet of the block, with its VLAN tag back in the frame if configured.
    pub fn next_packet(&mut self) -> Option<Result<PacketDesc>> {
        let mut desc = loop {
            let desc = match self.walker.next(self.block)? {
                Ok(d) => d,
                Err(c) => return Some(Err(corrupt_error(self.subject, self.index, c))),
            };
            // The frame as the kernel's filter saw it: before the VLAN tag goes back in.
            if self.filter.is_none_or(|program| passes(program, self.block, &desc)) {
                break desc;
            }
        };
        if self.reinsert_vlan {
            // Inserting the tag moves the frame over the end of its offload header: keep it.
            let mac = desc.data_offset as usize;
            let saved = (self.offload_info && mac >= ffi::VIRTIO_NET_HDR_LEN)
                .then(|| offload::read(&self.block[mac - ffi::VIRTIO_NET_HDR_LEN..mac]));
            if reinsert_vlan(self.block, &mut desc) {
                if let Some(saved) = saved {
                    offload::follow_vlan_reinsert(self.block, desc.data_offset as usize, &saved);
                }
            }
        }
        Some(Ok(desc))
    }
}

fn passes(program: &[ffi::sock_filter], block: &[u8], desc: &PacketDesc) -> bool {
    let start = desc.data_offset as usize;
    let Some(frame) = block.get(start..start + desc.captured_len as usize) else { return false };
    let meta = PacketMeta {
        protocol: desc.protocol,
        pkttype: desc.pkttype,
        ifindex: desc.ifindex as u32,
        vlan_tci: (desc.status & ffi::TP_STATUS_VLAN_VALID != 0).then_some(desc.vlan_tci),
        vlan_tpid: desc.vlan_tpid,
    };
    user_filter::run(program, frame, desc.original_len, &meta) != 0
}

#[cfg(test)]
mod tests {

    // The kernel cannot be made to fail a ring allocation on demand (the pages are not charged to
    // a memory cgroup, and rings above 4 GiB are EINVAL, not ENOMEM), so the retry policy is
    // tested against an allocator with a fixed budget.
    #[test]
    fn enomem_halves_the_block_count_until_the_ring_fits() {
        let asked = RingGeometry { block_size: 1 << 20, block_count: 64, frame_size: 2048 };
        let mut tried = Vec::new();
        let got = shrink_until_allocated(asked, |g| {
            tried.push(g.block_count);
            if g.block_count > 12 {
                Err(Errno::ENOMEM)
            } else {
                Ok(())
            }
        });
        assert_eq!(got.unwrap().block_count, 8);
        assert_eq!(tried, [64, 32, 16, 8]);
    }

    #[test]
    fn enomem_at_one_block_and_other_errors_are_reported_with_the_geometry() {
        let asked = RingGeometry { block_size: 1 << 20, block_count: 4, frame_size: 2048 };
        let (e, last) = shrink_until_allocated(asked, |_| Err(Errno::ENOMEM)).unwrap_err();
        assert_eq!((e, last.block_count), (Errno::ENOMEM, 1));
        let (e, last) = shrink_until_allocated(asked, |_| Err(Errno::EINVAL)).unwrap_err();
        assert_eq!((e, last.block_count), (Errno::EINVAL, 4));
    }
    use super::*;
    use crate::afpacket::config::Profile;

    /// Tests on real sockets need CAP_NET_RAW. Outside CI they are skipped without it; in CI
    /// (CI set) they must run, so a missing capability fails them.
    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        assert!(root || std::env::var_os("CI").is_none(), "CI runs these tests as root");
        root
    }

    #[test]
    fn unknown_interface_is_enodev_with_hint() {
        let err = Capture::open("nr-nope-0", CaptureOptions::default()).err().unwrap();
        assert_eq!(err.code(), "ENODEV");
        assert_eq!(err.subject, Subject::Interface("nr-nope-0".into()));
        assert_eq!(err.syscall, Some("if_nametoindex"));
        assert!(err.hint.unwrap().contains("ip link"));
    }

    #[test]
    fn bad_geometry_fails_before_any_syscall() {
        let err = Capture::open("lo", CaptureOptions { block_size: Some(5000), ..Default::default() }).err().unwrap();
        assert_eq!(err.code(), "EINVAL");
        assert_eq!(err.subject, Subject::Option("blockSize"));
        assert_eq!(err.syscall, None);
    }

    #[test]
    fn invalid_interface_name_is_einval() {
        let err = Capture::open("a/b", CaptureOptions::default()).err().unwrap();
        assert_eq!(err.code(), "EINVAL");
    }

    #[test]
    fn captures_own_udp_on_loopback() {
        if !is_root() {
            eprintln!("skipped: needs CAP_NET_RAW");
            return;
        }
        let mut cap = Capture::open(
            "lo",
            CaptureOptions { profile: Some(Profile::LowMemory), block_timeout_ms: Some(1), ..Default::default() },
        )
        .unwrap();
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let target = sock.local_addr().unwrap();
        let marker = b"netring-engine-loopback-test";
        for _ in 0..5 {
            sock.send_to(marker, target).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = 0;
        while seen < 5 && Instant::now() < deadline {
            let Some(mut batch) = cap.next_batch_blocking(Some(Duration::from_millis(200))).unwrap() else {
                continue;
            };
            while let Some(p) = batch.next_packet() {
                let p = p.unwrap();
                let start = p.data_offset as usize;
                let frame = &batch.bytes()[start..start + p.captured_len as usize];
                if frame.windows(marker.len()).any(|w| w == marker) && p.pkttype == ffi::PACKET_HOST {
                    seen += 1;
                }
            }
        }
        assert_eq!(seen, 5);
        let stats = cap.stats().unwrap();
        assert!(stats.packets >= 10, "both directions are counted: {stats:?}");
    }
}
