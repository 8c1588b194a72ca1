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

    /// In copy mode, writes what JavaScript put into the copy back to the ring: `len` bytes
    /// to `dest`. Does nothing for a buffer over the ring itself.
    ///
    /// # Safety
    /// `len` must not exceed the lent length, and `dest` must hold `len` bytes.
    pub unsafe fn write_back(&self, dest: *mut u8, len: usize) {
        if let Some(copy) = self.copy {
            ptr::copy_nonoverlapping(copy, dest, len);
        }
    }

    /// Detaches the ArrayBuffer if JavaScript still has it, then drops our reference.
    ///
    /// Returns `Ok(false)` when the ring memory escaped: the ArrayBuffer was already detached
    /// by someone else (`ArrayBuffer.prototype.transfer`, a transfer list), so a new
    /// ArrayBuffer we cannot reach now owns the memory. The caller must then stop the kernel
    /// from writing into the ring (close the socket) instead of handing the block back.
    pub fn take_back(self, env: &Env) -> Result<bool> {
        let raw_env = env.raw();
        let mut value = ptr::null_mut();
        let mut kept = true;
        // SAFETY: our own reference, created in `lend`.
        unsafe {
            check_status!(sys::napi_get_reference_value(raw_env, self.reference, &mut value))?;
            if !value.is_null() {
                let mut detached = false;
                check_status!(sys::napi_is_detached_arraybuffer(raw_env, value, &mut detached))?;
                if detached {
                    // Only we detach lent buffers; a copy may go wherever it likes.
                    kept = self.copy.is_some();
                } else {
                    check_status!(sys::napi_detach_arraybuffer(raw_env, value), "detaching a lent ArrayBuffer")?;
                }
            }
            check_status!(sys::napi_delete_reference(raw_env, self.reference))?;
        }
        Ok(kept)
    }

    /// Drops our reference without detaching: for finalizers, where V8 may not be re-entered.
    /// Sound because the mapping outlives the ArrayBuffer, and the socket is closed, so the
    /// kernel no longer writes into what JavaScript may still read.
    pub fn forget(self, env: sys::napi_env) {
        // SAFETY: our own reference; deleting references is allowed in finalizers.
        unsafe { sys::napi_delete_reference(env, self.reference) };
    }
}
