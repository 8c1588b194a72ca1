//! Waiting for sockets: as a promise settled from the engine's reactor thread (never blocking
//! the JavaScript thread), or blocking on several sockets at once for synchronous loops over
//! more than one ring (`Bridge.runSync`).

use std::time::Duration;

use napi::bindgen_prelude::Object;
use napi::{Env, Result};
use netring_engine::reactor::{Callback, Readiness};
use netring_engine::{syscall, Error, Subject};

use crate::error::{to_napi, OrThrow};

/// A `Promise<number>` that resolves with the epoll events (> 0) once `arm`'s wait fires, or
/// with 0 when the wait is withdrawn. `arm` hands the callback to an engine object's `arm_wait`.
pub fn readiness_promise<'env>(
    env: &'env Env,
    arm: impl FnOnce(Callback) -> netring_engine::Result<()>,
) -> Result<Object<'env>> {
    type Resolver = Box<dyn FnOnce(Env) -> Result<u32> + Send>;
    let (deferred, promise) = env.create_deferred::<u32, Resolver>()?;
    arm(Box::new(move |readiness| {
        let events = match readiness {
            Readiness::Ready(events) => events.max(1),
            Readiness::Cancelled => 0,
        };
        deferred.resolve(Box::new(move |_| Ok(events)));
    }))
    .or_throw()?;
    Ok(promise)
}

/// A timeout in milliseconds from JavaScript: negative or NaN is 0; Infinity, or anything too
/// large for a Duration, is no limit (converting it would panic and abort the process).
pub fn timeout_from_ms(ms: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(ms.max(0.0) / 1000.0).ok()
}

/// Blocks the calling thread until one of `fds` is readable or reports an error, or until
/// `timeoutMs` passes. Returns whether one did.
#[napi]
pub fn wait_any_readable(fds: Vec<i32>, timeout_ms: f64) -> Result<bool> {
    let mut pfds: Vec<libc::pollfd> =
        fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
    let ready = syscall::poll_all(&mut pfds, timeout_from_ms(timeout_ms))
        .map_err(|e| to_napi(Error::sys(e, "poll", Subject::None, "waiting for packets on several sockets")))?;
    Ok(ready > 0)
}
