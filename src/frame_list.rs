//! `FrameList`: the frames of a `sendFrames(frames)` call, read from the JavaScript array with
//! plain Node-API calls, two per frame.
//!
//! napi-rs's `Vec<Buffer>` costs per frame a reference created and deleted, plus a vector per
//! call, and the facade mapped the list first. Reading an element may run JavaScript (a getter, a
//! Proxy trap) that detaches a buffer read before, so a frame's bytes are taken where no
//! JavaScript can run before they are used: `frame(i)` for an engine that copies each frame
//! before reading the next (`XdpSocket::send_frames_with`), `read_all` (every element first,
//! then every frame's bytes) for one that takes a slice of frames (`Injector::send_frames`).

use std::cell::Cell;
use std::ptr;

use napi::bindgen_prelude::Object;
use napi::{sys, Env, JsValue};
use netring_engine::{Errno, Error, Subject};

use crate::error::{error_object, to_js_error};

/// The most frames one `sendFrames` call takes (far more than any ring holds: the rest of a
/// list is only checked, and sent by later calls). Exported: the facade checks it too, before
/// it encodes offload metadata for a list.
#[napi]
pub const MAX_FRAMES: u32 = 1 << 20;

pub struct FrameList {
    env: sys::napi_env,
    array: sys::napi_value,
    len: u32,
    /// The element refused for its type, so that its error names `frames[i]`.
    refused: Cell<Option<u32>>,
}

impl FrameList {
    /// The list `array` (the facade checked `Array.isArray`, which a Proxy over an array passes:
    /// its length is read as a property, through its traps, and may be any value). A length
    /// that is not a whole number up to `MAX_FRAMES` is EINVAL: read as a `u32` it would wrap
    /// (-1 is 2**32 - 1), and a list that long would be read, checked and held for nothing.
    pub fn new(env: &Env, array: &Object<'_>) -> napi::Result<FrameList> {
        let mut length = ptr::null_mut();
        // SAFETY: the array of the current call; a local out-pointer. (Not napi-rs's
        // get_named_property: it allocates the name.)
        let status = unsafe { sys::napi_get_named_property(env.raw(), array.raw(), c"length".as_ptr(), &mut length) };
        if status != sys::Status::napi_ok {
            // A Proxy trap threw: the pending exception is what the caller sees.
            return Err(napi::Error::new(napi::Status::PendingException, "frames.length could not be read"));
        }
        let mut len = 0.0;
        // SAFETY: a value of the current call and a local.
        if unsafe { sys::napi_get_value_double(env.raw(), length, &mut len) } != sys::Status::napi_ok {
            len = f64::NAN; // not a number: refused below
        }
        if !(len >= 0.0 && len <= f64::from(MAX_FRAMES) && len.fract() == 0.0) {
            let e = Error::invalid_option("frames", format!("must be an array of at most {MAX_FRAMES} frames"));
            return Err(to_js_error(env, e));
        }
        Ok(FrameList { env: env.raw(), array: array.raw(), len: len as u32, refused: Cell::new(None) })
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    /// The bytes of `frames[i]`, a Buffer or a Uint8Array (a detached one is empty); EINVAL for
    /// anything else.
    ///
    /// # Safety
    /// The slice is valid only until JavaScript runs again, which reading the next element may
    /// do: use it before calling `frame` again or returning to JavaScript.
    pub unsafe fn frame(&self, i: u32) -> netring_engine::Result<&[u8]> {
        let (data, len) = self.bytes(i, self.element(i)?)?;
        // SAFETY: what `bytes` read, used before JavaScript runs (the caller's contract).
        Ok(unsafe { slice(data, len) })
    }

    /// Reads every frame into `out` (cleared first; its capacity is kept, so a list no longer
    /// than one before allocates nothing), for an engine call that takes a slice of frames.
    ///
    /// # Safety
    /// The frames are valid only until JavaScript runs again: use `out` before returning to
    /// JavaScript, and clear it.
    pub unsafe fn read_all(&self, out: &mut Vec<ReadFrame>) -> netring_engine::Result<()> {
        out.clear();
        for i in 0..self.len {
            out.push(ReadFrame { value: self.element(i)?, data: ptr::null(), len: 0 });
        }
        // Reading an element may run JavaScript that detaches or shrinks a buffer read before;
        // none runs from here on, so each frame's bytes are taken only now.
        for (i, frame) in out.iter_mut().enumerate() {
            (frame.data, frame.len) = self.bytes(i as u32, frame.value)?;
        }
        Ok(())
    }

    fn element(&self, i: u32) -> netring_engine::Result<sys::napi_value> {
        let mut value = ptr::null_mut();
        // SAFETY: env and array are the live values of the current call.
        if unsafe { sys::napi_get_element(self.env, self.array, i, &mut value) } != sys::Status::napi_ok {
            // A getter or a Proxy trap threw: the pending exception is what the caller sees.
            return Err(self.refuse(i, "could not be read"));
        }
        Ok(value)
    }

    /// Where `value`'s bytes are and how many: a Uint8Array's (a Buffer is one); EINVAL naming
    /// `frames[i]` for anything else. Runs no JavaScript.
    fn bytes(&self, i: u32, value: sys::napi_value) -> netring_engine::Result<(*const u8, usize)> {
        let (mut kind, mut len, mut data) = (0, 0usize, ptr::null_mut());
        let (mut buffer, mut offset) = (ptr::null_mut(), 0usize);
        // SAFETY: a value of the current call; every out-pointer is a local.
        let status = unsafe {
            sys::napi_get_typedarray_info(self.env, value, &mut kind, &mut len, &mut data, &mut buffer, &mut offset)
        };
        if status != sys::Status::napi_ok || kind != sys::TypedarrayType::uint8_array {
            return Err(self.refuse(i, &format!("must be a Buffer or a Uint8Array, got {}", self.type_name(value))));
        }
        Ok((data.cast_const().cast(), len))
    }

    /// The JavaScript error for an engine error from a send of this list: a frame refused for
    /// its type names `frames[i]` as the option, as the facade's own checks do.
    pub fn error(&self, env: &Env, e: Error) -> napi::Error {
        let Some(i) = self.refused.get() else { return to_js_error(env, e) };
        match error_object(env, e) {
            Ok(mut object) => match object.set("option", format!("frames[{i}]")) {
                Ok(()) => napi::Error::from(object.to_unknown()),
                Err(failed) => failed,
            },
            Err(failed) => failed,
        }
    }

    fn refuse(&self, i: u32, why: &str) -> Error {
        self.refused.set(Some(i));
        Error::new(Errno::EINVAL, Subject::Option("frames"), format!("invalid option frames[{i}]: {why}"))
    }

    /// `typeof value`, with null as 'null'.
    fn type_name(&self, value: sys::napi_value) -> &'static str {
        let mut t = 0;
        // SAFETY: a value of the current call.
        unsafe { sys::napi_typeof(self.env, value, &mut t) };
        match t {
            sys::ValueType::napi_undefined => "undefined",
            sys::ValueType::napi_null => "null",
            sys::ValueType::napi_boolean => "boolean",
            sys::ValueType::napi_number => "number",
            sys::ValueType::napi_string => "string",
            sys::ValueType::napi_symbol => "symbol",
            sys::ValueType::napi_function => "function",
            sys::ValueType::napi_bigint => "bigint",
            _ => "object",
        }
    }
}

/// A frame `read_all` read: its Uint8Array (a handle of the current call) and its bytes.
pub struct ReadFrame {
    value: sys::napi_value,
    data: *const u8,
    len: usize,
}

impl AsRef<[u8]> for ReadFrame {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: read_all's contract: the frames are used before JavaScript runs, then cleared.
        unsafe { slice(self.data, self.len) }
    }
}

/// `len` bytes at `data`; empty for a detached buffer (whose data may be null).
///
/// # Safety
/// `data` must be readable for `len` bytes while the slice is used.
unsafe fn slice<'a>(data: *const u8, len: usize) -> &'a [u8] {
    if len == 0 || data.is_null() {
        return &[];
    }
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts(data, len) }
}
