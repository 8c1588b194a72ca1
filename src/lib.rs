//! The Node.js binding of netring: one thin `#[napi]` class per engine class, turning engine
//! results into JavaScript values and engine errors into JavaScript errors. No policy lives
//! here; the engine decides, the facade (lib/) presents.

// #[napi] items are registered with Node when the addon loads; a test build never calls them.
#![cfg_attr(test, allow(dead_code))]

#[macro_use]
extern crate napi_derive;

mod affinity;
mod batch_table;
mod capture;
mod error;
mod external_memory;
mod filter;
mod frame_list;
mod injector;
mod lent_buffer;
mod netdev;
mod pcap_writer;
mod test_support;
mod vocabulary;
mod wait;
mod xdp;

/// Runs when the addon loads into an environment (the main thread, each worker): takes
/// `ArrayBuffer.prototype.transfer` as it is now (see `lent_buffer::remember_transfer`).
#[napi_derive::napi(module_exports)]
pub fn init(_exports: napi::bindgen_prelude::Object, env: napi::Env) -> napi::Result<()> {
    lent_buffer::remember_transfer(env.raw());
    Ok(())
}
