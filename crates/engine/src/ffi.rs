//! Every kernel struct and constant the engine uses, in one place.
//!
//! Layouts follow `include/uapi/linux/if_packet.h` and `include/uapi/linux/filter.h`; each
//! struct has a compile-time size check so a typo cannot silently shift a field.
#![allow(non_camel_case_types)]

use std::mem::size_of;

// --- socket options (SOL_PACKET level) --------------------------------------------------------
pub const SOL_PACKET: libc::c_int = 263;
pub const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
pub const PACKET_RX_RING: libc::c_int = 5;
pub const PACKET_STATISTICS: libc::c_int = 6;
pub const PACKET_VERSION: libc::c_int = 10;
pub const PACKET_RESERVE: libc::c_int = 12;
pub const PACKET_TX_RING: libc::c_int = 13;
pub const PACKET_LOSS: libc::c_int = 14;
pub const PACKET_TIMESTAMP: libc::c_int = 17;
pub const PACKET_FANOUT: libc::c_int = 18;
pub const PACKET_QDISC_BYPASS: libc::c_int = 20;
pub const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

pub const SO_ATTACH_FILTER: libc::c_int = 26;
pub const SO_BUSY_POLL: libc::c_int = 46;

pub const PACKET_MR_PROMISC: u16 = 1;

/// `enum tpacket_versions`.
pub const TPACKET_V3: libc::c_int = 2;

pub const ETH_P_ALL: u16 = 0x0003;
pub const ETH_HLEN: usize = 14;
/// Length of an 802.1Q tag (TPID + TCI).
pub const VLAN_HLEN: usize = 4;
pub const ETH_P_8021Q: u16 = 0x8100;

// --- sll_pkttype ------------------------------------------------------------------------------
pub const PACKET_HOST: u8 = 0;
pub const PACKET_BROADCAST: u8 = 1;
pub const PACKET_MULTICAST: u8 = 2;
pub const PACKET_OTHERHOST: u8 = 3;
pub const PACKET_OUTGOING: u8 = 4;

// --- RX status bits (tp_status, block_status) --------------------------------------------------
pub const TP_STATUS_KERNEL: u32 = 0;
pub const TP_STATUS_USER: u32 = 1 << 0;
pub const TP_STATUS_LOSING: u32 = 1 << 2;
pub const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;
pub const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
pub const TP_STATUS_BLK_TMO: u32 = 1 << 5;
pub const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
pub const TP_STATUS_CSUM_VALID: u32 = 1 << 7;
pub const TP_STATUS_GSO_TCP: u32 = 1 << 8;
pub const TP_STATUS_TS_SOFTWARE: u32 = 1 << 29;
pub const TP_STATUS_TS_SYS_HARDWARE: u32 = 1 << 30;
pub const TP_STATUS_TS_RAW_HARDWARE: u32 = 1 << 31;

// --- TX status bits ----------------------------------------------------------------------------
pub const TP_STATUS_AVAILABLE: u32 = 0;
pub const TP_STATUS_SEND_REQUEST: u32 = 1 << 0;
pub const TP_STATUS_SENDING: u32 = 1 << 1;
pub const TP_STATUS_WRONG_FORMAT: u32 = 1 << 2;

/// `tp_feature_req_word` bit asking the kernel to fill `tp_rxhash`.
pub const TP_FT_REQ_FILL_RXHASH: u32 = 1;

// --- fanout ------------------------------------------------------------------------------------
pub const PACKET_FANOUT_HASH: u32 = 0;
pub const PACKET_FANOUT_LB: u32 = 1;
pub const PACKET_FANOUT_CPU: u32 = 2;
pub const PACKET_FANOUT_ROLLOVER: u32 = 3;
pub const PACKET_FANOUT_RND: u32 = 4;
pub const PACKET_FANOUT_QM: u32 = 5;
pub const PACKET_FANOUT_FLAG_ROLLOVER: u32 = 0x1000;
pub const PACKET_FANOUT_FLAG_UNIQUEID: u32 = 0x2000;
pub const PACKET_FANOUT_FLAG_IGNORE_OUTGOING: u32 = 0x4000;
pub const PACKET_FANOUT_FLAG_DEFRAG: u32 = 0x8000;
/// Members a fanout group takes unless PACKET_FANOUT_DATA raises it (the legacy PACKET_FANOUT_MAX).
pub const PACKET_FANOUT_DEFAULT_MAX_MEMBERS: u32 = 256;

// --- timestamping (include/uapi/linux/net_tstamp.h) --------------------------------------------
pub const SOF_TIMESTAMPING_SOFTWARE: libc::c_int = 1 << 4;
pub const SOF_TIMESTAMPING_RAW_HARDWARE: libc::c_int = 1 << 6;

// --- classic BPF -------------------------------------------------------------------------------
pub const BPF_MAXINSNS: usize = 4096;
pub const BPF_RET: u16 = 0x06;
pub const BPF_K: u16 = 0x00;
pub const BPF_CLASS_MASK: u16 = 0x07;
pub const BPF_RVAL_MASK: u16 = 0x18;

/// Every TPACKET header and frame is aligned to this (`TPACKET_ALIGNMENT`).
pub const TPACKET_ALIGNMENT: usize = 16;

pub const fn tpacket_align(x: usize) -> usize {
    (x + TPACKET_ALIGNMENT - 1) & !(TPACKET_ALIGNMENT - 1)
}

/// `struct tpacket_req3`: geometry handed to `PACKET_RX_RING` / `PACKET_TX_RING` on V3.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct tpacket_req3 {
    pub tp_block_size: u32,
    pub tp_block_nr: u32,
    pub tp_frame_size: u32,
    pub tp_frame_nr: u32,
    pub tp_retire_blk_tov: u32,
    pub tp_sizeof_priv: u32,
    pub tp_feature_req_word: u32,
}

/// `struct tpacket3_hdr`, with the `hv1` variant inlined.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct tpacket3_hdr {
    pub tp_next_offset: u32,
    pub tp_sec: u32,
    pub tp_nsec: u32,
    pub tp_snaplen: u32,
    pub tp_len: u32,
    pub tp_status: u32,
    pub tp_mac: u16,
    pub tp_net: u16,
    pub hv1_tp_rxhash: u32,
    pub hv1_tp_vlan_tci: u32,
    pub hv1_tp_vlan_tpid: u16,
    pub hv1_tp_padding: u16,
    pub tp_padding: [u8; 8],
}

/// `struct tpacket_block_desc` with `struct tpacket_hdr_v1` inlined.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct tpacket_block_desc {
    pub version: u32,
    pub offset_to_priv: u32,
    pub block_status: u32,
    pub num_pkts: u32,
    pub offset_to_first_pkt: u32,
    pub blk_len: u32,
    pub seq_num: u64,
    pub ts_first_pkt_sec: u32,
    pub ts_first_pkt_nsec: u32,
    pub ts_last_pkt_sec: u32,
    pub ts_last_pkt_nsec: u32,
}

/// Byte offset of `block_status` inside `tpacket_block_desc`, the word the kernel and we
/// hand the block back and forth with.
pub const BLOCK_STATUS_OFFSET: usize = 8;
/// Byte offset of `tp_status` inside `tpacket3_hdr` (TX frames are handed over with it).
pub const TP3_STATUS_OFFSET: usize = std::mem::offset_of!(tpacket3_hdr, tp_status);

/// Where JavaScript reads a packet's metadata: byte offsets inside `tpacket3_hdr`, and of the
/// `sockaddr_ll` that follows it (the binding exports these, so the layout is written once).
pub mod layout {
    use super::*;
    use std::mem::offset_of;
    pub const SEC: usize = offset_of!(tpacket3_hdr, tp_sec);
    pub const NSEC: usize = offset_of!(tpacket3_hdr, tp_nsec);
    pub const SNAPLEN: usize = offset_of!(tpacket3_hdr, tp_snaplen);
    pub const LEN: usize = offset_of!(tpacket3_hdr, tp_len);
    pub const STATUS: usize = offset_of!(tpacket3_hdr, tp_status);
    pub const MAC: usize = offset_of!(tpacket3_hdr, tp_mac);
    pub const RXHASH: usize = offset_of!(tpacket3_hdr, hv1_tp_rxhash);
    pub const VLAN_TCI: usize = offset_of!(tpacket3_hdr, hv1_tp_vlan_tci);
    pub const VLAN_TPID: usize = offset_of!(tpacket3_hdr, hv1_tp_vlan_tpid);
    /// Padding the kernel leaves zero; netring writes `REINSERTED` here after moving a VLAN tag
    /// back into the frame.
    pub const NETRING_FLAGS: usize = offset_of!(tpacket3_hdr, hv1_tp_padding);
    pub const FLAG_VLAN_REINSERTED: u16 = 1;
    /// The `sockaddr_ll` after the header.
    pub const SLL: usize = tpacket_align(TPACKET3_HDR_LEN);
    pub const SLL_PROTOCOL: usize = SLL + offset_of!(sockaddr_ll, sll_protocol);
    pub const SLL_IFINDEX: usize = SLL + offset_of!(sockaddr_ll, sll_ifindex);
    pub const SLL_PKTTYPE: usize = SLL + offset_of!(sockaddr_ll, sll_pkttype);
    pub const SLL_HALEN: usize = SLL + offset_of!(sockaddr_ll, sll_halen);
    pub const SLL_ADDR: usize = SLL + offset_of!(sockaddr_ll, sll_addr);
}

/// `struct sockaddr_ll` as the kernel writes it after each `tpacket3_hdr`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct sockaddr_ll {
    pub sll_family: u16,
    pub sll_protocol: u16, // network byte order
    pub sll_ifindex: i32,
    pub sll_hatype: u16,
    pub sll_pkttype: u8,
    pub sll_halen: u8,
    pub sll_addr: [u8; 8],
}

/// `struct tpacket_stats_v3`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct tpacket_stats_v3 {
    pub tp_packets: u32,
    pub tp_drops: u32,
    pub tp_freeze_q_cnt: u32,
}

/// `struct packet_mreq`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct packet_mreq {
    pub mr_ifindex: i32,
    pub mr_type: u16,
    pub mr_alen: u16,
    pub mr_address: [u8; 8],
}

/// `struct sock_filter`: one classic BPF instruction, as `tcpdump -dd` prints it.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct sock_filter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// `struct sock_fprog`.
#[repr(C)]
pub struct sock_fprog {
    pub len: u16,
    pub filter: *const sock_filter,
}

pub const TPACKET3_HDR_LEN: usize = size_of::<tpacket3_hdr>();
pub const SOCKADDR_LL_LEN: usize = size_of::<sockaddr_ll>();
pub const BLOCK_DESC_LEN: usize = size_of::<tpacket_block_desc>();
/// `TPACKET3_HDRLEN`: what the kernel counts as the per-frame header on V3.
pub const TPACKET3_HDRLEN: usize = tpacket_align(TPACKET3_HDR_LEN) + SOCKADDR_LL_LEN;

const _: () = assert!(size_of::<tpacket_req3>() == 28);
const _: () = assert!(TPACKET3_HDR_LEN == 48);
const _: () = assert!(TP3_STATUS_OFFSET == 20 && layout::MAC == 24 && layout::NETRING_FLAGS == 38);
const _: () = assert!(BLOCK_DESC_LEN == 48);
const _: () = assert!(SOCKADDR_LL_LEN == 20);
const _: () = assert!(size_of::<tpacket_stats_v3>() == 12);
const _: () = assert!(size_of::<packet_mreq>() == 16);
const _: () = assert!(size_of::<sock_filter>() == 8);
