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
//!
//! `markAsUntransferable` (Node >= 22) gives an ArrayBuffer a detach key that only Node holds.
//! Two detaches then abort the process (V8's `Maybe::Check` fails): `napi_detach_arraybuffer`,
//! and the cleanup hook Node registers for every external ArrayBuffer, which detaches it when
//! the environment exits if it is still alive. So where `ArrayBuffer.prototype.transfer` exists
//! (Node >= 21), a lend moves the new external ArrayBuffer once with `transfer()` (same memory,
//! no copy) and lends the moved one, which no exit hook tracks; and a take back detaches with
//! `transfer(0)`, which throws on a marked buffer instead of aborting: `TakenBack::Refused`.

use std::cell::Cell;
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
    /// The buffer is attached but cannot be detached (marked with `markAsUntransferable`): as
    /// for `Escaped`, the owner closes its socket; the views keep reading memory the kernel no
    /// longer writes.
    Refused,
}

impl TakenBack {
    /// The error for a take back the owner could not complete (`Escaped`, `Refused`): `what`
    /// names the buffer ("a batch's ArrayBuffer"), `owner` what was closed ("capture") and
    /// `interface` where it was open.
    pub fn error(self, what: &str, owner: &str, interface: &str, hint: &str) -> netring_engine::Error {
        let message = if self == TakenBack::Refused {
            format!(
                "{what} was marked untransferable (markAsUntransferable): Node cannot detach it, so its memory \
                 cannot go back to the kernel and the {owner} on '{interface}' was closed"
            )
        } else {
            format!(
                "{what} was transferred (ArrayBuffer.prototype.transfer or a transfer list): ring memory cannot \
                 leave the {owner}, so the {owner} on '{interface}' was closed"
            )
        };
        let subject = netring_engine::Subject::Interface(interface.to_owned());
        netring_engine::Error::new(netring_engine::Errno::EPERM, subject, message).with_hint(hint)
    }
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

/// How this thread's environment lends, decided once when the addon loads.
#[derive(Clone, Copy)]
struct Lending {
    env: sys::napi_env,
    /// `ArrayBuffer.prototype.transfer` as it was then (a reference; null where it is not used).
    transfer: sys::napi_ref,
    /// No lent buffer may be detached here: Node >= 22 (where `markAsUntransferable` gives a
    /// detach key, and `napi_detach_arraybuffer` on such a buffer aborts the process, as does
    /// Node's exit hook on an external one) without a working `transfer` (deleted, behind a
    /// getter that throws, or one that does not move, before netring loaded). Ring memory is then
    /// lent as copies only, which a take back leaves attached: they are JavaScript's own memory.
    copies_only: bool,
}

thread_local! {
    /// This thread's `Lending`, keyed by its environment.
    static LENDING: Cell<Option<Lending>> = const { Cell::new(None) };
}

unsafe fn lending(env: sys::napi_env) -> Lending {
    if let Some(cached) = LENDING.get().filter(|l| l.env == env) {
        return cached;
    }
    let transfer = look_up_transfer(env).unwrap_or(ptr::null_mut());
    let lending = Lending { env, transfer, copies_only: transfer.is_null() && node_major(env) >= 22 };
    LENDING.set(Some(lending));
    lending
}

/// `ArrayBuffer.prototype.transfer`, or None before Node 21 or where it cannot be read (then
/// exceptions are cleared and the Node-API detach is used, as on Node 20).
unsafe fn transfer_function(env: sys::napi_env) -> Option<sys::napi_value> {
    let reference = lending(env).transfer;
    if reference.is_null() {
        return None;
    }
    let mut function = ptr::null_mut();
    let status = sys::napi_get_reference_value(env, reference, &mut function);
    (status == sys::Status::napi_ok && !function.is_null()).then_some(function)
}

/// Looks `ArrayBuffer.prototype.transfer` up now, for this environment: called when the addon
/// loads, so that a replacement installed later (one that stashes the buffer it is given, and
/// hands back a detached one) is never what a take back calls.
pub fn remember_transfer(env: sys::napi_env) {
    // SAFETY: the environment the addon is being loaded into, on its thread.
    unsafe { lending(env) };
}

unsafe fn look_up_transfer(env: sys::napi_env) -> Option<sys::napi_ref> {
    // Node >= 21 only: on Node 20 whatever is there is a polyfill (core-js's copies, and cannot
    // detach a Node-API buffer), which would make every take back `Refused`.
    if node_major(env) < 21 {
        return None;
    }
    // On the prototype of an ArrayBuffer made here, not through the global `ArrayBuffer`: a
    // global replaced before netring loaded (another class, another realm's) must not hide the
    // real one (without it a take back falls back to the Node-API detach, see `Lending`).
    let (mut buffer, mut data, mut value) = (ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
    let found = sys::napi_create_arraybuffer(env, 0, &mut data, &mut buffer) == sys::Status::napi_ok
        && sys::napi_get_prototype(env, buffer, &mut value) == sys::Status::napi_ok
        && {
            let prototype = value;
            sys::napi_get_named_property(env, prototype, c"transfer".as_ptr(), &mut value) == sys::Status::napi_ok
        };
    let mut kind = 0;
    if !found
        || sys::napi_typeof(env, value, &mut kind) != sys::Status::napi_ok
        || kind != sys::ValueType::napi_function
    {
        clear_exception(env);
        return None;
    }
    if !behaves_as_transfer(env, value) {
        clear_exception(env);
        return None;
    }
    let mut reference = ptr::null_mut();
    (sys::napi_create_reference(env, value, 1, &mut reference) == sys::Status::napi_ok).then_some(reference)
}

/// Whether `transfer` does what lending relies on, tried on a buffer of our own: `transfer()`
/// moves the memory (the result over the same bytes, the original detached) and `transfer(0)`
/// detaches. A replacement installed before netring loaded that copies instead (a polyfill
/// forced over the real one) would leave every lent buffer the external one Node's exit hook
/// detaches (an abort on a marked buffer) and make every take back `Refused`; without it,
/// ring memory is lent as copies (see `Lending`). A replacement that behaves on this probe is
/// still trusted: nothing here can tell it from the built-in.
unsafe fn behaves_as_transfer(env: sys::napi_env, transfer: sys::napi_value) -> bool {
    let (mut data, mut buffer) = (ptr::null_mut(), ptr::null_mut());
    if sys::napi_create_arraybuffer(env, 16, &mut data, &mut buffer) != sys::Status::napi_ok {
        return false;
    }
    let Ok(Some(moved)) = moved_by(env, transfer, buffer, data.cast(), 16) else { return false };
    matches!(call_transfer(env, transfer, moved, Some(0)), Ok(Some(_))) && matches!(is_detached(env, moved), Ok(true))
}

/// Whether ring memory is lent as copies here whatever the socket asked (see `Lending`): what
/// `info().copyMode` reports before anything was lent, and for sockets that only send.
pub fn lends_copies(env: &Env) -> bool {
    // SAFETY: the caller's environment, on its thread.
    unsafe { lending(env.raw()).copies_only }
}

/// Node's major version (0 if it cannot be read).
unsafe fn node_major(env: sys::napi_env) -> u32 {
    let mut version = ptr::null();
    if sys::napi_get_node_version(env, &mut version) != sys::Status::napi_ok || version.is_null() {
        return 0;
    }
    (*version).major
}

unsafe fn clear_exception(env: sys::napi_env) {
    let mut pending = false;
    if sys::napi_is_exception_pending(env, &mut pending) == sys::Status::napi_ok && pending {
        let mut exception = ptr::null_mut();
        sys::napi_get_and_clear_last_exception(env, &mut exception);
    }
}

/// Calls `transfer` on `buffer` (with `length`, else none); None when it threw.
unsafe fn call_transfer(
    env: sys::napi_env,
    transfer: sys::napi_value,
    buffer: sys::napi_value,
    length: Option<u32>,
) -> Result<Option<sys::napi_value>> {
    let mut argv = [ptr::null_mut()];
    let argc = match length {
        Some(length) => {
            check_status!(sys::napi_create_uint32(env, length, &mut argv[0]))?;
            1
        }
        None => 0,
    };
    let mut result = ptr::null_mut();
    match sys::napi_call_function(env, buffer, transfer, argc, argv.as_ptr(), &mut result) {
        sys::Status::napi_pending_exception => {
            clear_exception(env);
            Ok(None)
        }
        status => check_status!(status, "calling ArrayBuffer.prototype.transfer").map(|()| Some(result)),
    }
}

unsafe fn is_detached(env: sys::napi_env, buffer: sys::napi_value) -> Result<bool> {
    let mut detached = false;
    check_status!(sys::napi_is_detached_arraybuffer(env, buffer, &mut detached))?;
    Ok(detached)
}

/// Moves a new external ArrayBuffer out of the one Node's exit hook tracks (see the module
/// comment). Whatever `transfer` does, the result is fail-closed: either the moved buffer over
/// exactly this memory, or the original, attached (no move) or detached (the memory went where
/// we cannot see: the first take back finds it `Escaped` and the owner closes its socket).
unsafe fn untrack(env: sys::napi_env, original: sys::napi_value, data: *mut u8, len: usize) -> Result<sys::napi_value> {
    let Some(transfer) = transfer_function(env) else { return Ok(original) };
    Ok(moved_by(env, transfer, original, data, len)?.unwrap_or(original))
}

/// `transfer()` on `original`: the result if it moved exactly this memory (`len` bytes at
/// `data`, the original detached), else None (it threw, copied, or did something else).
unsafe fn moved_by(
    env: sys::napi_env,
    transfer: sys::napi_value,
    original: sys::napi_value,
    data: *mut u8,
    len: usize,
) -> Result<Option<sys::napi_value>> {
    let Some(moved) = call_transfer(env, transfer, original, None)? else { return Ok(None) };
    let mut is_buffer = false;
    check_status!(sys::napi_is_arraybuffer(env, moved, &mut is_buffer))?;
    if !is_buffer || !is_detached(env, original)? {
        return Ok(None);
    }
    let (mut moved_data, mut moved_len) = (ptr::null_mut(), 0);
    check_status!(sys::napi_get_arraybuffer_info(env, moved, &mut moved_data, &mut moved_len))?;
    Ok((moved_data.cast::<u8>() == data && moved_len == len).then_some(moved))
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
        let status = if force_copy || lending(raw_env).copies_only {
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
            } else {
                value = untrack(raw_env, value, data, len)?;
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
    /// the ring (copy mode, `write_back`: `len` bytes to `dest`), then detaches it (`Refused`
    /// when it cannot be detached).
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
        if is_detached(raw_env, value)? {
            // Only we detach lent buffers: someone moved it (transfer, a transfer list).
            return Ok(if self.copy.is_some() { TakenBack::CopyMoved } else { TakenBack::Escaped });
        }
        if let (Some(copy), Some((dest, len))) = (self.copy, write_back) {
            ptr::copy_nonoverlapping(copy, dest, len);
        }
        if let Some(transfer) = transfer_function(raw_env) {
            // transfer(0) detaches (the zero-length result is dropped), or throws on a marked
            // buffer; whatever it did, only a detached buffer counts as taken back.
            call_transfer(raw_env, transfer, value, Some(0))?;
            return Ok(if is_detached(raw_env, value)? { TakenBack::Detached } else { TakenBack::Refused });
        }
        if lending(raw_env).copies_only {
            // Only copies are lent here (see `lend`): this one stays attached, holding what it held.
            return Ok(if self.copy.is_some() { TakenBack::Detached } else { TakenBack::Refused });
        }
        check_status!(sys::napi_detach_arraybuffer(raw_env, value), "detaching a lent ArrayBuffer")?;
        Ok(TakenBack::Detached)
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
