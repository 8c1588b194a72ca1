//! Walking one TPACKET_V3 RX block, bounds-checked.
//!
//! The kernel lays a retired block out as a `tpacket_block_desc`, then `num_pkts` packets, each
//! a `tpacket3_hdr`, a `sockaddr_ll`, padding, and the frame at `tp_mac`, chained by
//! `tp_next_offset` (Documentation/networking/packet_mmap.rst, net/packet/af_packet.c). The
//! walker trusts none of these numbers: every header, address and frame must lie inside the
//! used part of the block (`blk_len`), and every step must move forward. A block that breaks a
//! rule is reported as corrupt; nothing is ever read out of bounds.

use std::ptr;

use crate::ffi::{self, sockaddr_ll, tpacket3_hdr, tpacket_block_desc};

/// Why a block was refused, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorruptBlock {
    pub offset: usize,
    pub reason: &'static str,
}

/// The block header fields a reader needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockInfo {
    pub num_packets: u32,
    pub seq_num: u64,
    /// The block was retired by the timeout rather than because it was full.
    pub timed_out: bool,
    /// The ring dropped packets (since the statistics were last read) before this block was
    /// closed. TPACKET_V3 reports this per block, not per packet (net/packet/af_packet.c,
    /// prb_close_block).
    pub losing: bool,
    /// Bytes of the block in use (`blk_len`).
    pub used_len: usize,
    pub first_offset: usize,
}

/// One packet as found in a block. Offsets are from the start of the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketDesc {
    pub header_offset: u32,
    /// Start of the frame (`tp_mac`, or 4 bytes earlier once a VLAN tag was re-inserted).
    pub data_offset: u32,
    /// Bytes captured (`tp_snaplen`).
    pub captured_len: u32,
    /// Bytes on the wire (`tp_len`).
    pub original_len: u32,
    pub sec: u32,
    pub nsec: u32,
    pub status: u32,
    pub rxhash: u32,
    pub vlan_tci: u16,
    pub vlan_tpid: u16,
    pub ifindex: i32,
    /// `sll_protocol`, in host byte order.
    pub protocol: u16,
    pub pkttype: u8,
    pub halen: u8,
    pub addr: [u8; 8],
    /// The VLAN tag from the metadata was written back into the frame.
    pub vlan_reinserted: bool,
}

fn read<T: Copy>(block: &[u8], offset: usize) -> Option<T> {
    let end = offset.checked_add(std::mem::size_of::<T>())?;
    if end > block.len() {
        return None;
    }
    // SAFETY: bounds checked above; T is plain old data, read unaligned.
    Some(unsafe { ptr::read_unaligned(block.as_ptr().add(offset).cast::<T>()) })
}

/// Reads and checks the block descriptor. `block` is the whole block as mapped.
pub fn read_block_header(block: &[u8]) -> Result<BlockInfo, CorruptBlock> {
    let bad = |reason| CorruptBlock { offset: 0, reason };
    let desc: tpacket_block_desc = read(block, 0).ok_or(bad("block smaller than its descriptor"))?;
    let used_len = desc.blk_len as usize;
    if used_len > block.len() {
        return Err(bad("blk_len beyond the end of the block"));
    }
    let first_offset = desc.offset_to_first_pkt as usize;
    if desc.num_pkts > 0 {
        if first_offset < ffi::BLOCK_DESC_LEN || first_offset >= used_len {
            return Err(bad("offset_to_first_pkt outside the used part of the block"));
        }
        // Each packet takes at least a header, so this many cannot fit.
        if desc.num_pkts as usize > (used_len - first_offset) / ffi::TPACKET3_HDR_LEN {
            return Err(bad("num_pkts larger than the block can hold"));
        }
    }
    Ok(BlockInfo {
        num_packets: desc.num_pkts,
        seq_num: desc.seq_num,
        timed_out: desc.block_status & ffi::TP_STATUS_BLK_TMO != 0,
        losing: desc.block_status & ffi::TP_STATUS_LOSING != 0,
        used_len,
        first_offset,
    })
}

/// Iterates the packets of a block. It holds no borrow of the block, so the caller may edit the
/// block between steps (the VLAN re-insertion does).
#[derive(Debug, Clone)]
pub struct Walker {
    next: usize,
    left: u32,
    end: usize,
}

impl Walker {
    pub fn new(info: &BlockInfo) -> Self {
        Walker { next: info.first_offset, left: info.num_packets, end: info.used_len }
    }

    pub fn remaining(&self) -> u32 {
        self.left
    }

    /// The next packet, `None` at the end, or the first rule the block breaks (after which the
    /// walk is over).
    pub fn next(&mut self, block: &[u8]) -> Option<Result<PacketDesc, CorruptBlock>> {
        if self.left == 0 {
            return None;
        }
        let result = self.step(block);
        if result.is_err() {
            self.left = 0;
        }
        Some(result)
    }

    fn step(&mut self, block: &[u8]) -> Result<PacketDesc, CorruptBlock> {
        let off = self.next;
        let used = &block[..self.end.min(block.len())];
        let bad = |reason| CorruptBlock { offset: off, reason };

        let hdr: tpacket3_hdr = read(used, off).ok_or(bad("packet header beyond blk_len"))?;
        let sll_off = off + ffi::tpacket_align(ffi::TPACKET3_HDR_LEN);
        let sll: sockaddr_ll = read(used, sll_off).ok_or(bad("sockaddr_ll beyond blk_len"))?;
        let mac = hdr.tp_mac as usize;
        if mac < ffi::TPACKET3_HDRLEN {
            return Err(bad("tp_mac overlaps the packet header"));
        }
        let data_end = off + mac + hdr.tp_snaplen as usize;
        if data_end > used.len() {
            return Err(bad("frame (tp_mac + tp_snaplen) beyond blk_len"));
        }
        if sll.sll_halen as usize > sll.sll_addr.len() {
            return Err(bad("sll_halen larger than sll_addr"));
        }

        self.left -= 1;
        if self.left > 0 {
            let step = hdr.tp_next_offset as usize;
            // The next header must start after this frame, which also rules out a zero step.
            if step < mac + hdr.tp_snaplen as usize || off + step >= used.len() {
                return Err(bad("tp_next_offset does not lead to a header inside the block"));
            }
            self.next = off + step;
        }

        Ok(PacketDesc {
            header_offset: off as u32,
            data_offset: (off + mac) as u32,
            captured_len: hdr.tp_snaplen,
            original_len: hdr.tp_len,
            sec: hdr.tp_sec,
            nsec: hdr.tp_nsec,
            status: hdr.tp_status,
            rxhash: hdr.hv1_tp_rxhash,
            vlan_tci: hdr.hv1_tp_vlan_tci as u16,
            vlan_tpid: if hdr.tp_status & ffi::TP_STATUS_VLAN_TPID_VALID != 0 {
                hdr.hv1_tp_vlan_tpid
            } else if hdr.tp_status & ffi::TP_STATUS_VLAN_VALID != 0 {
                ffi::ETH_P_8021Q
            } else {
                0
            },
            ifindex: sll.sll_ifindex,
            protocol: u16::from_be(sll.sll_protocol),
            pkttype: sll.sll_pkttype,
            halen: sll.sll_halen,
            addr: sll.sll_addr,
            vlan_reinserted: false,
        })
    }
}

/// Writes the 802.1Q tag that the kernel moved into the metadata back into the frame, the way
/// it was on the wire: the two MAC addresses move 4 bytes towards the header, and TPID + TCI
/// fill the gap. The room comes from `PACKET_RESERVE`, so this stays zero-copy.
///
/// Does nothing (and returns false) when the packet has no stripped tag, when the frame is too
/// short to hold two addresses, or when there is no room in front of the frame.
pub fn reinsert_vlan(block: &mut [u8], desc: &mut PacketDesc) -> bool {
    if desc.status & ffi::TP_STATUS_VLAN_VALID == 0 || desc.vlan_reinserted {
        return false;
    }
    let mac = desc.data_offset as usize;
    let header_end = desc.header_offset as usize + ffi::TPACKET3_HDRLEN;
    let addrs = 2 * 6;
    if (desc.captured_len as usize) < addrs
        || mac < header_end + ffi::VLAN_HLEN
        || mac + desc.captured_len as usize > block.len()
    {
        return false;
    }
    let new_start = mac - ffi::VLAN_HLEN;
    block.copy_within(mac..mac + addrs, new_start);
    block[new_start + addrs..new_start + addrs + 2].copy_from_slice(&desc.vlan_tpid.to_be_bytes());
    block[new_start + addrs + 2..new_start + addrs + 4].copy_from_slice(&desc.vlan_tci.to_be_bytes());
    desc.data_offset = new_start as u32;
    desc.captured_len += ffi::VLAN_HLEN as u32;
    // tp_len comes from the block unchecked (it may exceed what was captured): never overflow.
    desc.original_len = desc.original_len.saturating_add(ffi::VLAN_HLEN as u32);
    desc.vlan_reinserted = true;
    // The header says so too, for readers of the block (JavaScript reads metadata from it). The
    // block is ours until released; the kernel rewrites every header when it fills it again.
    let h = desc.header_offset as usize;
    let put = |block: &mut [u8], at: usize, bytes: &[u8]| block[h + at..h + at + bytes.len()].copy_from_slice(bytes);
    put(block, ffi::layout::MAC, &((new_start - h) as u16).to_ne_bytes());
    put(block, ffi::layout::SNAPLEN, &desc.captured_len.to_ne_bytes());
    put(block, ffi::layout::LEN, &desc.original_len.to_ne_bytes());
    put(block, ffi::layout::NETRING_FLAGS, &ffi::layout::FLAG_VLAN_REINSERTED.to_ne_bytes());
    true
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ffi::*;

    /// Builds blocks the way the kernel does, so the walker can be tested on good and bad ones.
    pub struct SyntheticBlock {
        pub bytes: Vec<u8>,
        offsets: Vec<usize>,
        next: usize,
        reserve: usize,
    }

    pub struct Meta {
        pub status: u32,
        pub vlan_tci: u16,
        pub ifindex: i32,
        pub pkttype: u8,
    }

    impl Default for Meta {
        fn default() -> Self {
            Meta { status: TP_STATUS_USER, vlan_tci: 0, ifindex: 7, pkttype: PACKET_HOST }
        }
    }

    impl SyntheticBlock {
        pub fn new(size: usize, reserve: usize) -> Self {
            SyntheticBlock { bytes: vec![0; size], offsets: vec![], next: BLOCK_DESC_LEN, reserve }
        }

        fn put<T>(&mut self, off: usize, v: T) {
            unsafe { ptr::write_unaligned(self.bytes.as_mut_ptr().add(off).cast::<T>(), v) }
        }

        pub fn push(&mut self, frame: &[u8], meta: Meta) -> &mut Self {
            let off = self.next;
            // Same arithmetic as tpacket_rcv() for SOCK_RAW with a 14-byte link header.
            let netoff = tpacket_align(TPACKET3_HDRLEN + 16) + self.reserve;
            let mac = netoff - ETH_HLEN;
            let hdr = tpacket3_hdr {
                tp_sec: 1_700_000_000,
                tp_nsec: 123,
                tp_snaplen: frame.len() as u32,
                tp_len: frame.len() as u32,
                tp_status: meta.status,
                tp_mac: mac as u16,
                tp_net: netoff as u16,
                hv1_tp_vlan_tci: meta.vlan_tci as u32,
                ..Default::default()
            };
            self.put(off, hdr);
            let sll = sockaddr_ll {
                sll_family: libc::AF_PACKET as u16,
                sll_protocol: 0x0800u16.to_be(),
                sll_ifindex: meta.ifindex,
                sll_pkttype: meta.pkttype,
                sll_halen: 6,
                sll_addr: [2, 0, 0, 0, 0, 1, 0, 0],
                ..Default::default()
            };
            self.put(off + 48, sll);
            self.bytes[off + mac..off + mac + frame.len()].copy_from_slice(frame);
            if let Some(&prev) = self.offsets.last() {
                self.put(prev, (off - prev) as u32); // tp_next_offset of the previous packet
            }
            self.offsets.push(off);
            self.next = off + tpacket_align(mac + frame.len());
            self.finish();
            self
        }

        fn finish(&mut self) {
            let desc = tpacket_block_desc {
                version: 1,
                block_status: TP_STATUS_USER,
                num_pkts: self.offsets.len() as u32,
                offset_to_first_pkt: BLOCK_DESC_LEN as u32,
                blk_len: self.next as u32,
                seq_num: 42,
                ..Default::default()
            };
            self.put(0, desc);
        }

        pub fn offset_of(&self, i: usize) -> usize {
            self.offsets[i]
        }

        pub fn set_u32(&mut self, off: usize, v: u32) {
            self.put(off, v);
        }
    }

    fn walk(block: &[u8]) -> Result<Vec<PacketDesc>, CorruptBlock> {
        let info = read_block_header(block)?;
        let mut w = Walker::new(&info);
        let mut out = vec![];
        while let Some(p) = w.next(block) {
            out.push(p?);
        }
        Ok(out)
    }

    fn frame(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
    }

    #[test]
    fn walks_every_packet_with_exact_bytes() {
        let mut b = SyntheticBlock::new(8192, 0);
        let frames = [frame(60, 1), frame(1514, 2), frame(14, 3)];
        for f in &frames {
            b.push(f, Meta::default());
        }
        let info = read_block_header(&b.bytes).unwrap();
        assert_eq!(info.num_packets, 3);
        assert_eq!(info.seq_num, 42);
        let pkts = walk(&b.bytes).unwrap();
        assert_eq!(pkts.len(), 3);
        for (p, f) in pkts.iter().zip(&frames) {
            let s = p.data_offset as usize;
            assert_eq!(&b.bytes[s..s + p.captured_len as usize], &f[..]);
            assert_eq!(p.ifindex, 7);
            assert_eq!(p.protocol, 0x0800);
            assert_eq!(p.halen, 6);
        }
    }

    #[test]
    fn empty_block_has_no_packets() {
        let b = SyntheticBlock::new(4096, 0);
        let mut bytes = b.bytes.clone();
        bytes[20..24].copy_from_slice(&(BLOCK_DESC_LEN as u32).to_ne_bytes()); // blk_len
        assert!(walk(&bytes).unwrap().is_empty());
    }

    #[test]
    fn refuses_blk_len_beyond_block() {
        let mut b = SyntheticBlock::new(4096, 0);
        b.push(&frame(60, 0), Meta::default());
        b.set_u32(20, 5000);
        assert_eq!(walk(&b.bytes).unwrap_err().reason, "blk_len beyond the end of the block");
    }

    #[test]
    fn refuses_num_pkts_that_cannot_fit() {
        let mut b = SyntheticBlock::new(4096, 0);
        b.push(&frame(60, 0), Meta::default());
        b.set_u32(12, 1000);
        assert_eq!(walk(&b.bytes).unwrap_err().reason, "num_pkts larger than the block can hold");
    }

    #[test]
    fn refuses_first_offset_inside_descriptor() {
        let mut b = SyntheticBlock::new(4096, 0);
        b.push(&frame(60, 0), Meta::default());
        b.set_u32(16, 8);
        assert!(walk(&b.bytes).is_err());
    }

    #[test]
    fn refuses_snaplen_past_the_end() {
        let mut b = SyntheticBlock::new(4096, 0);
        b.push(&frame(60, 0), Meta::default());
        let off = b.offset_of(0);
        b.set_u32(off + 12, 100_000); // tp_snaplen
        assert_eq!(walk(&b.bytes).unwrap_err().reason, "frame (tp_mac + tp_snaplen) beyond blk_len");
    }

    #[test]
    fn refuses_tp_mac_inside_header() {
        let mut b = SyntheticBlock::new(4096, 0);
        b.push(&frame(60, 0), Meta::default());
        let off = b.offset_of(0);
        b.bytes[off + 24..off + 26].copy_from_slice(&10u16.to_ne_bytes());
        assert_eq!(walk(&b.bytes).unwrap_err().reason, "tp_mac overlaps the packet header");
    }

    #[test]
    fn refuses_zero_or_backward_next_offset() {
        for bad_step in [0u32, 16, 1_000_000] {
            let mut b = SyntheticBlock::new(8192, 0);
            b.push(&frame(60, 0), Meta::default()).push(&frame(60, 1), Meta::default());
            let off = b.offset_of(0);
            b.set_u32(off, bad_step);
            let err = walk(&b.bytes).unwrap_err();
            assert_eq!(err.reason, "tp_next_offset does not lead to a header inside the block");
            assert_eq!(err.offset, off);
        }
    }

    #[test]
    fn refuses_header_truncated_by_blk_len() {
        let mut b = SyntheticBlock::new(8192, 0);
        b.push(&frame(60, 0), Meta::default()).push(&frame(60, 1), Meta::default());
        let second = b.offset_of(1);
        b.set_u32(20, (second + 20) as u32); // blk_len cuts the second header
        b.set_u32(12, 1); // and num_pkts agrees there is only room for one...
        assert_eq!(walk(&b.bytes).unwrap().len(), 1);
        b.set_u32(12, 2); // ...but claiming two must not read past blk_len
        assert!(walk(&b.bytes).is_err());
    }

    #[test]
    fn garbage_never_reads_out_of_bounds() {
        // Deterministic pseudo-random blocks: the walker must return, never panic.
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..2000 {
            let mut bytes = vec![0u8; 1024];
            for byte in bytes.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *byte = x as u8;
            }
            // Keep some headers plausible so the walk gets past the first checks.
            bytes[20..24].copy_from_slice(&((x % 1100) as u32).to_ne_bytes());
            bytes[16..20].copy_from_slice(&48u32.to_ne_bytes());
            bytes[12..16].copy_from_slice(&((x >> 8) as u32 % 8).to_ne_bytes());
            let _ = walk(&bytes);
        }
    }

    #[test]
    fn vlan_tag_is_reinserted_in_place() {
        let mut b = SyntheticBlock::new(4096, VLAN_HLEN);
        let wire = frame(64, 9); // dst, src, 0x81 0x00, TCI, ethertype, payload
        let mut stripped = wire[..12].to_vec();
        stripped.extend_from_slice(&wire[16..]);
        let mut wire = wire;
        wire[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
        wire[14..16].copy_from_slice(&0x2064u16.to_be_bytes());
        b.push(&stripped, Meta { status: TP_STATUS_USER | TP_STATUS_VLAN_VALID, vlan_tci: 0x2064, ..Meta::default() });
        let info = read_block_header(&b.bytes).unwrap();
        let mut w = Walker::new(&info);
        let mut d = w.next(&b.bytes).unwrap().unwrap();
        assert_eq!(d.vlan_tpid, ETH_P_8021Q);
        assert!(reinsert_vlan(&mut b.bytes, &mut d));
        let s = d.data_offset as usize;
        assert_eq!(&b.bytes[s..s + d.captured_len as usize], &wire[..]);
        assert_eq!(d.original_len, 64);
        // The header was updated to match, for readers of the block.
        let h = d.header_offset as usize;
        let hdr: tpacket3_hdr = read(&b.bytes, h).unwrap();
        assert_eq!((h + hdr.tp_mac as usize, hdr.tp_snaplen, hdr.tp_len), (s, 64, 64));
        assert_eq!(hdr.hv1_tp_padding, layout::FLAG_VLAN_REINSERTED);
        assert!(!reinsert_vlan(&mut b.bytes, &mut d), "a second call must not insert twice");
    }

    #[test]
    fn vlan_reinsertion_never_overflows_a_huge_original_length() {
        // Found by the block_walker fuzz target: tp_len near u32::MAX overflowed on re-insertion.
        let mut b = SyntheticBlock::new(4096, VLAN_HLEN);
        b.push(&frame(60, 1), Meta { status: TP_STATUS_USER | TP_STATUS_VLAN_VALID, vlan_tci: 7, ..Meta::default() });
        let h = b.offset_of(0);
        b.set_u32(h + layout::LEN, u32::MAX - 1);
        let info = read_block_header(&b.bytes).unwrap();
        let mut d = Walker::new(&info).next(&b.bytes).unwrap().unwrap();
        assert!(reinsert_vlan(&mut b.bytes, &mut d));
        assert_eq!((d.captured_len, d.original_len), (64, u32::MAX));
    }

    #[test]
    fn vlan_without_headroom_is_left_alone() {
        // Without PACKET_RESERVE the kernel still leaves padding, but we only use headroom we
        // asked for: here the header end is pushed to the frame start.
        let mut b = SyntheticBlock::new(4096, 0);
        b.push(&frame(60, 0), Meta { status: TP_STATUS_USER | TP_STATUS_VLAN_VALID, vlan_tci: 5, ..Meta::default() });
        let info = read_block_header(&b.bytes).unwrap();
        let mut d = Walker::new(&info).next(&b.bytes).unwrap().unwrap();
        d.header_offset = d.data_offset - TPACKET3_HDRLEN as u32 - 2;
        assert!(!reinsert_vlan(&mut b.bytes, &mut d));
        assert_eq!(d.captured_len, 60);
    }
}
