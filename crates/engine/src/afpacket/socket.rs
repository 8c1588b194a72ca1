//! An AF_PACKET socket and the options the rings need, each call turned into an engine error
//! that names the interface and says what was being done.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

use crate::error::{Error, Result, Subject};
use crate::ffi;
use crate::syscall;

use super::filter::BpfProgram;

/// A network interface, resolved once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
}

impl Interface {
    pub fn resolve(name: &str) -> Result<Interface> {
        let subject = Subject::Interface(name.to_string());
        if name.is_empty()
            || name.len() >= libc::IFNAMSIZ
            || name.contains(['/', '\0'])
            || name.contains(char::is_whitespace)
        {
            return Err(Error::new(
                Errno::EINVAL,
                subject,
                format!(
                    "'{name}' is not a valid interface name (1 to {} bytes, no '/', NUL or spaces)",
                    libc::IFNAMSIZ - 1
                ),
            ));
        }
        let c = CString::new(name).expect("checked for NUL above");
        // SAFETY: a valid C string.
        let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
        if index == 0 {
            let errno = Errno::last();
            let doing = format!("looking up interface '{name}'");
            // glibc's if_nametoindex needs a socket of its own, and when it cannot get one the
            // errno it leaves is not the reason (ENOENT from its fallbacks): out of descriptors
            // would read as "no such device". Open one ourselves to learn the real reason.
            if errno != Errno::ENODEV {
                // SAFETY: plain socket(); closed right away.
                let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
                if fd < 0 {
                    return Err(Error::last("socket", subject, doing));
                }
                // SAFETY: our own descriptor.
                unsafe { libc::close(fd) };
            }
            return Err(Error::sys(errno, "if_nametoindex", subject, doing));
        }
        Ok(Interface { name: name.to_string(), index })
    }

    pub fn subject(&self) -> Subject {
        Subject::Interface(self.name.clone())
    }

    /// Whether the interface still exists under the same index (it may have been deleted, or
    /// deleted and re-created). Allocates nothing: the AF_XDP socket asks this from its receive and send paths.
    pub fn still_exists(&self) -> bool {
        let mut c_name = [0u8; libc::IFNAMSIZ + 1];
        let bytes = self.name.as_bytes();
        if bytes.len() >= c_name.len() || bytes.contains(&0) {
            return false;
        }
        c_name[..bytes.len()].copy_from_slice(bytes);
        // SAFETY: a NUL-terminated name in a local buffer.
        unsafe { libc::if_nametoindex(c_name.as_ptr().cast()) == self.index }
    }

    /// The interface MTU, from sysfs.
    pub fn mtu(&self) -> Option<u32> {
        std::fs::read_to_string(format!("/sys/class/net/{}/mtu", self.name)).ok()?.trim().parse().ok()
    }
}

/// An AF_PACKET SOCK_RAW socket.
pub struct PacketSocket {
    fd: OwnedFd,
    subject: Subject,
}

impl PacketSocket {
    /// Opens a socket with protocol 0: it receives nothing until `bind` names a protocol, so no
    /// packet can reach it before its ring, filter and interface are set.
    pub fn open(iface: &Interface) -> Result<PacketSocket> {
        // SAFETY: plain socket(2).
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(Error::last(
                "socket",
                iface.subject(),
                format!("opening a packet socket for '{}'", iface.name),
            ));
        }
        // SAFETY: a fresh descriptor we own.
        Ok(PacketSocket { fd: unsafe { OwnedFd::from_raw_fd(fd) }, subject: iface.subject() })
    }

    pub fn subject(&self) -> &Subject {
        &self.subject
    }

    pub fn set<T>(&self, level: libc::c_int, name: libc::c_int, value: &T, what: &str) -> Result<()> {
        syscall::setsockopt(self.fd.as_fd(), level, name, value)
            .map_err(|e| Error::sys(e, "setsockopt", self.subject.clone(), format!("setting {what}")))
    }

    pub fn set_version_v3(&self) -> Result<()> {
        self.set(ffi::SOL_PACKET, ffi::PACKET_VERSION, &ffi::TPACKET_V3, "PACKET_VERSION to TPACKET_V3")
    }

    /// Headroom in front of every frame (used to re-insert VLAN tags without copying).
    pub fn set_reserve(&self, bytes: u32) -> Result<()> {
        self.set(ffi::SOL_PACKET, ffi::PACKET_RESERVE, &bytes, "PACKET_RESERVE")
    }

    pub fn set_ring(&self, which: libc::c_int, req: &ffi::tpacket_req3) -> std::result::Result<(), Errno> {
        syscall::setsockopt(self.fd.as_fd(), ffi::SOL_PACKET, which, req)
    }

    pub fn attach_filter(&self, program: &BpfProgram) -> Result<()> {
        let insns = program.instructions();
        let prog = ffi::sock_fprog { len: insns.len() as u16, filter: insns.as_ptr() };
        syscall::setsockopt(self.fd.as_fd(), libc::SOL_SOCKET, ffi::SO_ATTACH_FILTER, &prog).map_err(|e| {
            let e = Error::sys(e, "setsockopt", Subject::Option("filter"), "attaching the BPF filter (SO_ATTACH_FILTER)");
            if e.errno == Errno::EINVAL {
                e.with_hint("the kernel refused the program: check it with `tcpdump -d <expression>`, jumps must stay inside it and it must end in a return")
            } else {
                e
            }
        })
    }

    pub fn set_promiscuous(&self, ifindex: u32) -> Result<()> {
        // A membership (not SIOCSIFFLAGS) so the kernel drops it when the socket closes.
        let mreq =
            ffi::packet_mreq { mr_ifindex: ifindex as i32, mr_type: ffi::PACKET_MR_PROMISC, ..Default::default() };
        self.set(ffi::SOL_PACKET, ffi::PACKET_ADD_MEMBERSHIP, &mreq, "promiscuous mode (PACKET_ADD_MEMBERSHIP)")
    }

    /// Binds to one interface and one protocol; from here on the kernel delivers packets.
    pub fn bind(&self, ifindex: u32, protocol: u16) -> Result<()> {
        // SAFETY: zeroed sockaddr_ll is valid; only the fields below matter to bind().
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = protocol.to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: a valid sockaddr_ll of the right length.
        let rc = unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(Error::last("bind", self.subject.clone(), "binding the packet socket to the interface"));
        }
        Ok(())
    }

    /// Reads and resets the kernel counters.
    pub fn take_stats(&self) -> Result<ffi::tpacket_stats_v3> {
        syscall::getsockopt(self.fd.as_fd(), ffi::SOL_PACKET, ffi::PACKET_STATISTICS)
            .map_err(|e| Error::sys(e, "getsockopt", self.subject.clone(), "reading PACKET_STATISTICS"))
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}
