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
pub const PACKET_VNET_HDR: libc::c_int = 15;
pub const PACKET_QDISC_BYPASS: libc::c_int = 20;
pub const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

pub const SO_ATTACH_FILTER: libc::c_int = 26;

/// `include/uapi/linux/sockios.h`: read an interface's MTU into `struct ifreq`.
pub const SIOCGIFMTU: libc::c_ulong = 0x8921;
pub const SO_BUSY_POLL: libc::c_int = 46;

pub const PACKET_MR_PROMISC: u16 = 1;

/// `enum tpacket_versions`.
pub const TPACKET_V3: libc::c_int = 2;

pub const ETH_P_ALL: u16 = 0x0003;
pub const ETH_HLEN: usize = 14;
/// Length of an 802.1Q tag (TPID + TCI).
pub const VLAN_HLEN: usize = 4;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
/// Largest IPv4 total length / IPv6 payload length a (GSO) packet can carry.
pub const IP_MAX_LEN: usize = 65535;

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

/// TPACKET_V3 pads each packet in a block, and the block's private area, to this
/// (`V3_ALIGNMENT` in net/packet/af_packet.c): `blk_len` sums padded packets.
pub const V3_ALIGNMENT: usize = 8;

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

// --- virtio-net header (include/uapi/linux/virtio_net.h), PACKET_VNET_HDR -------------------
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
pub const VIRTIO_NET_HDR_F_DATA_VALID: u8 = 2;
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
pub const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
pub const VIRTIO_NET_HDR_GSO_UDP: u8 = 3;
pub const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
pub const VIRTIO_NET_HDR_GSO_UDP_L4: u8 = 5;
pub const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;
/// A `gso_size` the kernel reserves for itself (include/linux/skbuff.h); refused on transmit.
pub const GSO_BY_FRAGS: u16 = 0xffff;
/// The most segments one UDP GSO frame may be cut into (include/linux/udp.h).
pub const UDP_MAX_SEGMENTS: usize = 64;
/// The bytes of a TCP and of a UDP header the kernel needs in front of a GSO payload.
pub const TCP_MIN_HLEN: usize = 20;
pub const UDP_HLEN: usize = 8;

/// `struct virtio_net_hdr`: the offload metadata that precedes each frame on a socket with
/// `PACKET_VNET_HDR` (little-endian fields on little-endian hosts, `vio_le()`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct virtio_net_hdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

pub const VIRTIO_NET_HDR_LEN: usize = size_of::<virtio_net_hdr>();

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

// --- AF_XDP (include/uapi/linux/if_xdp.h; this machine's headers are older, so all is here) ---
pub const AF_XDP: libc::c_int = 44;
pub const SOL_XDP: libc::c_int = 283;

pub const XDP_MMAP_OFFSETS: libc::c_int = 1;
pub const XDP_RX_RING: libc::c_int = 2;
pub const XDP_TX_RING: libc::c_int = 3;
pub const XDP_UMEM_REG: libc::c_int = 4;
pub const XDP_UMEM_FILL_RING: libc::c_int = 5;
pub const XDP_UMEM_COMPLETION_RING: libc::c_int = 6;
pub const XDP_STATISTICS: libc::c_int = 7;
pub const XDP_OPTIONS: libc::c_int = 8;

/// `sxdp_flags` of bind().
pub const XDP_SHARED_UMEM: u16 = 1 << 0;
pub const XDP_COPY: u16 = 1 << 1;
pub const XDP_ZEROCOPY: u16 = 1 << 2;
pub const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;

/// `xdp_options.flags`: the socket runs in zero-copy mode.
pub const XDP_OPTIONS_ZEROCOPY: u32 = 1 << 0;
/// The ring `flags` word bit asking user space for a wakeup (sendto / recvfrom / poll).
pub const XDP_RING_NEED_WAKEUP: u32 = 1 << 0;

/// mmap page offsets of the four rings.
pub const XDP_PGOFF_RX_RING: libc::off_t = 0;
pub const XDP_PGOFF_TX_RING: libc::off_t = 0x8000_0000;
pub const XDP_UMEM_PGOFF_FILL_RING: libc::off_t = 0x1_0000_0000;
pub const XDP_UMEM_PGOFF_COMPLETION_RING: libc::off_t = 0x1_8000_0000;

/// Bytes the kernel keeps in front of every received frame (`XDP_PACKET_HEADROOM`).
pub const XDP_PACKET_HEADROOM: u32 = 256;

/// `struct sockaddr_xdp`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct sockaddr_xdp {
    pub sxdp_family: u16,
    pub sxdp_flags: u16,
    pub sxdp_ifindex: u32,
    pub sxdp_queue_id: u32,
    pub sxdp_shared_umem_fd: u32,
}

/// `struct xdp_ring_offset`: where a ring's indices, flags and descriptors sit in its mapping.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct xdp_ring_offset {
    pub producer: u64,
    pub consumer: u64,
    pub desc: u64,
    pub flags: u64,
}

/// `struct xdp_mmap_offsets`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct xdp_mmap_offsets {
    pub rx: xdp_ring_offset,
    pub tx: xdp_ring_offset,
    pub fr: xdp_ring_offset,
    pub cr: xdp_ring_offset,
}

/// `struct xdp_umem_reg` (the 32-byte form; `tx_metadata_len` is read only with its flag).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct xdp_umem_reg {
    pub addr: u64,
    pub len: u64,
    pub chunk_size: u32,
    pub headroom: u32,
    pub flags: u32,
    pub tx_metadata_len: u32,
}

/// `struct xdp_statistics` (v2, with the ring-full and empty-ring counters).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct xdp_statistics {
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    pub rx_ring_full: u64,
    pub rx_fill_ring_empty_descs: u64,
    pub tx_ring_empty_descs: u64,
}

/// `struct xdp_options`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct xdp_options {
    pub flags: u32,
}

/// `struct xdp_desc`: one RX or TX descriptor.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct xdp_desc {
    pub addr: u64,
    pub len: u32,
    pub options: u32,
}

const _: () = assert!(size_of::<sockaddr_xdp>() == 16);
const _: () = assert!(size_of::<xdp_mmap_offsets>() == 128);
const _: () = assert!(size_of::<xdp_umem_reg>() == 32);
const _: () = assert!(size_of::<xdp_statistics>() == 48);
const _: () = assert!(size_of::<xdp_desc>() == 16);

// --- eBPF (include/uapi/linux/bpf.h) ------------------------------------------------------------
pub const BPF_MAP_CREATE: libc::c_int = 0;
pub const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
pub const BPF_MAP_DELETE_ELEM: libc::c_int = 3;
pub const BPF_PROG_LOAD: libc::c_int = 5;
pub const BPF_OBJ_GET: libc::c_int = 7;
pub const BPF_MAP_GET_FD_BY_ID: libc::c_int = 14;
pub const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;
pub const BPF_LINK_CREATE: libc::c_int = 28;

pub const BPF_MAP_TYPE_ARRAY: u32 = 2;
pub const BPF_MAP_TYPE_XSKMAP: u32 = 17;
pub const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
pub const BPF_PROG_TYPE_XDP: u32 = 6;
/// The most maps one program may use (`MAX_USED_MAPS`, kernel/bpf/verifier.c).
pub const BPF_MAX_USED_MAPS: usize = 64;
/// What `/proc/self/fd/N` links to for a BPF program and a BPF map (`anon_inode_getfd()` names
/// in kernel/bpf/syscall.c): the only way to tell them apart, as their infos share a head.
pub const BPF_PROG_FD_LINK: &str = "anon_inode:bpf-prog";
pub const BPF_MAP_FD_LINK: &str = "anon_inode:bpf-map";
/// `enum bpf_attach_type`: BPF_XDP.
pub const BPF_XDP: u32 = 37;
pub const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
pub const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
/// `enum xdp_action`.
pub const XDP_PASS: i32 = 2;
pub const BPF_FUNC_REDIRECT_MAP: i32 = 51;
/// `src_reg` of a 64-bit immediate load that names a map by file descriptor.
pub const BPF_PSEUDO_MAP_FD: u8 = 1;
/// Offset of `rx_queue_index` in `struct xdp_md`.
pub const XDP_MD_RX_QUEUE_INDEX: i16 = 16;

// Opcodes (class | size/op | mode/source).
pub const BPF_LDX_MEM_W: u8 = 0x61;
pub const BPF_LD_IMM_DW: u8 = 0x18;
pub const BPF_ALU64_MOV_K: u8 = 0xb7;
pub const BPF_JMP_CALL: u8 = 0x85;
pub const BPF_JMP_EXIT: u8 = 0x95;

/// `struct bpf_insn`: `regs` holds dst_reg in the low nibble and src_reg in the high one.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct bpf_insn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

/// `union bpf_attr` for BPF_MAP_CREATE (the fields up to `map_name`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct bpf_attr_map_create {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub inner_map_fd: u32,
    pub numa_node: u32,
    pub map_name: [u8; 16],
}

/// `union bpf_attr` for BPF_MAP_UPDATE_ELEM / BPF_MAP_DELETE_ELEM.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct bpf_attr_map_elem {
    pub map_fd: u32,
    pub _pad: u32,
    pub key: u64,
    pub value: u64,
    pub flags: u64,
}

/// `union bpf_attr` for BPF_PROG_LOAD (the fields up to `expected_attach_type`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct bpf_attr_prog_load {
    pub prog_type: u32,
    pub insn_cnt: u32,
    pub insns: u64,
    pub license: u64,
    pub log_level: u32,
    pub log_size: u32,
    pub log_buf: u64,
    pub kern_version: u32,
    pub prog_flags: u32,
    pub prog_name: [u8; 16],
    pub prog_ifindex: u32,
    pub expected_attach_type: u32,
}

/// `union bpf_attr` for BPF_OBJ_GET.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct bpf_attr_obj_get {
    pub pathname: u64,
    pub bpf_fd: u32,
    pub file_flags: u32,
}

/// `union bpf_attr` for BPF_OBJ_GET_INFO_BY_FD.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct bpf_attr_info_by_fd {
    pub bpf_fd: u32,
    pub info_len: u32,
    pub info: u64,
}

/// The head of `struct bpf_prog_info` and `struct bpf_map_info` (type, id): all netring reads.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct bpf_info_head {
    pub kind: u32,
    pub id: u32,
}

/// The head of `struct bpf_prog_info`, up to `map_ids`: the ids of the maps the program uses.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct bpf_prog_info_maps {
    pub kind: u32,
    pub id: u32,
    pub tag: [u8; 8],
    pub jited_prog_len: u32,
    pub xlated_prog_len: u32,
    pub jited_prog_insns: u64,
    pub xlated_prog_insns: u64,
    pub load_time: u64,
    pub created_by_uid: u32,
    /// In: room at `map_ids`; out: how many maps the program uses.
    pub nr_map_ids: u32,
    pub map_ids: u64,
}

/// `union bpf_attr` for BPF_MAP_GET_FD_BY_ID (and the other *_GET_FD_BY_ID).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct bpf_attr_get_id {
    pub id: u32,
    pub next_id: u32,
    pub open_flags: u32,
}

/// `union bpf_attr` for BPF_LINK_CREATE (the common head; no target-specific tail).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct bpf_attr_link_create {
    pub prog_fd: u32,
    pub target_ifindex: u32,
    pub attach_type: u32,
    pub flags: u32,
}

const _: () = assert!(size_of::<bpf_insn>() == 8);
const _: () = assert!(size_of::<bpf_attr_map_elem>() == 32);
const _: () = assert!(std::mem::offset_of!(bpf_attr_prog_load, prog_name) == 48);
const _: () = assert!(std::mem::offset_of!(bpf_attr_prog_load, expected_attach_type) == 68);
const _: () = assert!(std::mem::offset_of!(bpf_attr_map_create, map_name) == 28);
const _: () = assert!(std::mem::offset_of!(bpf_prog_info_maps, nr_map_ids) == 52);
const _: () = assert!(size_of::<bpf_prog_info_maps>() == 64);
/// `BPF_LD | BPF_W | BPF_ABS` and friends, for the user-space filter (`include/uapi/linux/bpf_common.h`).
pub const BPF_LD: u16 = 0x00;
pub const BPF_LDX: u16 = 0x01;
pub const BPF_ST: u16 = 0x02;
pub const BPF_STX: u16 = 0x03;
pub const BPF_ALU: u16 = 0x04;
pub const BPF_JMP: u16 = 0x05;
pub const BPF_MISC: u16 = 0x07;
pub const BPF_SIZE_MASK: u16 = 0x18;
pub const BPF_W: u16 = 0x00;
pub const BPF_H: u16 = 0x08;
pub const BPF_B: u16 = 0x10;
pub const BPF_MODE_MASK: u16 = 0xe0;
pub const BPF_IMM: u16 = 0x00;
pub const BPF_ABS: u16 = 0x20;
pub const BPF_IND: u16 = 0x40;
pub const BPF_MEM: u16 = 0x60;
pub const BPF_LEN: u16 = 0x80;
pub const BPF_MSH: u16 = 0xa0;
pub const BPF_OP_MASK: u16 = 0xf0;
pub const BPF_ADD: u16 = 0x00;
pub const BPF_SUB: u16 = 0x10;
pub const BPF_MUL: u16 = 0x20;
pub const BPF_DIV: u16 = 0x30;
pub const BPF_OR: u16 = 0x40;
pub const BPF_AND: u16 = 0x50;
pub const BPF_LSH: u16 = 0x60;
pub const BPF_RSH: u16 = 0x70;
pub const BPF_NEG: u16 = 0x80;
pub const BPF_MOD: u16 = 0x90;
pub const BPF_XOR: u16 = 0xa0;
pub const BPF_JA: u16 = 0x00;
pub const BPF_JEQ: u16 = 0x10;
pub const BPF_JGT: u16 = 0x20;
pub const BPF_JGE: u16 = 0x30;
pub const BPF_JSET: u16 = 0x40;
pub const BPF_X: u16 = 0x08;
pub const BPF_A: u16 = 0x10;
pub const BPF_TAX: u16 = 0x00;
pub const BPF_TXA: u16 = 0x80;
/// Scratch memory words of a classic BPF program (`BPF_MEMWORDS`).
pub const BPF_MEMWORDS: usize = 16;
/// Loads at `SKF_AD_OFF + n` read socket-buffer metadata (`include/uapi/linux/filter.h`).
pub const SKF_AD_OFF: u32 = (-0x1000i32) as u32;
pub const SKF_AD_PROTOCOL: u32 = 0;
pub const SKF_AD_PKTTYPE: u32 = 4;
pub const SKF_AD_IFINDEX: u32 = 8;
pub const SKF_AD_VLAN_TAG: u32 = 44;
pub const SKF_AD_VLAN_TAG_PRESENT: u32 = 48;
pub const SKF_AD_VLAN_TPID: u32 = 60;

/// Most iovecs one `writev` takes (`UIO_MAXIOV` in include/uapi/linux/uio.h).
pub const UIO_MAXIOV: usize = 1024;

/// `SIOCETHTOOL` (include/uapi/linux/sockios.h) and `ETHTOOL_GDRVINFO`
/// (include/uapi/linux/ethtool.h): the driver behind an interface, as `ethtool -i` shows it.
pub const SIOCETHTOOL: libc::c_ulong = 0x8946;
pub const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;

/// `struct ethtool_drvinfo`.
#[repr(C)]
pub struct ethtool_drvinfo {
    pub cmd: u32,
    pub driver: [u8; 32],
    pub version: [u8; 32],
    pub fw_version: [u8; 32],
    pub bus_info: [u8; 32],
    pub erom_version: [u8; 32],
    pub reserved2: [u8; 12],
    pub n_priv_flags: u32,
    pub n_stats: u32,
    pub testinfo_len: u32,
    pub eedump_len: u32,
    pub regdump_len: u32,
}

/// `struct ifreq` with its `ifr_data` member, as SIOCETHTOOL reads it.
#[repr(C)]
pub struct ifreq_data {
    pub ifr_name: [u8; libc::IFNAMSIZ],
    pub ifr_data: *mut libc::c_void,
    pub _pad: [u8; 16],
}

const _: () = assert!(size_of::<ethtool_drvinfo>() == 196);
const _: () = assert!(size_of::<ifreq_data>() == 40);
const _: () = assert!(VIRTIO_NET_HDR_LEN == 10);
