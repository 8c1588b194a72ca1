//! Blocking on several sockets at once, for synchronous loops over more than one ring
//! (`Bridge.runSync`). Asynchronous waits go through the engine's reactor instead.

use std::time::Duration;

use napi::Result;
use netring_engine::{syscall, Error, Subject};

use crate::error::to_napi;

/// Blocks the calling thread until one of `fds` is readable or reports an error, or until
/// `timeoutMs` passes. Returns whether one did.
#[napi]
pub fn wait_any_readable(fds: Vec<i32>, timeout_ms: f64) -> Result<bool> {
    let mut pfds: Vec<libc::pollfd> =
        fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
    let timeout = Duration::from_secs_f64(timeout_ms.max(0.0) / 1000.0);
    let ready = syscall::poll_all(&mut pfds, Some(timeout))
        .map_err(|e| to_napi(Error::sys(e, "poll", Subject::None, "waiting for packets on several sockets")))?;
    Ok(ready > 0)
}
