//! Lending ring memory to JavaScript, and taking it back.
//!
//! A lent region becomes an external ArrayBuffer over the ring (no copy). Taking it back
//! detaches that ArrayBuffer (`napi_detach_arraybuffer`), which turns every view JavaScript made
//! of it into a zero-length view at once; only then may the engine hand the memory back to the
//! kernel. Two rules keep this sound:
//!
//! - the ArrayBuffer's finalizer holds a reference to the ring mapping, so the memory stays
//!   mapped for as long as V8 may still touch it, whatever order things are released in;
//! - we hold a strong reference to the ArrayBuffer while it is lent (one per capture), so at take
//!   back we always find it: either attached (we detach it), or detached by someone else, which
//!   means its memory was transferred to an ArrayBuffer we cannot reach (see `take_back`).
//!
//! Where the runtime refuses external buffers (Electron's V8 sandbox), the region is copied into
//! an ordinary ArrayBuffer instead: same API, same detach on release.

use std::ffi::c_void;
use std::ptr;
use std::sync::Arc;

use napi::{check_status, sys, Env, Result};
use netring_engine::Mapping;

/// What `take_back` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakenBack {
    /// The buffer was attached; it is detached now (a copy was written back first).
    Detached,
    /// A copy (copy mode) was moved away by JavaScript: nothing to write back, nothing escaped.
    CopyMoved,
    /// Ring memory was moved to an ArrayBuffer we cannot reach: the owner must stop the kernel
    /// writing into the ring (close its socket) instead of handing the memory back.
    Escaped,
}

/// One lent ArrayBuffer.
pub struct LentBuffer {
    reference: sys::napi_ref,
    copy: Option<*mut u8>,
}

/// Whether external buffers are refused by configuration (`NETRING_FORCE_COPY=1`), to exercise
/// the copying path on runtimes that allow external buffers.
pub fn force_copy_from_env() -> bool {
    std::env::var("NETRING_FORCE_COPY").is_ok_and(|v| v == "1")
}

unsafe extern "C" fn release_mapping(_env: sys::napi_env, _data: *mut c_void, hint: *mut c_void) {
    drop(Box::from_raw(hint.cast::<Arc<Mapping>>()));
}

impl LentBuffer {
    /// Lends `len` bytes at `data` (inside `mapping`) as an ArrayBuffer.
    ///
    /// # Safety
    /// `data..data + len` must lie inside `mapping`, and no other lent buffer may cover it (V8
    /// aborts on two live external buffers over the same memory).
    pub unsafe fn lend(
        env: &Env,
        data: *mut u8,
        len: usize,
        mapping: &Arc<Mapping>,
        force_copy: bool,
    ) -> Result<(LentBuffer, sys::napi_value)> {
        let raw_env = env.raw();
        let mut value = ptr::null_mut();
        let mut copy = None;
        let status = if force_copy {
            sys::Status::napi_no_external_buffers_allowed
        } else {
            let hint = Box::into_raw(Box::new(mapping.clone()));
            let status = sys::napi_create_external_arraybuffer(
                raw_env,
                data.cast(),
                len,
                Some(release_mapping),
                hint.cast(),
                &mut value,
            );
            if status != sys::Status::napi_ok {
                drop(Box::from_raw(hint));
            }
            status
        };
        if status == sys::Status::napi_no_external_buffers_allowed {
            let mut js_data = ptr::null_mut();
            check_status!(sys::napi_create_arraybuffer(raw_env, len, &mut js_data, &mut value))?;
            ptr::copy_nonoverlapping(data, js_data.cast::<u8>(), len);
            copy = Some(js_data.cast::<u8>());
        } else {
            check_status!(status, "creating an ArrayBuffer over the ring")?;
        }
        let mut reference = ptr::null_mut();
        check_status!(sys::napi_create_reference(raw_env, value, 1, &mut reference))?;
        Ok((LentBuffer { reference, copy }, value))
    }

    /// Whether JavaScript got a copy rather than the ring memory itself.
    pub fn is_copy(&self) -> bool {
        self.copy.is_some()
    }

    /// Takes the buffer back from JavaScript: if it is still attached, writes a copy back to
    /// the ring (copy mode, `write_back`: `len` bytes to `dest`), then detaches it.
    ///
    /// Fails closed: this only reads and detaches, and the caller drops the `LentBuffer` (with
    /// `forget`) only after it returned Ok, so when a Node-API call fails the buffer stays
    /// recorded as lent and the caller must not hand the memory back to the kernel. The
    /// detached state is checked before anything is read through the cached copy pointer: a
    /// moved copy's memory may already be freed.
    ///
    /// # Safety
    /// `write_back`, when given, must name `len` writable bytes with `len` at most the lent length.
    pub unsafe fn take_back(&self, env: &Env, write_back: Option<(*mut u8, usize)>) -> Result<TakenBack> {
        let raw_env = env.raw();
        let mut value = ptr::null_mut();
        check_status!(sys::napi_get_reference_value(raw_env, self.reference, &mut value))?;
        if value.is_null() {
            // Cannot happen while our reference is strong; treat it as moved, the safe reading.
            return Ok(if self.copy.is_some() { TakenBack::CopyMoved } else { TakenBack::Escaped });
        }
        let mut detached = false;
        check_status!(sys::napi_is_detached_arraybuffer(raw_env, value, &mut detached))?;
        if detached {
            // Only we detach lent buffers: someone moved it (transfer, a transfer list).
            return Ok(if self.copy.is_some() { TakenBack::CopyMoved } else { TakenBack::Escaped });
        }
        if let (Some(copy), Some((dest, len))) = (self.copy, write_back) {
            ptr::copy_nonoverlapping(copy, dest, len);
        }
        check_status!(sys::napi_detach_arraybuffer(raw_env, value), "detaching a lent ArrayBuffer")?;
        Ok(TakenBack::Detached)
    }

    /// Whether the ArrayBuffer is detached already: the facade detaches lent blocks itself
    /// where the runtime lets it (see `NativeCapture::take_back_detached`).
    pub fn is_detached(&self, env: &Env) -> Result<bool> {
        let mut value = ptr::null_mut();
        let mut detached = false;
        // SAFETY: our own reference, created in `lend`.
        unsafe {
            check_status!(sys::napi_get_reference_value(env.raw(), self.reference, &mut value))?;
            if value.is_null() {
                return Ok(true);
            }
            check_status!(sys::napi_is_detached_arraybuffer(env.raw(), value, &mut detached))?;
        }
        Ok(detached)
    }

    /// Drops our reference: after a successful `take_back`, or without detaching in finalizers
    /// (where V8 may not be re-entered) and when the owner closes its socket instead of taking
    /// the memory back. Sound without a detach because the mapping outlives the ArrayBuffer and
    /// the socket is closed, so the kernel no longer writes into what JavaScript may still read.
    pub fn forget(self, env: sys::napi_env) {
        // SAFETY: our own reference; deleting references is allowed in finalizers.
        unsafe { sys::napi_delete_reference(env, self.reference) };
    }
}
