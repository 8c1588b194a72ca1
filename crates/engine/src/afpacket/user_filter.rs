//! Runs a classic BPF program in user space, on packets that reached the ring under the filter
//! a capture had before `set_filter`. libpcap does the same after `pcap_setfilter` on a
//! memory-mapped ring (`pcap-linux.c`, "filter in userland" for the blocks already filled):
//! the kernel applies a new filter only to packets that arrive after it, so the packets
//! already in the ring are filtered here with the new program, and none it rejects is
//! delivered.
//!
//! The semantics are the kernel's (`net/core/filter.c`, `bpf_convert_filter`): out-of-range
//! loads and division by zero end the program with 0 (drop), and the ancillary loads
//! (`SKF_AD_*`) read the packet's metadata.

use crate::ffi::{self, sock_filter};

/// The metadata a socket filter can read besides the frame (`SKF_AD_*` loads).
#[derive(Debug, Clone, Copy, Default)]
pub struct PacketMeta {
    pub protocol: u16,
    pub pkttype: u8,
    pub ifindex: u32,
    pub vlan_tci: Option<u16>,
    pub vlan_tpid: u16,
}

/// Runs `program` on `frame` (from its MAC header, as the kernel's socket filter sees it) and
/// returns the number of bytes to keep: 0 rejects the packet.
pub fn run(program: &[sock_filter], frame: &[u8], wire_len: u32, meta: &PacketMeta) -> u32 {
    let (mut a, mut x) = (0u32, 0u32);
    let mut mem = [0u32; ffi::BPF_MEMWORDS];
    let mut pc = 0usize;
    while let Some(insn) = program.get(pc) {
        pc += 1;
        let k = insn.k;
        let class = insn.code & ffi::BPF_CLASS_MASK;
        match class {
            ffi::BPF_LD | ffi::BPF_LDX => {
                let mode = insn.code & ffi::BPF_MODE_MASK;
                let value = match mode {
                    ffi::BPF_IMM => Some(k),
                    ffi::BPF_LEN => Some(wire_len),
                    ffi::BPF_MEM => mem.get(k as usize).copied(),
                    ffi::BPF_ABS if class == ffi::BPF_LD => load(frame, k, insn.code, meta),
                    ffi::BPF_IND if class == ffi::BPF_LD => {
                        x.checked_add(k).and_then(|at| load(frame, at, insn.code, meta))
                    }
                    ffi::BPF_MSH if class == ffi::BPF_LDX => frame.get(k as usize).map(|b| u32::from(b & 0xf) << 2),
                    _ => None,
                };
                let Some(v) = value else { return 0 };
                if class == ffi::BPF_LD {
                    a = v
                } else {
                    x = v
                }
            }
            ffi::BPF_ST | ffi::BPF_STX => {
                let Some(slot) = mem.get_mut(k as usize) else { return 0 };
                *slot = if class == ffi::BPF_ST { a } else { x };
            }
            ffi::BPF_ALU => {
                let operand = if insn.code & ffi::BPF_X != 0 { x } else { k };
                a = match insn.code & ffi::BPF_OP_MASK {
                    ffi::BPF_ADD => a.wrapping_add(operand),
                    ffi::BPF_SUB => a.wrapping_sub(operand),
                    ffi::BPF_MUL => a.wrapping_mul(operand),
                    ffi::BPF_DIV if operand == 0 => return 0,
                    ffi::BPF_DIV => a / operand,
                    ffi::BPF_MOD if operand == 0 => return 0,
                    ffi::BPF_MOD => a % operand,
                    ffi::BPF_OR => a | operand,
                    ffi::BPF_AND => a & operand,
                    ffi::BPF_XOR => a ^ operand,
                    ffi::BPF_LSH => a.checked_shl(operand).unwrap_or(0),
                    ffi::BPF_RSH => a.checked_shr(operand).unwrap_or(0),
                    ffi::BPF_NEG => a.wrapping_neg(),
                    _ => return 0,
                };
            }
            ffi::BPF_JMP => {
                let operand = if insn.code & ffi::BPF_X != 0 { x } else { k };
                let taken = match insn.code & ffi::BPF_OP_MASK {
                    ffi::BPF_JA => {
                        pc += k as usize;
                        continue;
                    }
                    ffi::BPF_JEQ => a == operand,
                    ffi::BPF_JGT => a > operand,
                    ffi::BPF_JGE => a >= operand,
                    ffi::BPF_JSET => a & operand != 0,
                    _ => return 0,
                };
                pc += usize::from(if taken { insn.jt } else { insn.jf });
            }
            ffi::BPF_RET => return if insn.code & ffi::BPF_RVAL_MASK == ffi::BPF_A { a } else { k },
            ffi::BPF_MISC => {
                if insn.code & ffi::BPF_TXA != 0 {
                    a = x
                } else {
                    x = a
                }
            }
            _ => return 0,
        }
    }
    0
}

fn load(frame: &[u8], at: u32, code: u16, meta: &PacketMeta) -> Option<u32> {
    if at >= ffi::SKF_AD_OFF {
        return ancillary(at - ffi::SKF_AD_OFF, meta);
    }
    let at = at as usize;
    let size = match code & ffi::BPF_SIZE_MASK {
        ffi::BPF_W => 4,
        ffi::BPF_H => 2,
        ffi::BPF_B => 1,
        _ => return None,
    };
    let bytes = frame.get(at..at.checked_add(size)?)?;
    Some(bytes.iter().fold(0u32, |v, &b| (v << 8) | u32::from(b)))
}

fn ancillary(which: u32, meta: &PacketMeta) -> Option<u32> {
    match which {
        ffi::SKF_AD_PROTOCOL => Some(u32::from(meta.protocol)),
        ffi::SKF_AD_PKTTYPE => Some(u32::from(meta.pkttype)),
        ffi::SKF_AD_IFINDEX => Some(meta.ifindex),
        ffi::SKF_AD_VLAN_TAG => Some(u32::from(meta.vlan_tci.unwrap_or(0))),
        ffi::SKF_AD_VLAN_TAG_PRESENT => Some(u32::from(meta.vlan_tci.is_some())),
        ffi::SKF_AD_VLAN_TPID => Some(u32::from(meta.vlan_tpid)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BpfProgram;

    // `tcpdump -dd udp` (see filter.rs).
    const UDP_DD: &str = "{ 0x28, 0, 0, 0x0000000c },\n{ 0x15, 0, 5, 0x000086dd },\n{ 0x30, 0, 0, 0x00000014 },\n\
{ 0x15, 6, 0, 0x00000011 },\n{ 0x15, 0, 6, 0x0000002c },\n{ 0x30, 0, 0, 0x00000036 },\n{ 0x15, 3, 4, 0x00000011 },\n\
{ 0x15, 0, 3, 0x00000800 },\n{ 0x30, 0, 0, 0x00000017 },\n{ 0x15, 0, 1, 0x00000011 },\n{ 0x6, 0, 0, 0x00040000 },\n\
{ 0x6, 0, 0, 0x00000000 },\n";

    fn ipv4(proto: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[23] = proto;
        f
    }

    #[test]
    fn runs_a_tcpdump_program() {
        let p = BpfProgram::parse(UDP_DD).unwrap();
        let meta = PacketMeta::default();
        assert_eq!(run(p.instructions(), &ipv4(17), 42, &meta), 0x40000);
        assert_eq!(run(p.instructions(), &ipv4(6), 42, &meta), 0);
        assert_eq!(run(p.instructions(), &ipv4(17)[..20], 42, &meta), 0, "a load past the end drops");
    }

    #[test]
    fn len_alu_memory_and_ancillary_loads() {
        let insn = |code: u16, k: u32| sock_filter { code, jt: 0, jf: 0, k };
        // A = len; A -= 2; M[3] = A; X = M[3]; A = X; return A
        let p = [
            insn(ffi::BPF_LD | ffi::BPF_W | ffi::BPF_LEN, 0),
            insn(ffi::BPF_ALU | ffi::BPF_SUB | ffi::BPF_K, 2),
            insn(ffi::BPF_ST, 3),
            insn(ffi::BPF_LDX | ffi::BPF_MEM, 3),
            insn(ffi::BPF_MISC | ffi::BPF_TXA, 0),
            insn(ffi::BPF_RET | ffi::BPF_A, 0),
        ];
        assert_eq!(run(&p, &[], 100, &PacketMeta::default()), 98);
        let vlan = [
            insn(ffi::BPF_LD | ffi::BPF_B | ffi::BPF_ABS, ffi::SKF_AD_OFF + ffi::SKF_AD_VLAN_TAG_PRESENT),
            insn(ffi::BPF_RET | ffi::BPF_A, 0),
        ];
        assert_eq!(run(&vlan, &[], 1, &PacketMeta { vlan_tci: Some(5), ..Default::default() }), 1);
        assert_eq!(run(&vlan, &[], 1, &PacketMeta::default()), 0);
        let div0 = [insn(ffi::BPF_ALU | ffi::BPF_DIV | ffi::BPF_X, 0), insn(ffi::BPF_RET | ffi::BPF_K, 1)];
        assert_eq!(run(&div0, &[], 1, &PacketMeta::default()), 0);
    }
}
