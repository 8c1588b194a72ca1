//! Offload metadata: the virtio-net header that precedes every frame on a socket with
//! `PACKET_VNET_HDR` (`Documentation/networking/packet_mmap.rst`, `include/linux/virtio_net.h`).
//!
//! On receive the kernel writes it 10 bytes before the frame and says there whether the
//! frame is one GSO super-frame (up to 64 KiB, to be cut into `gso_size` segments) and whether
//! its transport checksum is still to be filled in (`NEEDS_CSUM`, from `csum_start` on, stored
//! at `csum_start + csum_offset`). On transmit the kernel reads the same header and does both.
//! Hosts behind a veth, tap or NIC hand out such frames by default; forwarding a frame without
//! its header sends a half-checksummed or oversized frame the receiver drops.
//!
//! This module checks headers before the kernel sees them (each field's error names it),
//! redoes the checksums of frames whose bytes were rewritten, and sends frames too large for a
//! TX ring slot through a plain socket (`JumboSender`).

use std::os::fd::AsRawFd;

use nix::errno::Errno;

use crate::error::{Error, Result};
use crate::ffi::{self, virtio_net_hdr};

use super::socket::{Interface, PacketSocket};

/// The longest GSO frame: an Ethernet header, an 802.1Q tag, an IPv6 header and the largest
/// payload its length field can say (IPv4 frames are shorter still).
pub const MAX_GSO_FRAME_LEN: usize = ffi::ETH_HLEN + ffi::VLAN_HLEN + 40 + ffi::IP_MAX_LEN;

/// The GSO types by their number in `gso_type` (ECN bit aside); "" where none is defined.
pub const GSO_TYPE_NAMES: [&str; 6] = ["none", "tcpv4", "", "udp", "tcpv6", "udp-l4"];

/// The `gso_type` number of a GSO type name (`GSO_TYPE_NAMES`).
pub fn gso_type(name: &str) -> Result<u8> {
    match GSO_TYPE_NAMES.iter().position(|n| !n.is_empty() && *n == name) {
        Some(i) => Ok(i as u8),
        None => Err(bad("offload.gsoType", format!("must be one of none, tcpv4, tcpv6, udp, udp-l4; got {name:?}"))),
    }
}

/// A 16-bit header field from a caller's number (0 when absent), refused naming `field` if it
/// does not fit.
pub fn field(value: Option<u32>, field: &'static str) -> Result<u16> {
    let v = value.unwrap_or(0);
    u16::try_from(v).map_err(|_| bad(field, format!("must be from 0 to 65535, got {v}")))
}

/// The `flags` byte.
pub fn flags(needs_csum: bool, csum_valid: bool) -> u8 {
    (if needs_csum { ffi::VIRTIO_NET_HDR_F_NEEDS_CSUM } else { 0 })
        | if csum_valid { ffi::VIRTIO_NET_HDR_F_DATA_VALID } else { 0 }
}

/// The header from its 10 bytes (little-endian, as the kernel writes it on this host).
pub fn read(bytes: &[u8]) -> virtio_net_hdr {
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
    virtio_net_hdr {
        flags: bytes[0],
        gso_type: bytes[1],
        hdr_len: u16_at(2),
        gso_size: u16_at(4),
        csum_start: u16_at(6),
        csum_offset: u16_at(8),
    }
}

/// Writes the header's 10 bytes to `out`.
pub fn write(h: &virtio_net_hdr, out: &mut [u8]) {
    out[0] = h.flags;
    out[1] = h.gso_type;
    out[2..4].copy_from_slice(&h.hdr_len.to_le_bytes());
    out[4..6].copy_from_slice(&h.gso_size.to_le_bytes());
    out[6..8].copy_from_slice(&h.csum_start.to_le_bytes());
    out[8..10].copy_from_slice(&h.csum_offset.to_le_bytes());
}

/// Whether the header asks the kernel to segment the frame.
pub fn is_gso(h: &virtio_net_hdr) -> bool {
    h.gso_type & !ffi::VIRTIO_NET_HDR_GSO_ECN != ffi::VIRTIO_NET_HDR_GSO_NONE
}

fn bad(field: &'static str, why: impl std::fmt::Display) -> Error {
    Error::invalid_option(field, why).with_hint(
        "offload metadata must describe the frame it comes with: a packet's `offload` as captured fits its own bytes",
    )
}

/// Checks a header against the frame it is sent with, as the kernel will on transmit
/// (`__packet_snd_vnet_parse()` in net/packet/af_packet.c, `virtio_net_hdr_to_skb()` in
/// include/linux/virtio_net.h), so the kernel never sees a header it refuses: on a TX ring with
/// PACKET_LOSS it would skip such a frame without a word, and a frame it sends unsegmented
/// while larger than the MTU is dropped by the device and retried on every kick, holding up the
/// ring. `max_plain` is the largest frame the interface takes unsegmented (MTU + Ethernet
/// header, + 4 if tagged).
pub fn check(h: &virtio_net_hdr, frame: &[u8], max_plain: usize) -> Result<()> {
    let frame_len = frame.len();
    let known = ffi::VIRTIO_NET_HDR_F_NEEDS_CSUM | ffi::VIRTIO_NET_HDR_F_DATA_VALID;
    if h.flags & !known != 0 {
        return Err(bad("offload.flags", format!("has unknown bits 0x{:02x}", h.flags & !known)));
    }
    let needs_csum = h.flags & ffi::VIRTIO_NET_HDR_F_NEEDS_CSUM != 0;
    let base = h.gso_type & !ffi::VIRTIO_NET_HDR_GSO_ECN;
    // The transport header a GSO type implies: its name, checksum field and the bytes the
    // kernel needs of it.
    let transport = match base {
        ffi::VIRTIO_NET_HDR_GSO_NONE => None,
        ffi::VIRTIO_NET_HDR_GSO_TCPV4 | ffi::VIRTIO_NET_HDR_GSO_TCPV6 => Some(("TCP", 16, ffi::TCP_MIN_HLEN)),
        ffi::VIRTIO_NET_HDR_GSO_UDP | ffi::VIRTIO_NET_HDR_GSO_UDP_L4 => Some(("UDP", 6, ffi::UDP_HLEN)),
        _ => {
            return Err(bad("offload.gsoType", format!("must be none, tcpv4, tcpv6, udp or udp-l4, got type {base}")));
        }
    };
    // The kernel refuses a header longer than the frame whatever the GSO type.
    if h.hdr_len as usize > frame_len {
        return Err(bad("offload.hdrLen", format!("{} is beyond the {frame_len}-byte frame", h.hdr_len)));
    }
    if base == ffi::VIRTIO_NET_HDR_GSO_NONE {
        if h.gso_type != 0 {
            return Err(bad("offload.gsoType", "the ECN bit needs a GSO type"));
        }
        if h.gso_size != 0 {
            return Err(bad("offload.gsoSize", format!("must be 0 without a gsoType, got {}", h.gso_size)));
        }
        if frame_len > max_plain {
            return Err(too_large(
                "offload.gsoType",
                format!(
                    "a frame of {frame_len} bytes without a gsoType is larger than the interface takes ({max_plain})"
                ),
            ));
        }
    }
    let thlen = transport.map_or(0, |(_, _, len)| len);
    if needs_csum {
        let start = h.csum_start as usize;
        if start < ffi::ETH_HLEN || start >= frame_len {
            return Err(bad(
                "offload.csumStart",
                format!(
                    "{start} must be inside the frame, after the Ethernet header (14 to {})",
                    frame_len.saturating_sub(1)
                ),
            ));
        }
        // The kernel segments a GSO frame by its TCP or UDP header, found at csum_start, and
        // refuses a checksum elsewhere than that header's.
        if let Some((proto, at, _)) = transport.filter(|&(_, at, _)| h.csum_offset != at) {
            return Err(bad(
                "offload.csumOffset",
                format!("must be {at} (the {proto} checksum) for this gsoType, got {}", h.csum_offset),
            ));
        }
        if start + h.csum_offset as usize + 2 > frame_len {
            return Err(bad(
                "offload.csumOffset",
                format!("{} puts the checksum past the end of the {frame_len}-byte frame", h.csum_offset),
            ));
        }
        if start + thlen > frame_len {
            return Err(bad(
                "offload.csumStart",
                format!("{start} leaves no room for a {thlen}-byte transport header"),
            ));
        }
    } else if h.csum_start != 0 || h.csum_offset != 0 {
        return Err(bad("offload.csumStart", "csumStart and csumOffset need needsCsum"));
    }
    if base != ffi::VIRTIO_NET_HDR_GSO_NONE {
        check_gso(h, frame, max_plain, thlen)?;
    }
    Ok(())
}

/// The GSO half of `check`: a segment size the kernel takes, a payload where the kernel looks
/// for it, and a frame the kernel really cuts, or one small enough to go whole.
fn check_gso(h: &virtio_net_hdr, frame: &[u8], max_plain: usize, thlen: usize) -> Result<()> {
    let frame_len = frame.len();
    let base = h.gso_type & !ffi::VIRTIO_NET_HDR_GSO_ECN;
    let needs_csum = h.flags & ffi::VIRTIO_NET_HDR_F_NEEDS_CSUM != 0;
    let gso_size = h.gso_size as usize;
    if h.gso_size == 0 {
        return Err(bad("offload.gsoSize", "must be at least 1 with a gsoType (the segment payload size)"));
    }
    if h.gso_size == ffi::GSO_BY_FRAGS {
        return Err(bad("offload.gsoSize", "65535 is reserved by the kernel (GSO_BY_FRAGS): at most 65534"));
    }
    if frame_len > MAX_GSO_FRAME_LEN {
        return Err(too_large(
            "offload.gsoSize",
            format!("a GSO frame of {frame_len} bytes is larger than the largest IP packet ({MAX_GSO_FRAME_LEN})"),
        ));
    }
    // The kernel cuts IP packets only (a frame of another ethertype fails deep inside it, as
    // ENOMEM): IPv4 for tcpv4, IPv6 for tcpv6, either for UDP.
    let (want_v4, want_proto, name) = match base {
        ffi::VIRTIO_NET_HDR_GSO_TCPV4 => (Some(true), ffi::IPPROTO_TCP, "IPv4 TCP"),
        ffi::VIRTIO_NET_HDR_GSO_TCPV6 => (Some(false), ffi::IPPROTO_TCP, "IPv6 TCP"),
        _ => (None, ffi::IPPROTO_UDP, "UDP over IP"),
    };
    let not_it = || bad("offload.gsoType", format!("the frame is not {name}, which this gsoType cuts"));
    let l = layers(frame).filter(|l| want_v4.is_none_or(|v4| v4 == l.v4)).ok_or_else(not_it)?;
    // Where the payload starts: after the transport header at csum_start, or, without
    // needsCsum (a frame GRO merged from a NIC that verified its checksums), after the one the
    // kernel finds in the frame itself; it refuses a frame of another protocol.
    let payload = if needs_csum {
        // The kernel cuts by the header at csum_start and refuses, late and as ENOMEM, a
        // checksum that is not that header's (tcp_gso_segment()). Behind IPv6 extension
        // headers it is further on.
        let start = h.csum_start as usize;
        if (l.proto == want_proto && start != l.l4) || start < l.l4 {
            return Err(bad(
                "offload.csumStart",
                format!("must be at the transport header ({}) for this gsoType, got {start}", l.l4),
            ));
        }
        start + thlen
    } else if base == ffi::VIRTIO_NET_HDR_GSO_UDP_L4 {
        return Err(bad("offload.needsCsum", "udp-l4 needs needsCsum, with csumStart at the UDP header"));
    } else if l.proto == want_proto && l.l4 + thlen <= frame_len {
        l.l4 + thlen
    } else {
        return Err(not_it());
    };
    if base == ffi::VIRTIO_NET_HDR_GSO_UDP_L4 {
        if h.gso_type != base {
            return Err(bad("offload.gsoType", "the ECN bit goes with TCP only"));
        }
        if frame_len - payload > gso_size * ffi::UDP_MAX_SEGMENTS {
            return Err(bad(
                "offload.gsoSize",
                format!("{gso_size} cuts the frame into more than {} segments", ffi::UDP_MAX_SEGMENTS),
            ));
        }
    }
    // UDP fragmentation (udp) counts the UDP header as payload.
    let payload = if base == ffi::VIRTIO_NET_HDR_GSO_UDP { payload - thlen } else { payload };
    if frame_len - payload <= gso_size && frame_len > max_plain {
        return Err(too_large(
            "offload.gsoSize",
            format!(
                "{gso_size} is not less than the frame's {} payload bytes: the kernel sends it uncut, and at {frame_len} bytes it is larger than the interface takes ({max_plain})",
                frame_len - payload
            ),
        ));
    }
    Ok(())
}

fn too_large(field: &'static str, why: String) -> Error {
    Error::new(Errno::EMSGSIZE, crate::error::Subject::Option(field), why).with_hint(
        "give a gsoType and a gsoSize below the payload so the kernel segments it, or send frames up to the MTU",
    )
}

/// Where a frame's transport header is, for the frames whose checksums netring redoes:
/// Ethernet (optionally tagged), then IPv4 or IPv6 (no extension headers), then TCP or UDP.
struct Layers {
    ip: usize,
    v4: bool,
    l4: usize,
    l4_len: usize,
    proto: u8,
    /// A fragment: the transport checksum covers bytes that are not all in this frame.
    fragment: bool,
}

fn layers(f: &[u8]) -> Option<Layers> {
    let mut at = 12;
    let mut ethertype = u16::from_be_bytes([*f.get(at)?, *f.get(at + 1)?]);
    while ethertype == ffi::ETH_P_8021Q || ethertype == ffi::ETH_P_8021AD {
        at += ffi::VLAN_HLEN;
        ethertype = u16::from_be_bytes([*f.get(at)?, *f.get(at + 1)?]);
    }
    let ip = at + 2;
    match ethertype {
        ffi::ETH_P_IP => {
            let ihl = (*f.get(ip)? & 0x0f) as usize * 4;
            let total = u16::from_be_bytes([*f.get(ip + 2)?, *f.get(ip + 3)?]) as usize;
            let frag = u16::from_be_bytes([*f.get(ip + 6)?, *f.get(ip + 7)?]) & 0x3fff;
            if ihl < 20 || total < ihl || ip + total > f.len() {
                return None;
            }
            Some(Layers { ip, v4: true, l4: ip + ihl, l4_len: total - ihl, proto: f[ip + 9], fragment: frag != 0 })
        }
        ffi::ETH_P_IPV6 => {
            let payload = u16::from_be_bytes([*f.get(ip + 4)?, *f.get(ip + 5)?]) as usize;
            if ip + 40 + payload > f.len() {
                return None;
            }
            Some(Layers { ip, v4: false, l4: ip + 40, l4_len: payload, proto: f[ip + 6], fragment: false })
        }
        _ => None,
    }
}

/// One's-complement sum of `bytes` as big-endian 16-bit words, added to `sum`.
fn add(mut sum: u64, bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        sum += u16::from_be_bytes([c[0], c[1]]) as u64;
    }
    if let [last] = chunks.remainder() {
        sum += (*last as u64) << 8;
    }
    sum
}

fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Redoes the checksums of a frame whose bytes were rewritten, so the receiver accepts it: the
/// IPv4 header checksum, and the TCP/UDP checksum. Where the header leaves the transport
/// checksum to the kernel (`NEEDS_CSUM`, always so for GSO frames), only its pseudo-header
/// seed is redone (the addresses or length may have changed) and the kernel completes it;
/// otherwise it is computed here. A checksum position the new bytes no longer match is set
/// from the frame itself. `DATA_VALID` is cleared: nobody checked the new bytes. Frames that
/// are not TCP/UDP over IP keep their bytes as they are.
pub fn redo_checksums(f: &mut [u8], h: &mut virtio_net_hdr) {
    h.flags &= !ffi::VIRTIO_NET_HDR_F_DATA_VALID;
    let Some(l) = layers(f) else { return };
    if l.v4 {
        let ihl = l.l4 - l.ip;
        f[l.ip + 10..l.ip + 12].fill(0);
        let c = !fold(add(0, &f[l.ip..l.ip + ihl]));
        f[l.ip + 10..l.ip + 12].copy_from_slice(&c.to_be_bytes());
    }
    let field = match l.proto {
        ffi::IPPROTO_TCP => 16,
        ffi::IPPROTO_UDP => 6,
        _ => return,
    };
    if l.fragment || l.l4 + field + 2 > f.len() || l.l4 + l.l4_len > f.len() {
        return;
    }
    let at = l.l4 + field;
    let udp_without_checksum = l.proto == ffi::IPPROTO_UDP && l.v4 && f[at] == 0 && f[at + 1] == 0;
    let (src, len) = if l.v4 { (l.ip + 12, 8) } else { (l.ip + 8, 32) };
    let pseudo = add(l.proto as u64 + l.l4_len as u64, &f[src..src + len]);
    let needs_csum = h.flags & ffi::VIRTIO_NET_HDR_F_NEEDS_CSUM != 0;
    if needs_csum || is_gso(h) {
        // The kernel's partial-checksum convention: the field holds the folded pseudo-header
        // sum, and the kernel adds the rest from csum_start on (skb_checksum_help()).
        h.flags |= ffi::VIRTIO_NET_HDR_F_NEEDS_CSUM;
        h.csum_start = l.l4 as u16;
        h.csum_offset = field as u16;
        f[at..at + 2].copy_from_slice(&fold(pseudo).to_be_bytes());
    } else if !udp_without_checksum {
        f[at..at + 2].fill(0);
        let mut c = !fold(add(pseudo, &f[l.l4..l.l4 + l.l4_len]));
        if c == 0 && l.proto == ffi::IPPROTO_UDP {
            c = 0xffff;
        }
        f[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
}

/// After the VLAN tag of a received frame was written back into it (the frame now starts 4
/// bytes earlier), puts the frame's header back right before it, with its offsets counted
/// from the new start. `saved` is the header as read before the tag was inserted.
pub fn follow_vlan_reinsert(block: &mut [u8], new_mac: usize, saved: &virtio_net_hdr) {
    let mut h = *saved;
    // The kernel's offsets count from the untagged frame. Only a GSO frame has a hdr_len (the
    // kernel leaves it 0 otherwise, and 0 must stay "none"). Saturating: the kernel's numbers
    // are not trusted to leave room.
    if h.flags & ffi::VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
        h.csum_start = h.csum_start.saturating_add(ffi::VLAN_HLEN as u16);
    }
    if is_gso(&h) {
        h.hdr_len = h.hdr_len.saturating_add(ffi::VLAN_HLEN as u16);
    }
    write(&h, &mut block[new_mac - ffi::VIRTIO_NET_HDR_LEN..new_mac]);
}

/// Sends frames too large for a TX ring slot (GSO frames of up to 64 KiB) through a second
/// socket on the same interface, one `sendmsg()` each, header and frame gathered from where
/// they are. Measured on this kind of machine: one syscall per 64 KiB frame forwards more than
/// a ring of 64 KiB slots would (the kernel copies the frame once either way), and the TX ring
/// keeps its small slots for everything else.
pub struct JumboSender {
    socket: PacketSocket,
    ifindex: u32,
}

impl JumboSender {
    pub fn open(iface: &Interface) -> Result<JumboSender> {
        let socket = PacketSocket::open(iface)?;
        set_vnet_header(&socket)?;
        // Protocol 0: the socket sends only, it receives nothing.
        socket.bind(iface.index, 0)?;
        Ok(JumboSender { socket, ifindex: iface.index })
    }

    /// Sends one frame with its header. `Ok(false)`: backpressure (ENOBUFS/EAGAIN), try again.
    pub fn send(&self, h: &virtio_net_hdr, frame: &[u8]) -> std::result::Result<bool, Errno> {
        let mut hdr = [0u8; ffi::VIRTIO_NET_HDR_LEN];
        write(h, &mut hdr);
        let iov = [
            libc::iovec { iov_base: hdr.as_ptr() as *mut _, iov_len: hdr.len() },
            libc::iovec { iov_base: frame.as_ptr() as *mut _, iov_len: frame.len() },
        ];
        // SAFETY: zeroed sockaddr_ll is valid; the protocol is the frame's own ethertype.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = self.ifindex as i32;
        sll.sll_protocol = u16::from_ne_bytes([frame[12], frame[13]]);
        // SAFETY: zeroed msghdr is valid; the pointers stay alive for the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut sll as *mut libc::sockaddr_ll).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        msg.msg_iov = iov.as_ptr() as *mut _;
        msg.msg_iovlen = iov.len();
        loop {
            // SAFETY: a valid msghdr over live buffers.
            let rc = unsafe { libc::sendmsg(self.socket.as_raw_fd(), &msg, libc::MSG_DONTWAIT) };
            if rc >= 0 {
                return Ok(true);
            }
            match Errno::last() {
                Errno::EINTR => continue,
                Errno::EAGAIN | Errno::ENOBUFS => return Ok(false),
                e => return Err(e),
            }
        }
    }
}

/// Turns the virtio-net header on; the kernel only accepts it before the ring exists (EBUSY).
pub fn set_vnet_header(socket: &PacketSocket) -> Result<()> {
    socket.set(ffi::SOL_PACKET, ffi::PACKET_VNET_HDR, &1i32, "PACKET_VNET_HDR (offload metadata)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Subject;

    fn field(h: virtio_net_hdr, frame: &[u8]) -> &'static str {
        match check(&h, frame, 1514).unwrap_err().subject {
            Subject::Option(name) => name,
            s => panic!("{s:?}"),
        }
    }

    const CSUM: u8 = ffi::VIRTIO_NET_HDR_F_NEEDS_CSUM;

    /// An IPv4/TCP frame of `len` bytes (a 20-byte TCP header, then zeroes).
    fn tcp4(len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[12..14].copy_from_slice(&ffi::ETH_P_IP.to_be_bytes());
        f[14] = 0x45;
        f[16..18].copy_from_slice(&((len - 14) as u16).to_be_bytes());
        f[23] = ffi::IPPROTO_TCP;
        f[46] = 5 << 4;
        f
    }

    #[test]
    fn header_bytes_round_trip() {
        let h = virtio_net_hdr { flags: 1, gso_type: 1, hdr_len: 66, gso_size: 1448, csum_start: 34, csum_offset: 16 };
        let mut b = [0u8; 10];
        write(&h, &mut b);
        assert_eq!(b, [1, 1, 66, 0, 0xa8, 5, 34, 0, 16, 0]);
        assert_eq!(read(&b), h);
    }

    #[test]
    fn nonsense_is_refused_naming_the_field() {
        let tso =
            virtio_net_hdr { flags: CSUM, gso_type: 1, hdr_len: 66, gso_size: 1448, csum_start: 34, csum_offset: 16 };
        let big = tcp4(30_000);
        assert!(check(&tso, &big, 1514).is_ok());
        assert!(check(&virtio_net_hdr::default(), &tcp4(1514), 1514).is_ok());
        assert_eq!(field(virtio_net_hdr { gso_size: 0, ..tso }, &big), "offload.gsoSize");
        assert_eq!(field(virtio_net_hdr { gso_type: 9, ..tso }, &big), "offload.gsoType");
        assert_eq!(field(virtio_net_hdr { flags: 0, ..tso }, &big), "offload.csumStart");
        let gro = virtio_net_hdr { flags: ffi::VIRTIO_NET_HDR_F_DATA_VALID, csum_start: 0, csum_offset: 0, ..tso };
        assert!(check(&gro, &big, 1514).is_ok(), "a GRO frame whose checksums were verified");
        assert_eq!(field(virtio_net_hdr { hdr_len: 40_000, ..tso }, &big), "offload.hdrLen");
        assert_eq!(field(virtio_net_hdr { csum_start: 30_000, ..tso }, &big), "offload.csumStart");
        assert_eq!(field(virtio_net_hdr { csum_start: 4, ..tso }, &big), "offload.csumStart");
        assert_eq!(field(virtio_net_hdr { csum_offset: 6, ..tso }, &big), "offload.csumOffset");
        let no_gso = virtio_net_hdr { flags: CSUM, csum_start: 34, csum_offset: 16, ..Default::default() };
        assert_eq!(field(virtio_net_hdr { csum_offset: 1466, ..no_gso }, &tcp4(1500)), "offload.csumOffset");
        assert_eq!(field(virtio_net_hdr { flags: 0x40, ..tso }, &big), "offload.flags");
        assert_eq!(field(virtio_net_hdr { gso_size: 100, ..Default::default() }, &tcp4(100)), "offload.gsoSize");
        assert_eq!(field(virtio_net_hdr { csum_start: 34, ..Default::default() }, &tcp4(100)), "offload.csumStart");
        let e = check(&virtio_net_hdr::default(), &tcp4(3000), 1514).unwrap_err();
        assert_eq!(e.errno, Errno::EMSGSIZE);
        assert_eq!(check(&tso, &tcp4(MAX_GSO_FRAME_LEN + 1), 1514).unwrap_err().errno, Errno::EMSGSIZE);
    }

    /// What the kernel refuses on transmit (a TX ring with PACKET_LOSS would skip it silently),
    /// or sends uncut although it is larger than the MTU (the device drops it on every kick).
    #[test]
    fn what_the_kernel_refuses_is_refused_first() {
        let tso =
            virtio_net_hdr { flags: CSUM, gso_type: 1, hdr_len: 54, gso_size: 1000, csum_start: 34, csum_offset: 16 };
        let f = tcp4(3000);
        // A header length beyond the frame, with or without a GSO type.
        assert_eq!(field(virtio_net_hdr { hdr_len: 101, ..Default::default() }, &tcp4(100)), "offload.hdrLen");
        assert_eq!(field(virtio_net_hdr { gso_size: ffi::GSO_BY_FRAGS, ..tso }, &f), "offload.gsoSize");
        // The kernel needs the whole TCP header after csum_start, not only the checksum.
        let tail = virtio_net_hdr { flags: CSUM, csum_start: 81, csum_offset: 16, ..Default::default() };
        assert!(check(&tail, &tcp4(100), 1514).is_ok(), "no GSO: only the checksum must fit");
        let tail_tso = virtio_net_hdr { hdr_len: 0, gso_size: 10, ..tail };
        let tail_tso = virtio_net_hdr { gso_type: 1, ..tail_tso };
        assert_eq!(field(tail_tso, &tcp4(100)), "offload.csumStart");
        // The kernel cuts by the header at csumStart: it must be the transport header.
        assert_eq!(field(virtio_net_hdr { csum_start: 30, ..tso }, &f), "offload.csumStart");
        let mut tagged = f.clone();
        tagged.splice(12..12, [0x81, 0, 0, 100]);
        assert_eq!(field(tso, &tagged), "offload.csumStart", "the tag moves the TCP header 4 bytes on");
        assert!(check(&virtio_net_hdr { csum_start: 38, hdr_len: 58, ..tso }, &tagged, 1518).is_ok());
        // Without needsCsum the kernel cuts by the header it finds: it must be the gsoType's.
        let gro = virtio_net_hdr { flags: 0, csum_start: 0, csum_offset: 0, ..tso };
        assert!(check(&gro, &f, 1514).is_ok());
        let mut udp = f.clone();
        udp[23] = ffi::IPPROTO_UDP;
        assert_eq!(field(gro, &udp), "offload.gsoType");
        assert_eq!(field(virtio_net_hdr { gso_type: 4, ..gro }, &f), "offload.gsoType", "tcpv6 on IPv4");
        assert_eq!(field(gro, &vec![0u8; 3000]), "offload.gsoType", "not IP at all");
        // udp-l4: needsCsum, no ECN, at most 64 segments.
        let usso = virtio_net_hdr { gso_type: 5, csum_offset: 6, ..tso };
        assert!(check(&usso, &udp, 1514).is_ok());
        assert_eq!(
            field(virtio_net_hdr { flags: 0, csum_start: 0, csum_offset: 0, ..usso }, &udp),
            "offload.needsCsum"
        );
        assert_eq!(
            field(virtio_net_hdr { gso_type: 5 | ffi::VIRTIO_NET_HDR_GSO_ECN, ..usso }, &udp),
            "offload.gsoType"
        );
        assert_eq!(field(virtio_net_hdr { gso_size: 40, ..usso }, &udp), "offload.gsoSize");
        // A segment size not below the payload: the kernel sends the frame uncut.
        let uncut = check(&virtio_net_hdr { gso_size: 3000 - 54, ..tso }, &f, 1514).unwrap_err();
        assert_eq!((uncut.errno, uncut.subject), (Errno::EMSGSIZE, Subject::Option("offload.gsoSize")));
        assert!(check(&virtio_net_hdr { gso_size: 3000 - 55, ..tso }, &f, 1514).is_ok());
        assert!(check(&virtio_net_hdr { gso_size: 60_000, ..tso }, &tcp4(1500), 1514).is_ok(), "uncut, and it fits");
    }

    /// An IPv4/UDP frame with payload `p` and wrong checksums.
    fn udp4(p: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&ffi::ETH_P_IP.to_be_bytes());
        let total = 28 + p.len();
        f.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0x40, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&[0x12, 0x34, 0x56, 0x78, ((8 + p.len()) >> 8) as u8, (8 + p.len()) as u8, 0xde, 0xad]);
        f.extend_from_slice(p);
        f
    }

    fn verifies(f: &[u8]) -> bool {
        let l = layers(f).unwrap();
        let ip_ok = fold(add(0, &f[l.ip..l.l4])) == 0xffff;
        let (src, len) = if l.v4 { (l.ip + 12, 8) } else { (l.ip + 8, 32) };
        let pseudo = add(l.proto as u64 + l.l4_len as u64, &f[src..src + len]);
        ip_ok && fold(add(pseudo, &f[l.l4..l.l4 + l.l4_len])) == 0xffff
    }

    #[test]
    fn rewritten_bytes_get_valid_checksums() {
        let mut f = udp4(b"hello, checksum");
        let mut h = virtio_net_hdr { flags: ffi::VIRTIO_NET_HDR_F_DATA_VALID, ..Default::default() };
        redo_checksums(&mut f, &mut h);
        assert!(verifies(&f));
        assert_eq!(h, virtio_net_hdr::default());
        f[50] ^= 0xff;
        f[26] = 192; // the source address
        assert!(!verifies(&f));
        redo_checksums(&mut f, &mut h);
        assert!(verifies(&f));
    }

    #[test]
    fn the_header_follows_a_reinserted_vlan_tag() {
        // [4 bytes of reserve][header][frame]: the tag moves the frame 4 bytes back.
        let tso =
            virtio_net_hdr { flags: CSUM, gso_type: 1, hdr_len: 66, gso_size: 1448, csum_start: 34, csum_offset: 16 };
        let mut block = vec![0u8; 100];
        write(&tso, &mut block[4..14]);
        let saved = read(&block[4..14]);
        block[10..30].fill(0xee); // the frame's addresses and tag, written over the header's end
        follow_vlan_reinsert(&mut block, 10, &saved);
        assert_eq!(read(&block[0..10]), virtio_net_hdr { csum_start: 38, hdr_len: 70, ..tso });
        // A frame without GSO or a partial checksum keeps its zeroes; a hostile block's
        // numbers saturate instead of wrapping.
        let plain = virtio_net_hdr { flags: ffi::VIRTIO_NET_HDR_F_DATA_VALID, ..Default::default() };
        follow_vlan_reinsert(&mut block, 10, &plain);
        assert_eq!(read(&block[0..10]), plain);
        let edge = virtio_net_hdr { csum_start: u16::MAX - 1, hdr_len: u16::MAX, ..tso };
        follow_vlan_reinsert(&mut block, 10, &edge);
        assert_eq!(read(&block[0..10]), virtio_net_hdr { csum_start: u16::MAX, ..edge });
    }

    #[test]
    fn partial_checksums_get_a_fresh_seed_the_kernel_completes() {
        let mut f = udp4(&[7u8; 33]);
        let mut h = virtio_net_hdr { flags: CSUM, csum_start: 34, csum_offset: 6, ..Default::default() };
        redo_checksums(&mut f, &mut h);
        // Completing as the kernel does (sum from csum_start, complement into the field).
        let c = !fold(add(0, &f[34..]));
        f[40..42].copy_from_slice(&c.to_be_bytes());
        assert!(verifies(&f));
    }
}
