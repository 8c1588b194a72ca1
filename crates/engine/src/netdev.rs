//! Facts about a network interface that sysfs does not show, asked of its driver.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

use crate::error::{Error, Result, Subject};
use crate::ffi;

/// The name of the driver behind `interface` (`veth`, `virtio_net`, ...), as `ethtool -i`
/// reports it (`ETHTOOL_GDRVINFO`). Works for virtual devices, which have no driver link in
/// sysfs. `None` when the device answers no ethtool requests (EOPNOTSUPP).
pub fn driver_name(interface: &str) -> Result<Option<String>> {
    let subject = || Subject::Interface(interface.to_string());
    if interface.is_empty() || interface.len() >= libc::IFNAMSIZ {
        return Err(Error::new(Errno::EINVAL, subject(), format!("'{interface}' is not an interface name")));
    }
    // SAFETY: a plain datagram socket, owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(Error::last("socket", subject(), "opening a socket for SIOCETHTOOL"));
    }
    // SAFETY: `fd` was just returned by socket() and is owned by nothing else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: all-zero is a valid value of these plain C structs.
    let mut info: ffi::ethtool_drvinfo = unsafe { std::mem::zeroed() };
    info.cmd = ffi::ETHTOOL_GDRVINFO;
    let mut req = ffi::ifreq_data { ifr_name: [0; libc::IFNAMSIZ], ifr_data: std::ptr::null_mut(), _pad: [0; 16] };
    req.ifr_name[..interface.len()].copy_from_slice(interface.as_bytes());
    req.ifr_data = (&mut info as *mut ffi::ethtool_drvinfo).cast();
    // SAFETY: SIOCETHTOOL reads the request and writes `info`, both alive for the call.
    if unsafe { libc::ioctl(socket.as_raw_fd(), ffi::SIOCETHTOOL as _, &mut req) } < 0 {
        return match Errno::last() {
            Errno::EOPNOTSUPP => Ok(None),
            e => {
                Err(Error::sys(e, "ioctl", subject(), format!("asking the driver of '{interface}' (ETHTOOL_GDRVINFO)")))
            }
        };
    }
    let end = info.driver.iter().position(|&b| b == 0).unwrap_or(info.driver.len());
    Ok(Some(String::from_utf8_lossy(&info.driver[..end]).into_owned()).filter(|d| !d.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_answers_and_unknown_interfaces_are_enodev() {
        // lo has no ethtool driver info on every kernel; it must not be an error either way.
        assert!(driver_name("lo").is_ok());
        assert_eq!(driver_name("nosuchif9").unwrap_err().errno, Errno::ENODEV);
        assert_eq!(driver_name("").unwrap_err().errno, Errno::EINVAL);
    }
}
