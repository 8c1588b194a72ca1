//! AF_XDP: sockets, UMEM and frame ownership, rings, and the XDP program that steers packets in.

pub mod bpf;
pub mod config;
pub mod program;
pub mod ring;
pub mod socket;
pub mod umem;

/// Whether the tests that need the kernel's BPF and AF_XDP can run (as root); CI always can.
#[cfg(test)]
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(root || std::env::var_os("CI").is_none(), "CI runs these tests as root");
    root
}
