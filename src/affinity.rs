//! CPU affinity of the calling thread (a worker thread of a fanout pool pins itself).

use netring_engine::{affinity, ffi};

use napi::Env;

use crate::error::OrThrow;

/// The CPUs the calling thread may run on.
#[napi(catch_unwind)]
pub fn allowed_cpus(env: &Env) -> napi::Result<Vec<u32>> {
    Ok(affinity::allowed_cpus().or_throw(env)?.into_iter().map(|c| c as u32).collect())
}

/// Pins the calling thread to one CPU.
#[napi(catch_unwind)]
pub fn pin_current_thread(env: &Env, cpu: u32) -> napi::Result<()> {
    affinity::pin_current_thread(cpu as usize).or_throw(env)
}

/// How many sockets one fanout group takes (the kernel refuses more with ENOSPC).
#[napi]
pub const FANOUT_MAX_MEMBERS: u32 = ffi::PACKET_FANOUT_DEFAULT_MAX_MEMBERS;
