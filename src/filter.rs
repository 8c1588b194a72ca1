//! Filter compilation on its own, without a capture: what `Capture.open` would attach.

use napi::bindgen_prelude::{Either, Uint8Array};
use napi::Env;
use netring_engine::afpacket::user_filter::{self, PacketMeta};
use netring_engine::BpfProgram;

use crate::capture::{engine_filter, NativeBpfInstruction};
use crate::error::OrThrow;

/// Compiles a pcap-filter expression with the system's libpcap (Ethernet, `snapLen` or
/// libpcap's maximum), as `tcpdump -dd -s <snapLen>` prints it.
#[napi(catch_unwind)]
pub fn compile_filter(env: &Env, expression: String, snap_len: Option<u32>) -> napi::Result<Vec<NativeBpfInstruction>> {
    let program =
        netring_engine::libpcap::compile(&expression, snap_len.unwrap_or(netring_engine::libpcap::MAXIMUM_SNAPLEN))
            .or_throw(env)?;
    Ok(instructions(&program))
}

/// Whether the system's libpcap can be loaded (string filters need it).
#[napi(catch_unwind)]
pub fn libpcap_available() -> bool {
    netring_engine::libpcap::available()
}

fn instructions(program: &BpfProgram) -> Vec<NativeBpfInstruction> {
    program
        .instructions()
        .iter()
        .map(|i| NativeBpfInstruction { code: i.code.into(), jt: i.jt.into(), jf: i.jf.into(), k: i.k.into() })
        .collect()
}

/// A filter run in user space on frames that did not come from a socket (a capture file), with
/// the kernel's semantics.
#[napi]
pub struct NativeFilterProgram {
    program: BpfProgram,
}

#[napi]
impl NativeFilterProgram {
    /// Any of the three filter forms; an expression is compiled for `snapLen`.
    #[napi(constructor, catch_unwind)]
    pub fn new(
        env: &Env,
        filter: Either<String, Vec<NativeBpfInstruction>>,
        snap_len: Option<u32>,
    ) -> napi::Result<Self> {
        Ok(NativeFilterProgram { program: engine_filter(filter, snap_len).or_throw(env)? })
    }

    /// Whether the filter accepts `frame`, which was `wireLen` bytes on the wire.
    #[napi(catch_unwind)]
    pub fn matches(&self, frame: Uint8Array, wire_len: u32) -> bool {
        user_filter::run(self.program.instructions(), &frame, wire_len, &PacketMeta::default()) != 0
    }
}
