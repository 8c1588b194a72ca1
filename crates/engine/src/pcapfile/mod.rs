//! Capture files: pcap (microsecond and nanosecond) and pcapng, written in the layouts that
//! tcpdump and Wireshark read (the pcap format of pcap-savefile(5), and pcapng as in
//! draft-ietf-opsawg-pcapng). Everything is written in host byte order, as libpcap does; the
//! magic numbers tell readers which order that is.

pub mod writer;

pub use writer::{FileFormat, FileInterface, PcapWriter, Record};

/// pcap magic with microsecond timestamps.
pub const PCAP_MAGIC_MICROS: u32 = 0xa1b2_c3d4;
/// pcap magic with nanosecond timestamps.
pub const PCAP_MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// libpcap's link type for Ethernet (`LINKTYPE_ETHERNET`).
pub const LINKTYPE_ETHERNET: u16 = 1;

/// pcapng block types.
pub const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
pub const PCAPNG_IDB: u32 = 1;
pub const PCAPNG_ISB: u32 = 5;
pub const PCAPNG_EPB: u32 = 6;
pub const PCAPNG_BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
/// Option codes.
pub const OPT_END: u16 = 0;
pub const OPT_SHB_USERAPPL: u16 = 4;
pub const OPT_IF_NAME: u16 = 2;
pub const OPT_IF_TSRESOL: u16 = 9;
pub const OPT_EPB_FLAGS: u16 = 2;
pub const OPT_ISB_IFRECV: u16 = 4;
pub const OPT_ISB_IFDROP: u16 = 5;
/// `epb_flags` direction bits (0-1) and reception type (2-4).
pub const EPB_INBOUND: u32 = 1;
pub const EPB_OUTBOUND: u32 = 2;
pub const EPB_UNICAST: u32 = 1 << 2;
pub const EPB_MULTICAST: u32 = 2 << 2;
pub const EPB_BROADCAST: u32 = 3 << 2;
pub const EPB_PROMISCUOUS: u32 = 4 << 2;
