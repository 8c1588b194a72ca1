//! Waiting for sockets: as a promise settled from the engine's reactor thread (never blocking
//! the JavaScript thread), or blocking on several sockets at once for synchronous loops over
//! more than one ring (`Bridge.runSync`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use napi::bindgen_prelude::Object;
use napi::JsDeferred;
use napi::{sys, Env, Result};
use netring_engine::reactor::{Callback, Readiness};
use netring_engine::{syscall, Error, Subject};

use crate::error::to_js_error;

/// A timeout in milliseconds from JavaScript as a wait's limit, total over every f64: `None`
/// (no limit) when omitted, infinite or beyond what a `Duration` holds; NaN and negatives wait
/// not at all. The facade refuses NaN and negatives with EINVAL first; this only guarantees
/// that no number can make the conversion panic.
pub fn timeout_from_ms(ms: Option<f64>) -> Option<Duration> {
    let ms = ms?;
    if ms.is_nan() || ms <= 0.0 {
        return Some(Duration::ZERO);
    }
    Duration::try_from_secs_f64(ms / 1000.0).ok()
}

/// The longest a blocking wait sleeps before it checks whether its thread is being stopped.
const WAIT_SLICE: Duration = Duration::from_millis(50);

/// Runs a blocking wait (`wait`: true once ready) in slices of at most `WAIT_SLICE`, for at
/// most `timeout` (`None`: no limit), and gives up with `Ok(false)` as soon as Node is stopping
/// the thread. `worker.terminate()` and `process.exit()` (which stops every worker first) wait
/// for a blocked thread to come back, and no hook of Node runs on another thread to wake it:
/// Node marks the environment as stopping, which we can only see from this thread.
pub fn interruptible(
    env: &Env,
    timeout: Option<Duration>,
    mut wait: impl FnMut(Option<Duration>) -> Result<bool>,
) -> Result<bool> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let slice = left.map_or(WAIT_SLICE, |l| l.min(WAIT_SLICE));
        if wait(Some(slice))? {
            return Ok(true);
        }
        if left.is_some_and(|l| l <= slice) || stopping(env) {
            return Ok(false);
        }
    }
}

/// Whether Node is stopping this thread's environment (worker.terminate(), process.exit()).
/// Node-API calls that may run JavaScript refuse once it is (`can_call_into_js()` is false); a
/// coercion of a boolean is the cheapest such call and runs no JavaScript.
fn stopping(env: &Env) -> bool {
    let mut value = std::ptr::null_mut();
    let mut coerced = std::ptr::null_mut();
    // SAFETY: plain Node-API calls on this thread's env.
    unsafe {
        sys::napi_get_boolean(env.raw(), true, &mut value) != sys::Status::napi_ok
            || sys::napi_coerce_to_bool(env.raw(), value, &mut coerced) != sys::Status::napi_ok
    }
}

/// A `Promise<number>` that resolves with the epoll events (> 0) once `arm`'s wait fires, or
/// with 0 when the wait is withdrawn. `arm` hands the callback to an engine object's `arm_wait`.
pub fn readiness_promise<'env>(
    env: &'env Env,
    arm: impl FnOnce(Callback) -> netring_engine::Result<()>,
) -> Result<Object<'env>> {
    type Resolver = Box<dyn FnOnce(Env) -> Result<u32> + Send>;
    let (deferred, promise) = env.create_deferred::<u32, Resolver>()?;
    // Shared with the callback, so that a wait that could not be armed can still be settled:
    // an unsettled deferred keeps its threadsafe function, and with it the event loop, alive.
    let slot = Arc::new(Mutex::new(Some(deferred)));
    let settle = |slot: &Mutex<Option<JsDeferred<u32, Resolver>>>, events: u32| {
        if let Some(deferred) = slot.lock().unwrap_or_else(|p| p.into_inner()).take() {
            deferred.resolve(Box::new(move |_| Ok(events)) as Resolver);
        }
    };
    let armed = {
        let slot = slot.clone();
        arm(Box::new(move |readiness| {
            let events = match readiness {
                Readiness::Ready(events) => events.max(1),
                Readiness::Cancelled => 0,
            };
            settle(&slot, events);
        }))
    };
    if let Err(e) = armed {
        // Nobody holds this promise (the error is thrown instead): resolving it releases it.
        settle(&slot, 0);
        return Err(to_js_error(env, e));
    }
    Ok(promise)
}

/// Blocks the calling thread until one of `fds` is readable or reports an error, or until
/// `timeoutMs` passes. Returns whether one did.
#[napi(catch_unwind)]
pub fn wait_any_readable(env: &Env, fds: Vec<i32>, timeout_ms: f64) -> Result<bool> {
    let mut pfds: Vec<libc::pollfd> =
        fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
    let timeout = timeout_from_ms(Some(timeout_ms));
    let ready = syscall::poll_all(&mut pfds, timeout).map_err(|e| {
        to_js_error(env, Error::sys(e, "poll", Subject::None, "waiting for packets on several sockets"))
    })?;
    Ok(ready > 0)
}
