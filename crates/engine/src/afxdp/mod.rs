//! AF_XDP: sockets, UMEM and frame ownership, rings, and the XDP program that steers packets in.

pub mod bpf;
pub mod config;
pub mod program;
pub mod ring;
pub mod socket;
pub mod umem;
