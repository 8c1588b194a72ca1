//! The one conversion from engine errors to JavaScript errors.
//!
//! An engine error becomes a JavaScript `Error` whose message is the engine's sentence and whose
//! properties are the engine's fields (`code`, `errno`, `syscall`, `interface`, `option`,
//! `hint`); the facade's `NetringError.fromNative` copies them. Option names already come from
//! the engine in the facade's spelling (`blockSize`), so nothing is rewritten here.

use napi::bindgen_prelude::Object;
use napi::{Env, JsValue};
use netring_engine::{Error as EngineError, Subject};

/// Marks an error object as carrying netring's fields (napi-rs's own errors have none).
const MARKER: &str = "netringNative";

/// The error to throw for an engine error.
pub fn to_js_error(env: &Env, e: EngineError) -> napi::Error {
    match error_object(env, e) {
        Ok(object) => napi::Error::from(object.to_unknown()),
        Err(failed) => failed,
    }
}

/// The JavaScript `Error` for an engine error, for when it is returned rather than thrown.
pub fn error_object<'env>(env: &'env Env, e: EngineError) -> napi::Result<Object<'env>> {
    let code = e.code();
    let mut object = env.create_error(napi::Error::new(napi::Status::GenericFailure, e.message))?;
    object.set(MARKER, true)?;
    object.set("code", code)?;
    object.set("errno", e.errno as i32)?;
    if let Some(syscall) = e.syscall {
        object.set("syscall", syscall)?;
    }
    match e.subject {
        Subject::Interface(name) => object.set("interface", name)?,
        Subject::Option(name) => object.set("option", name)?,
        Subject::None => {}
    }
    if let Some(hint) = e.hint {
        object.set("hint", hint)?;
    }
    Ok(object)
}

pub type Result<T> = std::result::Result<T, EngineError>;

/// Runs an engine call and converts its error.
pub trait OrThrow<T> {
    fn or_throw(self, env: &Env) -> napi::Result<T>;
}

impl<T> OrThrow<T> for Result<T> {
    fn or_throw(self, env: &Env) -> napi::Result<T> {
        self.map_err(|e| to_js_error(env, e))
    }
}
