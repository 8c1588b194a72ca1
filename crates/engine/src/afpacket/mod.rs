//! AF_PACKET: sockets, TPACKET_V3 rings, block walking, fanout and filters.

pub mod block;
pub mod capture;
pub mod config;
pub mod fanout;
pub mod filter;
pub mod injector;
pub mod offload;
pub mod ring;
#[cfg(test)]
mod ring_invariants;
pub mod socket;
pub mod user_filter;
