//! Filter compilation on its own, without a capture: what `Capture.open` would attach.

use netring_engine::BpfProgram;

use crate::capture::NativeBpfInstruction;
use crate::error::OrThrow;

/// Compiles a pcap-filter expression with the system's libpcap (Ethernet, `snapLen` or
/// libpcap's maximum), as `tcpdump -dd -s <snapLen>` prints it.
#[napi]
pub fn compile_filter(expression: String, snap_len: Option<u32>) -> napi::Result<Vec<NativeBpfInstruction>> {
    let program =
        netring_engine::libpcap::compile(&expression, snap_len.unwrap_or(netring_engine::libpcap::MAXIMUM_SNAPLEN))
            .or_throw()?;
    Ok(instructions(&program))
}

/// Whether the system's libpcap can be loaded (string filters need it).
#[napi]
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
