//! One background thread that waits on many sockets at once (epoll) and runs a one-shot
//! callback when a socket becomes ready.
//!
//! Why a thread of our own: waiting for packets must never block the caller's thread (the
//! JavaScript thread, for the binding), and parking each wait on a thread-pool thread would
//! starve the pool with a few captures. One epoll thread serves every socket of the process.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use nix::errno::Errno;

use crate::error::{Error, Result, Subject};

/// What a waiter is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// The socket reported these `EPOLL*` events (readable, error or hang-up).
    Ready(u32),
    /// The wait was withdrawn (the socket is closing).
    Cancelled,
}

pub type Callback = Box<dyn FnOnce(Readiness) + Send>;

/// Identifies one armed wait. Tokens are never reused, so a late event for a withdrawn wait
/// cannot reach a newer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token(u64);

struct Entry {
    fd: RawFd,
    callback: Callback,
}

pub struct Reactor {
    epoll: OwnedFd,
    entries: Mutex<HashMap<u64, Entry>>,
    next_token: AtomicU64,
}

impl Reactor {
    /// The process-wide reactor, started on first use. A failed start is not remembered: it
    /// fails for want of a resource (EMFILE under a low `ulimit -n`, no thread), so the next
    /// call tries again once the resource may be back.
    pub fn global() -> Result<&'static Reactor> {
        static GLOBAL: OnceLock<&'static Reactor> = OnceLock::new();
        static STARTING: Mutex<()> = Mutex::new(());
        if let Some(reactor) = GLOBAL.get() {
            return Ok(reactor);
        }
        let _starting = STARTING.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(reactor) = GLOBAL.get() {
            return Ok(reactor);
        }
        let reactor = Reactor::start()?;
        Ok(GLOBAL.get_or_init(|| reactor))
    }

    fn start() -> Result<&'static Reactor> {
        // SAFETY: plain epoll_create1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(Error::last("epoll_create1", Subject::None, "starting the wait thread"));
        }
        // SAFETY: fresh descriptor.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        // Lives as long as the process once the thread below runs: it holds it forever.
        let reactor: &'static Reactor =
            Box::leak(Box::new(Reactor { epoll, entries: Mutex::new(HashMap::new()), next_token: AtomicU64::new(1) }));
        if let Err(e) = std::thread::Builder::new().name("netring-reactor".into()).spawn(move || reactor.run()) {
            // SAFETY: the thread never started, so nothing else refers to the leaked box; taking
            // it back closes the epoll descriptor.
            drop(unsafe { Box::from_raw(reactor as *const Reactor as *mut Reactor) });
            return Err(Error::new(Errno::EAGAIN, Subject::None, format!("starting the wait thread: {e}")));
        }
        Ok(reactor)
    }

    /// Calls `callback` once, from the reactor thread, when `fd` reports `events` (error and
    /// hang-up are always reported). The fd must stay open until the callback ran or `disarm`
    /// returned it.
    pub fn arm(&self, fd: RawFd, events: u32, callback: Callback) -> Result<Token> {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut ev = libc::epoll_event { events: events | libc::EPOLLONESHOT as u32, u64: token };
        // SAFETY: valid epoll fd and event.
        if unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
            return Err(Error::last("epoll_ctl", Subject::None, "waiting for the socket"));
        }
        entries.insert(token, Entry { fd, callback });
        Ok(Token(token))
    }

    /// Withdraws a wait that has not fired yet and hands its callback back.
    pub fn disarm(&self, token: Token) -> Option<Callback> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.remove(&token.0)?;
        self.forget(entry.fd);
        Some(entry.callback)
    }

    /// One wait per socket, held in `wait`: withdraws the previous one (telling it `Cancelled`)
    /// and arms `callback` for `events` (error and hang-up always included).
    pub fn rearm(wait: &mut Option<Token>, fd: RawFd, events: u32, callback: Callback) -> Result<()> {
        if let Some(previous) = Self::withdraw(wait) {
            previous(Readiness::Cancelled);
        }
        let events = events | (libc::EPOLLERR | libc::EPOLLHUP) as u32;
        *wait = Some(Reactor::global()?.arm(fd, events, callback)?);
        Ok(())
    }

    /// Withdraws the wait held in `wait`, if it has not fired, and hands its callback back.
    pub fn withdraw(wait: &mut Option<Token>) -> Option<Callback> {
        let token = wait.take()?;
        Reactor::global().ok()?.disarm(token)
    }

    fn forget(&self, fd: RawFd) {
        // SAFETY: removing a registration; the fd is still open (callers guarantee it).
        unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
    }

    fn run(&self) {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
        loop {
            // SAFETY: valid buffer of 64 events.
            let n = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), events.len() as i32, -1) };
            if n < 0 {
                if Errno::last() == Errno::EINTR {
                    continue;
                }
                return;
            }
            for ev in &events[..n as usize] {
                let (token, mask) = (ev.u64, ev.events);
                self.fire(token, mask);
            }
        }
    }

    fn fire(&self, token: u64, events: u32) {
        let entry = {
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            let Some(entry) = entries.remove(&token) else {
                return;
            };
            // Removed under the lock, so `disarm` + close cannot race with this DEL.
            self.forget(entry.fd);
            entry
        };
        (entry.callback)(Readiness::Ready(events));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn fires_once_when_readable() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let (tx, rx) = mpsc::channel();
        Reactor::global()
            .unwrap()
            .arm(r.as_raw_fd(), libc::EPOLLIN as u32, Box::new(move |x| tx.send(x).unwrap()))
            .unwrap();
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err(), "nothing to read yet");
        nix::unistd::write(&w, b"x").unwrap();
        match rx.recv_timeout(Duration::from_secs(5)).unwrap() {
            Readiness::Ready(m) => assert_ne!(m & libc::EPOLLIN as u32, 0),
            other => panic!("{other:?}"),
        }
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err(), "one-shot");
    }

    #[test]
    fn disarm_returns_the_callback_and_it_never_fires() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let (tx, rx) = mpsc::channel();
        let reactor = Reactor::global().unwrap();
        let token = reactor.arm(r.as_raw_fd(), libc::EPOLLIN as u32, Box::new(move |x| tx.send(x).unwrap())).unwrap();
        let cb = reactor.disarm(token).expect("not fired yet");
        nix::unistd::write(&w, b"x").unwrap();
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
        cb(Readiness::Cancelled);
        assert_eq!(rx.recv().unwrap(), Readiness::Cancelled);
        assert!(reactor.disarm(token).is_none());
    }
}
