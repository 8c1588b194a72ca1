//! netring engine: AF_PACKET TPACKET_V3 rings and AF_XDP sockets for Linux.
//!
//! Layers, bottom up: `ffi` (every kernel struct and constant), `syscall` (EINTR-safe calls),
//! `afpacket` (sockets, rings, block walking, fanout, filters, capture), `afxdp` (UMEM,
//! XDP rings, the built-in XDP program), `reactor` (waiting
//! without blocking the caller). Nothing here knows about JavaScript.

pub mod affinity;
pub mod afpacket;
pub mod afxdp;
pub mod error;
pub mod ffi;
pub mod libpcap;
pub mod netdev;
pub mod pcapfile;
pub mod reactor;
pub mod syscall;

pub use afpacket::block::{BlockInfo, PacketDesc};
pub use afpacket::capture::{Batch, Capture, CaptureStats};
pub use afpacket::config::{CaptureConfig, CaptureOptions, Profile, TimestampSource};
pub use afpacket::fanout::{FanoutConfig, FanoutFlags, FanoutMode};
pub use afpacket::filter::BpfProgram;
pub use afpacket::injector::{Injector, InjectorOptions, InjectorStats, RefusedFrame, Rejection};
pub use afpacket::ring::{Mapping, RingGeometry, TX_DATA_OFFSET};
pub use afxdp::config::{XdpMode, XdpOptions, ZeroCopy};
pub use afxdp::program::{AttachMode, ProgramChoice, XskMapSource};
pub use afxdp::socket::{XdpInfo, XdpSocket, XdpStats};
pub use error::{Errno, Error, Result, Subject};
