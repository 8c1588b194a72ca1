//! Thin, EINTR-safe wrappers over the few system calls whose raw form needs care.

use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;

/// `setsockopt` with a plain-old-data value.
pub fn setsockopt<T>(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int, value: &T) -> Result<(), Errno> {
    // SAFETY: `value` points to `size_of::<T>()` initialised bytes for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(fd.as_raw_fd(), level, name, (value as *const T).cast(), size_of::<T>() as libc::socklen_t)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(Errno::last())
    }
}

/// `getsockopt` into a plain-old-data value; fails with EINVAL if the kernel returns fewer bytes.
pub fn getsockopt<T: Copy>(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int) -> Result<T, Errno> {
    let mut value = MaybeUninit::<T>::zeroed();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `value`.
    let rc = unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, value.as_mut_ptr().cast(), &mut len) };
    if rc != 0 {
        return Err(Errno::last());
    }
    if (len as usize) < size_of::<T>() {
        return Err(Errno::EINVAL);
    }
    // SAFETY: zero-initialised and then fully written by the kernel; T is plain old data.
    Ok(unsafe { value.assume_init() })
}

/// Waits for `events` on `fd`. Returns the returned events (empty on timeout).
///
/// EINTR is retried with what remains of the timeout, not with the whole timeout again: a
/// process that receives signals often would otherwise never time out.
pub fn poll(fd: BorrowedFd<'_>, events: libc::c_short, timeout: Option<Duration>) -> Result<libc::c_short, Errno> {
    let mut pfd = [libc::pollfd { fd: fd.as_raw_fd(), events, revents: 0 }];
    poll_all(&mut pfd, timeout)?;
    Ok(pfd[0].revents)
}

/// Waits for the events of any of `fds` (each `revents` is filled in); returns how many fds
/// reported something, 0 on timeout. EINTR is retried on the remaining timeout.
pub fn poll_all(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> Result<usize, Errno> {
    // A deadline past what an Instant can hold is no deadline: checked_add, never a panic.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let ms: libc::c_int = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Round up so a sub-millisecond remainder waits instead of spinning.
                left.as_micros().div_ceil(1000).min(libc::c_int::MAX as u128) as libc::c_int
            }
        };
        // SAFETY: a valid slice of pollfd.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        match rc {
            n if n >= 0 => return Ok(n as usize),
            _ => match Errno::last() {
                Errno::EINTR => continue,
                e => return Err(e),
            },
        }
    }
}

/// The pending socket error (`SO_ERROR`), which reading clears.
pub fn take_socket_error(fd: BorrowedFd<'_>) -> Result<Option<Errno>, Errno> {
    let err: libc::c_int = getsockopt(fd, libc::SOL_SOCKET, libc::SO_ERROR)?;
    Ok((err != 0).then(|| Errno::from_raw(err)))
}

/// `sendto(fd, NULL, 0, flags, NULL, 0)`, the kick that makes the kernel walk a TX ring.
/// EINTR is retried; every other error is returned for the caller to classify.
pub fn kick(fd: BorrowedFd<'_>, flags: libc::c_int) -> Result<usize, Errno> {
    loop {
        // SAFETY: a zero-length send with no buffer and no address is valid on a packet socket.
        let rc = unsafe { libc::sendto(fd.as_raw_fd(), std::ptr::null(), 0, flags, std::ptr::null(), 0) };
        if rc >= 0 {
            return Ok(rc as usize);
        }
        match Errno::last() {
            Errno::EINTR => continue,
            e => return Err(e),
        }
    }
}

/// Writes every byte of `iov` (at most `UIO_MAXIOV` entries), retrying on EINTR and after
/// short writes. The entries are advanced in place past what was written.
///
/// Blocking even on a non-blocking descriptor: Node leaves a piped stdout `O_NONBLOCK` (a flag
/// of the open file, shared by our `dup`), and giving up with EAGAIN part-way through a record
/// would leave a torn file; so EAGAIN waits until the descriptor takes more, as a blocking
/// write does.
pub fn writev_all(fd: BorrowedFd<'_>, mut iov: &mut [libc::iovec]) -> Result<(), Errno> {
    while !iov.is_empty() {
        // SAFETY: every iovec points at memory the caller keeps alive for this call.
        let rc = unsafe { libc::writev(fd.as_raw_fd(), iov.as_ptr(), iov.len() as libc::c_int) };
        if rc < 0 {
            match Errno::last() {
                Errno::EINTR => continue,
                Errno::EAGAIN => {
                    // POLLERR/POLLHUP end the wait too; the next writev then reports them (EPIPE).
                    poll(fd, libc::POLLOUT, None)?;
                    continue;
                }
                e => return Err(e),
            }
        }
        let mut done = rc as usize;
        while let Some(first) = iov.first_mut() {
            if done < first.iov_len {
                // SAFETY: stays inside the same buffer.
                first.iov_base = unsafe { first.iov_base.cast::<u8>().add(done) }.cast();
                first.iov_len -= done;
                break;
            }
            done -= first.iov_len;
            iov = &mut iov[1..];
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn writev_all_waits_out_a_full_non_blocking_pipe() {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK).unwrap();
        let data = vec![7u8; 1 << 20]; // more than a pipe holds
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = [0u8; 65536];
            while got.len() < 1 << 20 {
                // Non-blocking too: wait for data, then read what is there.
                poll(r.as_fd(), libc::POLLIN, None).unwrap();
                match nix::unistd::read(&r, &mut buf) {
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(Errno::EAGAIN) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            got
        });
        let mut iov = [libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() }];
        writev_all(w.as_fd(), &mut iov).unwrap();
        assert_eq!(reader.join().unwrap(), data);
    }

    #[test]
    fn poll_times_out_after_roughly_the_timeout() {
        let (r, _w) = nix::unistd::pipe().unwrap();
        let t0 = Instant::now();
        let rev = poll(r.as_fd(), libc::POLLIN, Some(Duration::from_millis(30))).unwrap();
        assert_eq!(rev, 0);
        assert!(t0.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn poll_reports_readiness() {
        let (r, w) = nix::unistd::pipe().unwrap();
        nix::unistd::write(&w, b"x").unwrap();
        let rev = poll(r.as_fd(), libc::POLLIN, Some(Duration::from_millis(1000))).unwrap();
        assert_ne!(rev & libc::POLLIN, 0);
    }
}
