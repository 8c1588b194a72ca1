//! The native side of `npm run bench`: the engine's own loops (the baselines JavaScript is
//! measured against) and a raw `sendmmsg` sender. Every command prints one JSON line.
//!
//!   bench drain <iface> <count> [retire-ms]   fill the ring while waiting for a line on stdin,
//!                                         then time consuming <count> packets (or all that
//!                                         arrived, if fewer)
//!   bench live <iface> <seconds>          count packets for <seconds>
//!   bench sendmmsg <iface> <count> <size> <dst-mac> [seconds] [--rate=<pps>] [--batch=<n>]
//!                                         --rate paces the sender: batches of <n> (default 64)
//!                                         on a fixed schedule, sleeping until each is due
//!   bench tx <iface> <count> <size> <dst-mac>   the engine's Injector
//!   bench xdp-live <iface> <seconds>      count packets through an AF_XDP socket (queue 0)
//!   bench xdp-drain <iface> <count>       as drain, through an AF_XDP socket whose RX ring
//!                                         holds <count> frames (at most 65536)
//!   bench xdp-tx <iface> <count> <size> <dst-mac>   send through an AF_XDP socket
//!   bench bridge <a> <b> <seconds>        the engine's own bridge loop: forward everything
//!                                         between a and b with its offload metadata
//!
//! Frames sent carry ethertype 0x88b5 (local experimental) and a sequence number at byte 14.

use std::io::BufRead;
use std::time::{Duration, Instant};

use netring_engine::{Capture, CaptureOptions, Injector, InjectorOptions, Profile, XdpMode, XdpOptions, XdpSocket};

fn main() {
    let (flags, args): (Vec<String>, Vec<String>) = std::env::args().skip(1).partition(|a| a.starts_with("--"));
    let flag = |name: &str| {
        flags
            .iter()
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            .map(|v| v.parse::<f64>().unwrap_or_else(|_| usage()))
    };
    let arg = |i: usize| args.get(i).unwrap_or_else(|| usage()).as_str();
    let num = |i: usize| arg(i).parse::<u64>().unwrap_or_else(|_| usage());
    match arg(0) {
        "drain" => drain(arg(1), num(2), args.get(3).map_or(1000, |s| s.parse().unwrap_or_else(|_| usage()))),
        "live" => live(arg(1), num(2)),
        "sendmmsg" => {
            let batch = flag("--batch").map_or(64, |n| n as usize);
            let pace = flag("--rate").map(|pps| {
                if pps > 0.0 && (1..=1024).contains(&batch) {
                    Pace { pps, batch }
                } else {
                    usage()
                }
            });
            sendmmsg(arg(1), num(2), num(3) as usize, &mac(arg(4)), args.get(5).map(|s| s.parse().unwrap()), pace)
        }
        "tx" => tx(arg(1), num(2), num(3) as usize, &mac(arg(4))),
        "xdp-live" => xdp_live(arg(1), num(2)),
        "xdp-drain" => xdp_drain(arg(1), num(2) as u32),
        "xdp-tx" => xdp_tx(arg(1), num(2), num(3) as usize, &mac(arg(4))),
        "bridge" => bridge(arg(1), arg(2), num(3)),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("usage: bench drain|live|sendmmsg|tx ... (see the source)");
    std::process::exit(2)
}

fn mac(s: &str) -> [u8; 6] {
    let mut m = [0u8; 6];
    for (i, part) in s.split(':').enumerate().take(6) {
        m[i] = u8::from_str_radix(part, 16).unwrap_or_else(|_| usage());
    }
    m
}

fn frame(size: usize, dst: &[u8; 6], seq: u32) -> Vec<u8> {
    let mut f = vec![0u8; size.max(60)];
    f[..6].copy_from_slice(dst);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0xbe, 0x01]);
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    f[14..18].copy_from_slice(&seq.to_be_bytes());
    f
}

/// A ring large enough for a million small packets, and blocks retired only after the sender is
/// done, so the ring fills completely before the timed part.
fn drain_options(retire_ms: u32) -> CaptureOptions {
    CaptureOptions { profile: Some(Profile::HighThroughput), block_timeout_ms: Some(retire_ms), ..Default::default() }
}

fn drain(iface: &str, count: u64, retire_ms: u32) {
    let mut cap = Capture::open(iface, drain_options(retire_ms)).expect("open capture");
    println!("ready");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).expect("stdin");
    let (mut packets, mut sum) = (0u64, 0u64);
    let start = Instant::now();
    let mut done = start;
    // Until `count` packets, or the ring stays empty (what the sender lost never arrives).
    while packets < count {
        let Some(mut batch) = cap.next_batch().expect("read") else {
            if done.elapsed() > Duration::from_millis(300) {
                break;
            }
            continue;
        };
        while let Some(desc) = batch.next_packet() {
            let desc = desc.expect("packet");
            // Read a byte of every packet and its length, as every JS path does.
            sum += batch.bytes()[desc.data_offset as usize] as u64 + desc.captured_len as u64;
            packets += 1;
        }
        done = Instant::now();
    }
    let ns = (done - start).as_nanos();
    let stats = cap.stats().expect("stats");
    println!(r#"{{"packets":{packets},"ns":{ns},"drops":{},"checksum":{sum}}}"#, stats.drops);
}

fn cpu_ns() -> u128 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let t = |tv: libc::timeval| tv.tv_sec as u128 * 1_000_000_000 + tv.tv_usec as u128 * 1000;
    t(usage.ru_utime) + t(usage.ru_stime)
}

fn live(iface: &str, seconds: u64) {
    let options = CaptureOptions { profile: Some(Profile::HighThroughput), ..Default::default() };
    let mut cap = Capture::open(iface, options).expect("open capture");
    println!("ready");
    let (cpu0, start) = (cpu_ns(), Instant::now());
    let mut packets = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        if let Some(mut batch) = cap.next_batch_blocking(Some(Duration::from_millis(100))).expect("read") {
            while let Some(desc) = batch.next_packet() {
                desc.expect("packet");
                packets += 1;
            }
        }
    }
    let stats = cap.stats().expect("stats");
    println!(
        r#"{{"packets":{packets},"ns":{},"drops":{},"cpu_ns":{}}}"#,
        start.elapsed().as_nanos(),
        stats.drops,
        cpu_ns() - cpu0
    );
}

fn raw_socket(iface: &str) -> (i32, libc::sockaddr_ll) {
    // SAFETY: plain socket calls; errors abort the bench.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let name = std::ffi::CString::new(iface).unwrap();
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
        assert!(sll.sll_ifindex > 0, "no interface {iface}");
        (fd, sll)
    }
}

/// A fixed sending rate: frame `k` is due `k / pps` seconds after the start.
struct Pace {
    pps: f64,
    batch: usize,
}

fn monotonic_ns() -> u64 {
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: clock_gettime fills the struct.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sleeps until `due` (CLOCK_MONOTONIC ns), not spinning: the paced sender shares the machine.
fn sleep_until(due: u64) {
    let ts = libc::timespec { tv_sec: (due / 1_000_000_000) as i64, tv_nsec: (due % 1_000_000_000) as i64 };
    // SAFETY: an absolute sleep on a valid timespec; EINTR just wakes us early, and the caller
    // sends a batch only once it is due by its own clock reading.
    unsafe { libc::clock_nanosleep(libc::CLOCK_MONOTONIC, libc::TIMER_ABSTIME, &ts, std::ptr::null_mut()) };
}

/// Without `pace`, sends as fast as the socket takes frames, in batches of 256. With it, sends
/// batches of `pace.batch` on the schedule of `pace.pps`: a batch waits until its first frame is
/// due and a late sender catches up batch by batch, so the average rate is the one asked for while
/// the sender can reach it (`late_max_ns` says how far behind it fell). Frames the veth refuses
/// (ENOBUFS: the receiving end's queue is full) are counted in `refused` and sent again.
/// `cpu_ns` is the sender's own CPU time (the veth's transmit work runs in it).
fn sendmmsg(iface: &str, count: u64, size: usize, dst: &[u8; 6], seconds: Option<f64>, pace: Option<Pace>) {
    let batch = pace.as_ref().map_or(256, |p| p.batch);
    let (fd, sll) = raw_socket(iface);
    if pace.is_some() {
        // The default 50 µs timer slack is as long as a batch period at 1 Mpps.
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    }
    let mut frames: Vec<Vec<u8>> = (0..batch).map(|i| frame(size, dst, i as u32)).collect();
    let (cpu0, start) = (cpu_ns(), Instant::now());
    let start_ns = monotonic_ns();
    let deadline = seconds.map(|s| start + Duration::from_secs_f64(s));
    let (mut sent, mut refused, mut late_max_ns) = (0u64, 0u64, 0u64);
    while sent < count && deadline.is_none_or(|d| Instant::now() < d) {
        if let Some(p) = &pace {
            let due = start_ns + (sent as f64 * 1e9 / p.pps) as u64;
            let now = monotonic_ns();
            if now < due {
                sleep_until(due);
                continue;
            }
            late_max_ns = late_max_ns.max(now - due);
        }
        let n = batch.min((count - sent) as usize);
        for (i, f) in frames.iter_mut().take(n).enumerate() {
            f[14..18].copy_from_slice(&((sent as u32).wrapping_add(i as u32)).to_be_bytes());
        }
        let mut iov: Vec<libc::iovec> = frames
            .iter_mut()
            .take(n)
            .map(|f| libc::iovec { iov_base: f.as_mut_ptr().cast(), iov_len: f.len() })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| libc::mmsghdr {
                msg_hdr: libc::msghdr {
                    msg_name: (&sll as *const libc::sockaddr_ll).cast_mut().cast(),
                    msg_namelen: std::mem::size_of::<libc::sockaddr_ll>() as u32,
                    msg_iov: v,
                    msg_iovlen: 1,
                    msg_control: std::ptr::null_mut(),
                    msg_controllen: 0,
                    msg_flags: 0,
                },
                msg_len: 0,
            })
            .collect();
        // SAFETY: msgs points at n valid headers whose buffers live through the call.
        let rc = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), n as u32, 0) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOBUFS) {
                refused += 1;
                // Paced, wait a little for the receiving end rather than spin on its full queue.
                if pace.is_some() {
                    sleep_until(monotonic_ns() + 20_000);
                }
                continue;
            }
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            panic!("sendmmsg: {e}");
        }
        // sendmmsg stops at the first frame that fails and reports the ones before it; that
        // frame was refused (ENOBUFS, reported by the next call if it fails again).
        if (rc as usize) < n {
            refused += 1;
        }
        sent += rc as u64;
    }
    let (ns, cpu) = (start.elapsed().as_nanos(), cpu_ns() - cpu0);
    match pace {
        Some(p) => println!(
            r#"{{"frames":{sent},"ns":{ns},"cpu_ns":{cpu},"refused":{refused},"rate":{},"batch":{batch},"late_max_ns":{late_max_ns}}}"#,
            p.pps
        ),
        None => println!(r#"{{"frames":{sent},"ns":{ns},"cpu_ns":{cpu},"refused":{refused}}}"#),
    }
}

fn tx(iface: &str, count: u64, size: usize, dst: &[u8; 6]) {
    let mut inj =
        Injector::open(iface, InjectorOptions { frame_count: Some(4096), ..Default::default() }).expect("open");
    let mut f = frame(size, dst, 0);
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < count {
        f[14..18].copy_from_slice(&(sent as u32).to_be_bytes());
        if inj.send(&f).expect("send").is_some() {
            sent += 1;
        } else {
            inj.flush().expect("flush");
        }
    }
    inj.drain(Some(Duration::from_secs(10))).expect("drain");
    println!(r#"{{"frames":{sent},"ns":{}}}"#, start.elapsed().as_nanos());
}

fn xdp_live(iface: &str, seconds: u64) {
    let mut xsk = XdpSocket::open(iface, XdpOptions { mode: Some(XdpMode::Rx), ..Default::default() }).expect("open");
    println!("ready");
    let (cpu0, start) = (cpu_ns(), Instant::now());
    let (mut packets, mut checksum) = (0u64, 0u64);
    let umem = xsk.umem().as_ptr();
    let fs = xsk.frame_size() as usize;
    while start.elapsed() < Duration::from_secs(seconds) {
        if !xsk.wait_ready(Some(Duration::from_millis(100))).expect("wait") {
            continue;
        }
        if let Some(batch) = xsk.next_batch().expect("read") {
            for p in batch.packets {
                // SAFETY: a checked descriptor of the held batch, inside the UMEM.
                checksum +=
                    u64::from(unsafe { *umem.add(p.frame as usize * fs + p.offset as usize) }) + u64::from(p.len);
                packets += 1;
            }
        }
    }
    let stats = xsk.stats().expect("stats");
    println!(
        r#"{{"packets":{packets},"ns":{},"drops":{},"fill_empty":{},"batches":{},"waits":{},"cpu_ns":{},"checksum":{checksum}}}"#,
        start.elapsed().as_nanos(),
        stats.kernel.rx_dropped,
        stats.kernel.rx_fill_ring_empty_descs,
        stats.batches,
        stats.waits,
        cpu_ns() - cpu0
    );
}

/// The RX ring and UMEM of a pre-filled AF_XDP drain: `count` frames, every one on the fill ring.
fn xdp_drain_options(count: u32) -> XdpOptions {
    let frames = count.next_power_of_two();
    XdpOptions { mode: Some(XdpMode::Rx), frame_count: Some(frames), ring_size: Some(frames), ..Default::default() }
}

fn xdp_drain(iface: &str, count: u32) {
    let mut xsk = XdpSocket::open(iface, xdp_drain_options(count)).expect("open");
    println!("ready");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).expect("stdin");
    let (mut packets, mut checksum) = (0u64, 0u64);
    let umem = xsk.umem().as_ptr();
    let fs = xsk.frame_size() as usize;
    let start = Instant::now();
    let mut done = start;
    // As `drain`: until `count` packets, or the ring stays empty.
    while packets < u64::from(count) {
        let Some(batch) = xsk.next_batch().expect("read") else {
            if done.elapsed() > Duration::from_millis(300) {
                break;
            }
            continue;
        };
        for p in batch.packets {
            // SAFETY: a checked descriptor of the held batch, inside the UMEM.
            checksum += u64::from(unsafe { *umem.add(p.frame as usize * fs + p.offset as usize) }) + u64::from(p.len);
            packets += 1;
        }
        done = Instant::now();
    }
    let ns = (done - start).as_nanos();
    let stats = xsk.stats().expect("stats");
    println!(
        r#"{{"packets":{packets},"ns":{ns},"drops":{},"fill_empty":{},"checksum":{checksum}}}"#,
        stats.kernel.rx_dropped, stats.kernel.rx_fill_ring_empty_descs
    );
}

fn xdp_tx(iface: &str, count: u64, size: usize, dst: &[u8; 6]) {
    let mut xsk = XdpSocket::open(iface, XdpOptions { mode: Some(XdpMode::Tx), ..Default::default() }).expect("open");
    let mut f = frame(size, dst, 0);
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < count {
        f[14..18].copy_from_slice(&(sent as u32).to_be_bytes());
        if xsk.send(&f).expect("send") {
            sent += 1;
            if sent.is_multiple_of(256) {
                xsk.flush().expect("flush");
            }
        } else {
            xsk.flush().expect("flush");
        }
    }
    xsk.drain(Some(Duration::from_secs(10))).expect("drain");
    println!(r#"{{"frames":{sent},"ns":{}}}"#, start.elapsed().as_nanos());
}

/// What the Bridge does in JavaScript, natively: a capture with offload metadata and the other
/// side's injector with offload, every frame forwarded with its header.
fn bridge(a: &str, b: &str, seconds: u64) {
    use netring_engine::afpacket::offload;
    use netring_engine::ffi::VIRTIO_NET_HDR_LEN;
    let capture = |iface| {
        let options = CaptureOptions {
            profile: Some(Profile::LowLatency),
            ignore_outgoing: Some(true),
            offload_info: Some(true),
            ..Default::default()
        };
        Capture::open(iface, options).expect("open capture")
    };
    let injector =
        |iface| Injector::open(iface, InjectorOptions { offload: Some(true), ..Default::default() }).unwrap();
    let mut sides = [(capture(a), injector(b)), (capture(b), injector(a))];
    let (mut forwarded, mut lost) = (0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        let mut handled = 0;
        for (cap, tx) in sides.iter_mut() {
            let Some(mut batch) = cap.next_batch().expect("next batch") else { continue };
            while let Some(p) = batch.next_packet() {
                let p = p.expect("packet");
                let at = p.data_offset as usize;
                let bytes = batch.bytes();
                let h = offload::read(&bytes[at - VIRTIO_NET_HDR_LEN..at]);
                let frame = &bytes[at..at + p.captured_len as usize];
                let sent = match tx.send_offload(frame, Some(&h), false) {
                    Ok(None) => tx.flush().is_ok() && matches!(tx.send_offload(frame, Some(&h), false), Ok(Some(_))),
                    other => matches!(other, Ok(Some(_))),
                };
                if sent {
                    forwarded += 1;
                } else {
                    lost += 1;
                }
                handled += 1;
            }
            tx.flush().expect("flush");
        }
        if handled == 0 {
            let mut fds = sides.each_ref().map(|(c, _)| libc::pollfd { fd: c.fd(), events: libc::POLLIN, revents: 0 });
            // SAFETY: two valid pollfds.
            unsafe { libc::poll(fds.as_mut_ptr(), 2, 5) };
        }
    }
    println!("{{\"forwarded\":{forwarded},\"lost\":{lost}}}");
}
