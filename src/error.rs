//! The one conversion from engine errors to JavaScript errors.
//!
//! The fields travel as JSON in the message of a plain napi error; the facade's
//! `NetringError.fromNative` reads them back. Option names are turned into the facade's
//! spelling here (`block_size` → `blockSize`) so that errors, typings and docs use one word.

use netring_engine::{Error as EngineError, Subject};

pub fn to_napi(e: EngineError) -> napi::Error {
    napi::Error::new(napi::Status::GenericFailure, error_json(e))
}

/// The fields of an engine error as the JSON the facade reads back.
pub fn error_json(e: EngineError) -> String {
    let (interface, option) = match &e.subject {
        Subject::Interface(name) => (Some(name.clone()), None),
        Subject::Option(name) => (None, Some(camel_case(name))),
        Subject::None => (None, None),
    };
    let message = match &option {
        // The engine's message quotes its own name for the option; show the facade's.
        Some(camel) => e.message.replacen(option_name(&e.subject), camel, 1),
        None => e.message.clone(),
    };
    let fields = [
        ("code", Some(e.code())),
        ("errno", Some((e.errno as i32).to_string())),
        ("syscall", e.syscall.map(str::to_string)),
        ("interface", interface),
        ("option", option),
        ("message", Some(message)),
        ("hint", e.hint.clone()),
    ];
    let mut json = String::from("{\"netring\":1");
    for (key, value) in fields {
        if let Some(v) = value {
            json.push_str(&format!(",\"{key}\":"));
            if key == "errno" {
                json.push_str(&v);
            } else {
                push_json_string(&mut json, &v);
            }
        }
    }
    json.push('}');
    json
}

pub type Result<T> = std::result::Result<T, EngineError>;

/// Runs an engine call and converts its error.
pub trait OrThrow<T> {
    fn or_throw(self) -> napi::Result<T>;
}

impl<T> OrThrow<T> for Result<T> {
    fn or_throw(self) -> napi::Result<T> {
        self.map_err(to_napi)
    }
}

fn option_name(subject: &Subject) -> &'static str {
    match subject {
        Subject::Option(name) => name,
        _ => "",
    }
}

/// `block_timeout_ms` → `blockTimeoutMs`; dotted paths keep their dots (`fanout.mode`).
pub fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}
