//! The system's libpcap, loaded at run time, compiles pcap-filter expressions (`tcp port 443`)
//! into classic BPF. netring never compiles expressions itself: libpcap's compiler is the
//! definition of the language, so a filter means here exactly what it means to tcpdump.
//!
//! The library is opened with `dlopen` on first use (through `libloading`), not linked: the addon
//! loads and works on machines without libpcap, and only string filters need it. Where it is
//! missing, compiling reports which package to install.

use std::ffi::{c_char, c_int, c_uint, CStr, CString};
use std::sync::OnceLock;

use libloading::Library;
use nix::errno::Errno;

use crate::error::{Error, Result, Subject};
use crate::ffi::sock_filter;
use crate::BpfProgram;

/// Sonames tried in order: Debian/Ubuntu's `libpcap0.8`, then the generic names of other
/// distributions (Fedora, Alpine, Arch).
const SONAMES: [&str; 3] = ["libpcap.so.0.8", "libpcap.so.1", "libpcap.so"];

/// libpcap's link type for Ethernet (`DLT_EN10MB` in pcap/dlt.h): what an AF_PACKET socket on
/// an Ethernet or veth interface sees.
pub const DLT_EN10MB: c_int = 1;

/// libpcap's largest snapshot length (`MAXIMUM_SNAPLEN`), which tcpdump uses by default; the
/// accepting return of a compiled filter is the snapshot length.
pub const MAXIMUM_SNAPLEN: u32 = 262_144;

/// `PCAP_NETMASK_UNKNOWN`: only `ip broadcast` needs a netmask, and then libpcap says so.
const NETMASK_UNKNOWN: c_uint = 0xffff_ffff;

/// `struct bpf_program` of pcap/bpf.h: libpcap's ABI, not the kernel's. Its instructions have
/// the layout of the kernel's `sock_filter` (`struct bpf_insn`).
#[repr(C)]
struct bpf_program {
    bf_len: c_uint,
    bf_insns: *mut sock_filter,
}

#[repr(C)]
struct pcap_t {
    _private: [u8; 0],
}

type OpenDead = unsafe extern "C" fn(c_int, c_int) -> *mut pcap_t;
type Compile = unsafe extern "C" fn(*mut pcap_t, *mut bpf_program, *const c_char, c_int, c_uint) -> c_int;
type GetErr = unsafe extern "C" fn(*mut pcap_t) -> *mut c_char;
type FreeCode = unsafe extern "C" fn(*mut bpf_program);
type Close = unsafe extern "C" fn(*mut pcap_t);

struct Libpcap {
    open_dead: OpenDead,
    compile: Compile,
    geterr: GetErr,
    freecode: FreeCode,
    close: Close,
    // Keeps the symbols above valid; never unloaded.
    _library: Library,
}

// libpcap's compiler is not re-entrant before 1.8 and shares a lexer state; one compile at a
// time keeps every version safe.
static COMPILER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn library() -> std::result::Result<&'static Libpcap, String> {
    static LIBPCAP: OnceLock<std::result::Result<Libpcap, String>> = OnceLock::new();
    LIBPCAP.get_or_init(load).as_ref().map_err(Clone::clone)
}

/// `NETRING_LIBPCAP` names one library file to use instead of searching the sonames.
fn load() -> std::result::Result<Libpcap, String> {
    let chosen = std::env::var("NETRING_LIBPCAP").ok().filter(|p| !p.is_empty());
    let candidates: Vec<String> = match chosen {
        Some(path) => vec![path],
        None => SONAMES.iter().map(|s| s.to_string()).collect(),
    };
    let mut failures = Vec::new();
    for soname in &candidates {
        // SAFETY: loading libpcap runs no initialisers with preconditions of ours.
        match unsafe { Library::new(soname) } {
            Ok(library) => return symbols(library).map_err(|e| format!("{soname}: {e}")),
            Err(e) => failures.push(e.to_string()),
        }
    }
    Err(failures.join("; "))
}

fn symbols(library: Library) -> std::result::Result<Libpcap, libloading::Error> {
    // SAFETY: the types above are libpcap's documented prototypes (pcap/pcap.h).
    unsafe {
        Ok(Libpcap {
            open_dead: *library.get::<OpenDead>(b"pcap_open_dead\0")?,
            compile: *library.get::<Compile>(b"pcap_compile\0")?,
            geterr: *library.get::<GetErr>(b"pcap_geterr\0")?,
            freecode: *library.get::<FreeCode>(b"pcap_freecode\0")?,
            close: *library.get::<Close>(b"pcap_close\0")?,
            _library: library,
        })
    }
}

/// Whether the system's libpcap could be loaded.
pub fn available() -> bool {
    library().is_ok()
}

/// Compiles `expression` as tcpdump does (`pcap_compile` with optimisation, on a dead Ethernet
/// handle with `snap_len`), so the program equals `tcpdump -dd -s <snap_len>`.
pub fn compile(expression: &str, snap_len: u32) -> Result<BpfProgram> {
    let lib = library().map_err(|why| {
        Error::new(
            Errno::ENOENT,
            Subject::Option("filter"),
            format!("a filter expression needs the system's libpcap, which could not be loaded ({why})"),
        )
        .with_syscall("dlopen")
        .with_hint(
            "install libpcap (Debian/Ubuntu: `apt-get install libpcap0.8`, Fedora: `dnf install libpcap`, \
             Alpine: `apk add libpcap`), or pass the filter as instructions (the output of `tcpdump -dd`)",
        )
    })?;
    let text = CString::new(expression)
        .map_err(|_| Error::invalid_option("filter", "the expression contains a NUL character"))?;
    let snap = c_int::try_from(snap_len.clamp(1, MAXIMUM_SNAPLEN)).unwrap_or(c_int::MAX);

    let _one_at_a_time = COMPILER.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: libpcap's API used as documented: the handle is closed and the program freed on
    // every path below, and the instructions are copied out before the program is freed.
    unsafe {
        let handle = (lib.open_dead)(DLT_EN10MB, snap);
        if handle.is_null() {
            return Err(Error::new(Errno::ENOMEM, Subject::Option("filter"), "pcap_open_dead failed"));
        }
        let mut program = bpf_program { bf_len: 0, bf_insns: std::ptr::null_mut() };
        let status = (lib.compile)(handle, &mut program, text.as_ptr(), 1, NETMASK_UNKNOWN);
        let result = if status != 0 {
            let message = CStr::from_ptr((lib.geterr)(handle)).to_string_lossy().into_owned();
            Err(Error::invalid_option("filter", format!("{message} (in {expression:?})"))
                .with_syscall("pcap_compile")
                .with_hint("see `man 7 pcap-filter` for the expression syntax"))
        } else {
            let insns = std::slice::from_raw_parts(program.bf_insns, program.bf_len as usize).to_vec();
            (lib.freecode)(&mut program);
            BpfProgram::new(insns)
        };
        (lib.close)(handle);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // musl static builds cannot dlopen, so libpcap is never there.
    #[test]
    #[cfg_attr(all(target_env = "musl", target_feature = "crt-static"), ignore)]
    fn compiles_an_expression_like_tcpdump() {
        let p = compile("udp", MAXIMUM_SNAPLEN).unwrap();
        // `tcpdump -dd udp`: 12 instructions, ethertype first, accepting return = snap length.
        assert_eq!(p.instructions().len(), 12);
        assert_eq!(p.instructions()[0], sock_filter { code: 0x28, jt: 0, jf: 0, k: 12 });
        assert_eq!(p.instructions()[10].k, MAXIMUM_SNAPLEN);
        assert_eq!(compile("udp", 96).unwrap().instructions()[10].k, 96);
    }

    #[test]
    #[cfg_attr(all(target_env = "musl", target_feature = "crt-static"), ignore)]
    fn a_bad_expression_is_einval_with_libpcaps_message() {
        let e = compile("tcp port", MAXIMUM_SNAPLEN).unwrap_err();
        assert_eq!(e.errno, Errno::EINVAL);
        assert_eq!(e.subject, Subject::Option("filter"));
        assert_eq!(e.syscall, Some("pcap_compile"));
        assert!(e.message.contains("syntax error"), "{}", e.message);
        assert!(compile("a\0b", 100).is_err());
    }

    #[test]
    #[cfg_attr(all(target_env = "musl", target_feature = "crt-static"), ignore)]
    fn compiles_from_many_threads() {
        let threads: Vec<_> =
            (0..8).map(|i| std::thread::spawn(move || compile(&format!("tcp port {}", 1000 + i), 128))).collect();
        for t in threads {
            assert!(t.join().unwrap().is_ok());
        }
    }
}
