//! The invariants the kernel's own selftest checks on real TPACKET_V3 rings
//! (tools/testing/selftests/net/psock_tpacket.c, `__v3_walk_block`), here on rings fed by real
//! traffic on `lo`: block sequence numbers are continuous, `blk_len` equals the offset of the
//! first packet plus every packet padded to V3_ALIGNMENT, and a ring with a private area per
//! block (`tp_sizeof_priv`, first packet not at offset 48) is walked correctly.
//!
//! Foreign traffic on `lo` is welcome (more packets to check); our own datagrams carry a marker
//! so each test can also count what it sent.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::block::{read_block_header, BlockInfo, Walker};
use super::capture::Capture;
use super::config::CaptureOptions;
use super::ring::{Mapping, RingGeometry, RxRing};
use super::socket::{Interface, PacketSocket};
use crate::ffi;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(root || std::env::var_os("CI").is_none(), "CI runs these tests as root");
    root
}

fn align8(x: usize) -> usize {
    (x + ffi::V3_ALIGNMENT - 1) & !(ffi::V3_ALIGNMENT - 1)
}

/// Checks one block the way psock_tpacket does; returns how many of its packets carry `marker`.
fn check_block(block: &[u8], info: &BlockInfo, expected_first: usize, marker: &[u8]) -> usize {
    let mut walker = Walker::new(info);
    let mut padded = info.first_offset;
    let mut ours = 0;
    let mut walked = 0;
    if info.num_packets > 0 {
        assert_eq!(info.first_offset, expected_first, "first packet after the descriptor and the private area");
    }
    while let Some(p) = walker.next(block) {
        let p = p.unwrap_or_else(|c| panic!("a real block is corrupt: {c:?}"));
        walked += 1;
        let hdr: ffi::tpacket3_hdr =
            // SAFETY: the walker checked that the header lies inside the used part of the block.
            unsafe { std::ptr::read_unaligned(block.as_ptr().add(p.header_offset as usize).cast()) };
        padded += if hdr.tp_next_offset != 0 {
            hdr.tp_next_offset as usize
        } else {
            align8(hdr.tp_mac as usize + hdr.tp_snaplen as usize)
        };
        let frame = &block[p.data_offset as usize..p.data_offset as usize + p.captured_len as usize];
        if frame.windows(marker.len()).any(|w| w == marker) && p.pkttype == ffi::PACKET_HOST {
            ours += 1;
        }
    }
    assert_eq!(walked, info.num_packets, "every packet the descriptor counts is walked");
    if info.num_packets > 0 {
        assert_eq!(info.used_len, padded, "blk_len = first packet offset + the padded packets");
    }
    ours
}

/// Sends `count` datagrams of varied sizes, each carrying `marker`, to a socket of our own,
/// never more than `IN_FLIGHT` ahead of what the reader has `seen`. Blocks retire after 1 ms
/// however little they hold, so a reader kept off the CPU under load would otherwise find the
/// ring full of nearly empty blocks and the kernel dropping ours.
fn send_marked(count: usize, marker: &'static [u8], seen: Arc<AtomicUsize>) -> std::thread::JoinHandle<()> {
    const IN_FLIGHT: usize = 16; // two copies each on lo: 32 packets, fewer than the 64 blocks
    std::thread::spawn(move || {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let target = sock.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        for i in 0..count {
            while i >= seen.load(Ordering::Acquire) + IN_FLIGHT && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(200));
            }
            let mut payload = marker.to_vec();
            payload.resize(marker.len() + (i * 37) % 1400, i as u8);
            sock.send_to(&payload, target).unwrap();
        }
    })
}

#[test]
fn capture_blocks_are_continuous_and_their_lengths_add_up() {
    if !is_root() {
        eprintln!("skipped: needs CAP_NET_RAW");
        return;
    }
    let marker: &'static [u8] = b"netring-ring-invariants-capture";
    let mut cap = Capture::open(
        "lo",
        CaptureOptions {
            // Small blocks (many of them retire), enough of them that nothing is dropped.
            block_size: Some(1 << 16),
            block_count: Some(64),
            block_timeout_ms: Some(1),
            reinsert_vlan: Some(false),
            ..Default::default()
        },
    )
    .unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let sender = send_marked(3000, marker, seen.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut ours, mut blocks, mut last_seq) = (0, 0, None::<u64>);
    // Every datagram is seen twice on lo (outgoing and incoming); we count the incoming copy.
    while ours < 3000 && Instant::now() < deadline {
        let Some(batch) = cap.next_batch_blocking(Some(Duration::from_millis(100))).unwrap() else { continue };
        let info = *batch.info();
        if let Some(prev) = last_seq {
            assert_eq!(info.seq_num, prev + 1, "block sequence numbers are continuous");
        }
        last_seq = Some(info.seq_num);
        ours += check_block(batch.bytes(), &info, ffi::BLOCK_DESC_LEN, marker);
        seen.store(ours, Ordering::Release);
        blocks += 1;
    }
    sender.join().unwrap();
    assert_eq!(ours, 3000, "every datagram was seen, over {blocks} blocks");
    assert!(blocks > 64, "the ring went round (64 blocks): {blocks} blocks");
}

#[test]
fn a_ring_with_a_private_area_per_block_is_walked_from_the_right_offset() {
    if !is_root() {
        eprintln!("skipped: needs CAP_NET_RAW");
        return;
    }
    // 13 bytes of private area, as psock_tpacket uses: the first packet moves from 48 to 64.
    const PRIV: u32 = 13;
    let marker: &'static [u8] = b"netring-ring-invariants-priv";
    let iface = Interface::resolve("lo").unwrap();
    let socket = PacketSocket::open(&iface).unwrap();
    socket.set_version_v3().unwrap();
    let geometry = RingGeometry { block_size: 1 << 16, block_count: 64, frame_size: 2048 };
    let req = ffi::tpacket_req3 { tp_sizeof_priv: PRIV, ..geometry.to_req3(1, 0) };
    socket.set_ring(ffi::PACKET_RX_RING, &req).unwrap();
    let ring = RxRing::new(
        Mapping::map(std::os::fd::AsFd::as_fd(&socket), geometry.total_bytes(), &iface.subject()).unwrap(),
        geometry,
    );
    socket.bind(iface.index, ffi::ETH_P_ALL).unwrap();

    let seen = Arc::new(AtomicUsize::new(0));
    let sender = send_marked(1000, marker, seen.clone());
    let expected_first = align8(ffi::BLOCK_DESC_LEN) + align8(PRIV as usize);
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut ours, mut index, mut last_seq) = (0, 0u32, None::<u64>);
    while ours < 1000 && Instant::now() < deadline {
        if !ring.is_user(index) {
            crate::syscall::poll(std::os::fd::AsFd::as_fd(&socket), libc::POLLIN, Some(Duration::from_millis(100)))
                .unwrap();
            continue;
        }
        // SAFETY: the kernel handed the block to us (TP_STATUS_USER); released below.
        let block = unsafe { ring.block_mut(index) };
        let info = read_block_header(block).unwrap();
        if let Some(prev) = last_seq {
            assert_eq!(info.seq_num, prev + 1, "block sequence numbers are continuous");
        }
        last_seq = Some(info.seq_num);
        ours += check_block(block, &info, expected_first, marker);
        seen.store(ours, Ordering::Release);
        ring.release(index);
        index = (index + 1) % geometry.block_count;
    }
    sender.join().unwrap();
    assert_eq!(ours, 1000);
}
