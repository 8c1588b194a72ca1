//! `FrameList`: the frames of a `sendFrames(frames)` call, read from the JavaScript array one at a
//! time with plain Node-API calls.
//!
//! napi-rs's `Vec<Buffer>` costs per frame a reference created and deleted, plus a vector per
//! call; reading each element where the engine copies it costs two Node-API calls and nothing
//! else (the hot path allocates nothing per packet). Reading an element may run JavaScript (a
//! getter, a Proxy) that detaches a buffer read before, so a frame's bytes are valid only until
//! the next element is read: the engine copies each frame first (`send_frames_with`).

use std::cell::Cell;
use std::ptr;

use napi::bindgen_prelude::{JsObjectValue, Object};
use napi::{sys, Env, JsValue};
use netring_engine::{Errno, Error, Subject};

use crate::error::{error_object, to_js_error};

pub struct FrameList {
    env: sys::napi_env,
    array: sys::napi_value,
    len: u32,
    /// The element refused for its type, so that its error names `frames[i]`.
    refused: Cell<Option<u32>>,
}

impl FrameList {
    /// The list `array` (the facade checked `Array.isArray`, which a Proxy over an array passes:
    /// its length is read as a property, through its traps).
    pub fn new(env: &Env, array: &Object<'_>) -> napi::Result<FrameList> {
        let len = array.get_named_property_unchecked::<u32>("length")?;
        Ok(FrameList { env: env.raw(), array: array.raw(), len, refused: Cell::new(None) })
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
        let mut value = ptr::null_mut();
        // SAFETY: env and array are the live values of the current call.
        if unsafe { sys::napi_get_element(self.env, self.array, i, &mut value) } != sys::Status::napi_ok {
            // A getter or a Proxy trap threw: the pending exception is what the caller sees.
            return Err(self.refuse(i, "could not be read"));
        }
        let (mut kind, mut len, mut data) = (0, 0usize, ptr::null_mut());
        let (mut buffer, mut offset) = (ptr::null_mut(), 0usize);
        // SAFETY: as above; every out-pointer is a local.
        let status = unsafe {
            sys::napi_get_typedarray_info(self.env, value, &mut kind, &mut len, &mut data, &mut buffer, &mut offset)
        };
        if status != sys::Status::napi_ok || kind != sys::TypedarrayType::uint8_array {
            return Err(self.refuse(i, &format!("must be a Buffer or a Uint8Array, got {}", self.type_name(value))));
        }
        if len == 0 || data.is_null() {
            return Ok(&[]);
        }
        // SAFETY: a live Uint8Array's `len` bytes at `data` (its buffer's data plus its offset),
        // readable until JavaScript runs again (the caller's contract).
        Ok(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
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
