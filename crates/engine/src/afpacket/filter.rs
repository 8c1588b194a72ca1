//! Classic BPF programs: built from instructions or from `tcpdump -dd` / `-ddd` text, checked
//! for shape here and for meaning by the kernel when attached.

use crate::error::{Error, Result};
use crate::ffi::{self, sock_filter};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BpfProgram(Vec<sock_filter>);

impl BpfProgram {
    pub fn new(instructions: Vec<sock_filter>) -> Result<Self> {
        if instructions.is_empty() || instructions.len() > ffi::BPF_MAXINSNS {
            return Err(Error::invalid_option(
                "filter",
                format!("a program has 1 to {} instructions, got {}", ffi::BPF_MAXINSNS, instructions.len()),
            ));
        }
        Ok(BpfProgram(instructions))
    }

    /// A filter given as text: the output of `tcpdump -dd` / `-ddd`, or else a pcap-filter
    /// expression, compiled by the system's libpcap for Ethernet with `snap_len` (libpcap's
    /// maximum when `None`, as tcpdump does).
    pub fn from_text(text: &str, snap_len: Option<u32>) -> Result<Self> {
        if Self::is_program_text(text) {
            Self::parse(text)
        } else {
            crate::libpcap::compile(text, snap_len.unwrap_or(crate::libpcap::MAXIMUM_SNAPLEN))
        }
    }

    /// `tcpdump -dd` text starts with `{`; `-ddd` text is lines of numbers only. No
    /// pcap-filter expression looks like either (a lone number is not an expression).
    fn is_program_text(text: &str) -> bool {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty()).peekable();
        match lines.peek() {
            Some(first) if first.starts_with('{') => true,
            Some(_) => lines.all(|l| l.split_whitespace().all(|w| w.bytes().all(|b| b.is_ascii_digit()))),
            None => false,
        }
    }

    /// Parses the output of `tcpdump -dd` (`{ 0x28, 0, 0, 0x0000000c },` per line) or of
    /// `tcpdump -ddd` (a count, then `40 0 0 12` per line).
    pub fn parse(text: &str) -> Result<Self> {
        let lines: Vec<(usize, &str)> =
            text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty()).collect();
        let is_ddd = lines.first().is_some_and(|(_, l)| !l.starts_with('{'));
        let body = if is_ddd { &lines[1..] } else { &lines[..] };
        let mut out = Vec::with_capacity(body.len());
        for &(line_no, line) in body {
            let fields = if is_ddd {
                line
            } else {
                line.trim_end_matches(',')
                    .strip_prefix('{')
                    .and_then(|l| l.strip_suffix('}'))
                    .ok_or_else(|| bad_line(line_no, line))?
            };
            let nums: Vec<&str> =
                if is_ddd { fields.split_whitespace().collect() } else { fields.split(',').map(str::trim).collect() };
            let [code, jt, jf, k] = nums[..] else {
                return Err(bad_line(line_no, line));
            };
            let field = |s: &str| parse_number(s).ok_or_else(|| bad_line(line_no, line));
            out.push(
                instruction(field(code)?, field(jt)?, field(jf)?, field(k)?).map_err(|_| bad_line(line_no, line))?,
            );
        }
        if is_ddd {
            let (line_no, first) = lines[0];
            let count = parse_number(first).ok_or_else(|| bad_line(line_no, first))?;
            if count != out.len() as u64 {
                return Err(Error::invalid_option(
                    "filter",
                    format!("the program announces {count} instructions but has {}", out.len()),
                ));
            }
        }
        Self::new(out)
    }

    /// One instruction from numbers, with each field checked against its width.
    pub fn instruction_from(code: f64, jt: f64, jf: f64, k: f64) -> Result<sock_filter> {
        let as_u64 = |v: f64| (v.fract() == 0.0 && v >= 0.0).then_some(v as u64);
        match (as_u64(code), as_u64(jt), as_u64(jf), as_u64(k)) {
            (Some(c), Some(t), Some(f), Some(k)) => instruction(c, t, f, k),
            _ => Err(Error::invalid_option("filter", "instruction fields must be non-negative integers")),
        }
    }

    /// A program that accepts every packet, truncated to `snap_len` bytes.
    pub fn accept_all(snap_len: u32) -> Self {
        BpfProgram(vec![sock_filter { code: ffi::BPF_RET | ffi::BPF_K, jt: 0, jf: 0, k: snap_len }])
    }

    /// The same program with every constant accepting return lowered to at most `snap_len`.
    /// The return value of a socket filter is the number of bytes to keep, which is how
    /// libpcap implements the snapshot length too.
    pub fn with_snap_len(&self, snap_len: u32) -> Self {
        let mut insns = self.0.clone();
        for insn in &mut insns {
            let is_ret_k =
                insn.code & ffi::BPF_CLASS_MASK == ffi::BPF_RET && insn.code & ffi::BPF_RVAL_MASK == ffi::BPF_K;
            if is_ret_k && insn.k != 0 {
                insn.k = insn.k.min(snap_len);
            }
        }
        BpfProgram(insns)
    }

    pub fn instructions(&self) -> &[sock_filter] {
        &self.0
    }
}

fn instruction(code: u64, jt: u64, jf: u64, k: u64) -> Result<sock_filter> {
    if code > u16::MAX as u64 || jt > u8::MAX as u64 || jf > u8::MAX as u64 || k > u32::MAX as u64 {
        return Err(Error::invalid_option(
            "filter",
            format!("instruction {{ {code}, {jt}, {jf}, {k} }} has a field out of range (code: 16 bits, jt/jf: 8 bits, k: 32 bits)"),
        ));
    }
    Ok(sock_filter { code: code as u16, jt: jt as u8, jf: jf as u8, k: k as u32 })
}

fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn bad_line(line_no: usize, line: &str) -> Error {
    Error::invalid_option(
        "filter",
        format!("line {line_no} is not a BPF instruction in `tcpdump -dd` or `-ddd` form: {line:?}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // `tcpdump -dd udp` on an Ethernet interface.
    const UDP_DD: &str = "{ 0x28, 0, 0, 0x0000000c },
{ 0x15, 0, 5, 0x000086dd },
{ 0x30, 0, 0, 0x00000014 },
{ 0x15, 6, 0, 0x00000011 },
{ 0x15, 0, 6, 0x0000002c },
{ 0x30, 0, 0, 0x00000036 },
{ 0x15, 3, 4, 0x00000011 },
{ 0x15, 0, 3, 0x00000800 },
{ 0x30, 0, 0, 0x00000017 },
{ 0x15, 0, 1, 0x00000011 },
{ 0x6, 0, 0, 0x00040000 },
{ 0x6, 0, 0, 0x00000000 },
";

    #[test]
    fn parses_tcpdump_dd() {
        let p = BpfProgram::parse(UDP_DD).unwrap();
        assert_eq!(p.instructions().len(), 12);
        assert_eq!(p.instructions()[1], sock_filter { code: 0x15, jt: 0, jf: 5, k: 0x86dd });
    }

    #[test]
    fn parses_tcpdump_ddd() {
        let p = BpfProgram::parse("2\n40 0 0 12\n6 0 0 262144\n").unwrap();
        assert_eq!(p.instructions()[0], sock_filter { code: 40, jt: 0, jf: 0, k: 12 });
        assert!(BpfProgram::parse("3\n40 0 0 12\n6 0 0 262144\n").is_err());
    }

    #[test]
    fn refuses_garbage_with_line_number() {
        let e = BpfProgram::parse("{ 0x28, 0, 0, 0xc },\n{ 0x15, 0, }\n").unwrap_err();
        assert!(e.message.contains("line 2"), "{}", e.message);
        assert!(BpfProgram::parse("{ 0x10000, 0, 0, 0 }").is_err());
        assert!(BpfProgram::parse("").is_err());
    }

    #[test]
    fn snap_len_lowers_accepting_returns_only() {
        let p = BpfProgram::parse(UDP_DD).unwrap().with_snap_len(96);
        assert_eq!(p.instructions()[10].k, 96);
        assert_eq!(p.instructions()[11].k, 0);
        assert_eq!(p.instructions()[0].k, 12, "loads are untouched");
    }

    #[test]
    fn text_is_a_program_or_an_expression() {
        assert!(BpfProgram::is_program_text(UDP_DD));
        assert!(BpfProgram::is_program_text("2\n40 0 0 12\n6 0 0 262144\n"));
        assert!(!BpfProgram::is_program_text("tcp port 80"));
        assert!(!BpfProgram::is_program_text("len <= 100"));
        assert!(!BpfProgram::is_program_text(""));
    }

    #[test]
    #[cfg_attr(all(target_env = "musl", target_feature = "crt-static"), ignore)]
    fn an_expression_compiles_with_the_snap_length() {
        let p = BpfProgram::from_text("udp", Some(96)).unwrap();
        let returns: Vec<u32> =
            p.instructions().iter().filter(|i| i.code == ffi::BPF_RET | ffi::BPF_K).map(|i| i.k).collect();
        assert_eq!(returns, [96, 0]);
        assert_eq!(BpfProgram::from_text(UDP_DD, Some(96)).unwrap(), BpfProgram::parse(UDP_DD).unwrap());
    }

    #[test]
    fn instruction_fields_are_range_checked() {
        assert!(BpfProgram::instruction_from(6.0, 0.0, 0.0, 65535.0).is_ok());
        assert!(BpfProgram::instruction_from(6.0, 256.0, 0.0, 0.0).is_err());
        assert!(BpfProgram::instruction_from(6.5, 0.0, 0.0, 0.0).is_err());
        assert!(BpfProgram::instruction_from(-1.0, 0.0, 0.0, 0.0).is_err());
    }
}
