//! netring engine: AF_PACKET TPACKET_V3 rings for Linux.
//!
//! Layers, bottom up: `ffi` (every kernel struct and constant), `syscall` (EINTR-safe calls),
//! `afpacket` (sockets, rings, block walking, fanout, filters, capture), `reactor` (waiting
//! without blocking the caller). Nothing here knows about JavaScript.

pub mod afpacket;
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
pub use afpacket::injector::{Injector, InjectorOptions, InjectorStats};
pub use afpacket::ring::{Mapping, RingGeometry, TX_DATA_OFFSET};
pub use error::{Errno, Error, Result, Subject};
