//! The per-packet paths allocate nothing: taking a batch, walking its packets and handing it
//! back, and on the transmit side allocating, filling, committing and flushing frames. Measured
//! with a counting global allocator (its own test binary, so no other test is affected) over
//! real traffic on `lo`. Needs root; CI runs as root, so there it must not skip.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use netring_engine::{Capture, CaptureOptions, Injector, InjectorOptions, Profile, XdpMode, XdpOptions, XdpSocket};

struct Counting;

thread_local! {
    // Per thread: the engine's reactor thread and the test harness do their own allocating.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        assert!(std::env::var("CI").is_err(), "CI runs as root: this test must not skip there");
        eprintln!("skipped: needs CAP_NET_RAW");
    }
    root
}

#[test]
fn receiving_allocates_nothing_per_packet() {
    if !root() {
        return;
    }
    let options = CaptureOptions { profile: Some(Profile::LowMemory), block_timeout_ms: Some(1), ..Default::default() };
    let mut cap = Capture::open("lo", options).unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = sock.local_addr().unwrap();

    let (mut packets, mut allocated, mut checksum) = (0u64, 0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(10);
    while packets < 2000 && Instant::now() < deadline {
        for _ in 0..100 {
            sock.send_to(b"netring hot path", target).unwrap();
        }
        let before = allocations();
        if cap.wait_ready(Some(Duration::from_millis(100))).unwrap() {
            if let Some(mut batch) = cap.next_batch().unwrap() {
                while let Some(p) = batch.next_packet() {
                    let p = p.unwrap();
                    checksum += u64::from(batch.bytes()[p.data_offset as usize]) + u64::from(p.captured_len);
                    packets += 1;
                }
            }
            cap.release();
        }
        allocated += allocations() - before;
    }
    assert!(packets >= 2000, "only {packets} packets arrived (checksum {checksum})");
    assert_eq!(allocated, 0, "allocations while receiving {packets} packets");
}

#[test]
fn transmitting_allocates_nothing_per_frame() {
    if !root() {
        return;
    }
    let mut tx = Injector::open("lo", InjectorOptions { frame_count: Some(256), ..Default::default() }).unwrap();
    let mut frame = [0u8; 64];
    frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes()); // IEEE local experimental ethertype

    let (mut sent, mut allocated) = (0u32, 0u64);
    let before = allocations();
    while sent < 20_000 {
        // Through zero-copy slots, copied in by send(), and copied in as a list.
        match tx.allocate(frame.len()).unwrap() {
            Some(index) => {
                // SAFETY: the slot is ours until committed and holds at least frame.len() bytes.
                unsafe { std::ptr::copy_nonoverlapping(frame.as_ptr(), tx.slot_ptr(index), frame.len()) };
                tx.commit(index, frame.len()).unwrap();
            }
            None => {
                tx.flush().unwrap();
                continue;
            }
        }
        if tx.send(&frame).unwrap().is_none() {
            tx.flush().unwrap();
        }
        sent += 2;
        // And copied in as a list (send_frames, as sendFrames() from JavaScript).
        let listed = tx.send_frames(&[&frame[..]; 4]).unwrap();
        if listed < 4 {
            tx.flush().unwrap();
        }
        sent += listed;
        if sent % 128 < 6 {
            tx.flush().unwrap();
        }
    }
    tx.flush().unwrap();
    allocated += allocations() - before;
    assert!(tx.drain(Some(Duration::from_secs(5))).unwrap(), "the ring did not drain");
    assert!(tx.stats().sent >= 19_000, "{:?}", tx.stats());
    assert_eq!(allocated, 0, "allocations while sending {sent} frames");
}

/// A veth pair with one queue on each end, IPv6 off; deleted on drop.
struct Veth(String, String);

impl Veth {
    fn new() -> Veth {
        let (a, b) = (format!("nh{}a", std::process::id()), format!("nh{}b", std::process::id()));
        let ip = |args: &[&str]| assert!(std::process::Command::new("ip").args(args).status().unwrap().success());
        ip(&[
            "link",
            "add",
            &a,
            "numtxqueues",
            "1",
            "numrxqueues",
            "1",
            "type",
            "veth",
            "peer",
            "name",
            &b,
            "numtxqueues",
            "1",
            "numrxqueues",
            "1",
        ]);
        for d in [&a, &b] {
            let _ = std::process::Command::new("sysctl")
                .args(["-qw", &format!("net.ipv6.conf.{d}.disable_ipv6=1")])
                .status();
            ip(&["link", "set", d, "up"]);
        }
        Veth(a, b)
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

#[test]
fn af_xdp_allocates_nothing_per_packet() {
    if !root() {
        return;
    }
    let veth = Veth::new();
    let mut rx = XdpSocket::open(&veth.1, XdpOptions { mode: Some(XdpMode::Rx), ..Default::default() }).unwrap();
    let mut tx = XdpSocket::open(&veth.0, XdpOptions { mode: Some(XdpMode::Tx), ..Default::default() }).unwrap();
    let mut frame = [0xffu8; 64];
    frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    let (mut sent, mut received, mut allocated, mut rounds) = (0u32, 0u64, 0u64, 0u32);
    let deadline = Instant::now() + Duration::from_secs(20);
    while received < 20_000 && Instant::now() < deadline {
        let before = allocations();
        // Through zero-copy runs (two of four slots sent, the rest given back), copied in by
        // send(), and copied in as a list (send_frames_with, as sendFrames() from JavaScript).
        let mut full = true;
        if let Some((first, n)) = tx.allocate_run(4, frame.len()).unwrap() {
            for i in 0..n {
                // SAFETY: the lent frames are ours until committed and hold at least 64 bytes.
                unsafe { std::ptr::copy_nonoverlapping(frame.as_ptr(), tx.frame_ptr(first + i), frame.len()) };
            }
            let send = n.min(2);
            tx.commit_run(first, n, send, &[frame.len() as u32]).unwrap();
            sent += send;
            full = false;
        }
        if tx.send(&frame).unwrap() {
            sent += 1;
            full = false;
        }
        let listed = tx.send_frames_with(8, |_| Ok(&frame[..])).unwrap();
        sent += listed;
        full &= listed == 0;
        rounds += 1;
        if full || rounds.is_multiple_of(6) {
            tx.flush().unwrap();
            while let Some(batch) = rx.next_batch().unwrap() {
                received += batch.packets.len() as u64;
            }
        }
        allocated += allocations() - before;
    }
    assert!(received >= 20_000, "only {received} of {sent} frames arrived");
    assert_eq!(allocated, 0, "allocations while sending {sent} and receiving {received} frames over AF_XDP");
}
