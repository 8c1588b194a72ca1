//! The `bpf()` system call, and netring's XDP program assembled from instructions: no ELF file,
//! no C toolchain. The program is libxdp's default AF_XDP program (`xsk_def_xdp_prog.c`):
//!
//! ```c
//! return bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
//! ```
//!
//! The low bits of `bpf_redirect_map`'s flags are the action taken when the map has no socket at
//! that index (kernel ≥ 5.3), so queues without a socket, and everything once the socket is
//! closed, go on to the kernel stack.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

use crate::ffi;

/// `bpf(cmd, attr, sizeof attr)`, retried on EINTR (PROG_LOAD may be interrupted).
fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> Result<libc::c_long, Errno> {
    loop {
        // SAFETY: `attr` is a live, fully initialised bpf_attr prefix of its own size.
        let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
        if rc >= 0 {
            return Ok(rc);
        }
        match Errno::last() {
            Errno::EINTR | Errno::EAGAIN if cmd == ffi::BPF_PROG_LOAD => continue,
            e => return Err(e),
        }
    }
}

fn bpf_fd<T>(cmd: libc::c_int, attr: &mut T) -> Result<OwnedFd, Errno> {
    // SAFETY: these commands return a new descriptor we own (they set O_CLOEXEC themselves).
    bpf(cmd, attr).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn name16(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..name.len().min(15)].copy_from_slice(&name.as_bytes()[..name.len().min(15)]);
    out
}

/// An XSKMAP with `entries` slots (one per RX queue), keyed by queue, holding socket fds.
pub fn create_xskmap(entries: u32) -> Result<OwnedFd, Errno> {
    create_map(ffi::BPF_MAP_TYPE_XSKMAP, entries, "netring_xsks")
}

/// A map of `map_type` with `entries` 4-byte keys and values.
fn create_map(map_type: u32, entries: u32, name: &str) -> Result<OwnedFd, Errno> {
    let mut attr = ffi::bpf_attr_map_create {
        map_type,
        key_size: 4,
        value_size: 4,
        max_entries: entries,
        map_name: name16(name),
        ..Default::default()
    };
    bpf_fd(ffi::BPF_MAP_CREATE, &mut attr)
}

/// Puts socket `xsk` at `queue` in `map`.
pub fn xskmap_insert(map: BorrowedFd<'_>, queue: u32, xsk: BorrowedFd<'_>) -> Result<(), Errno> {
    let key = queue;
    let value = xsk.as_raw_fd() as u32;
    let mut attr = ffi::bpf_attr_map_elem {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        value: &value as *const u32 as u64,
        ..Default::default()
    };
    bpf(ffi::BPF_MAP_UPDATE_ELEM, &mut attr).map(drop)
}

/// Opens a pinned object (`/sys/fs/bpf/...`).
pub fn obj_get(path: &str) -> Result<OwnedFd, Errno> {
    let c = std::ffi::CString::new(path).map_err(|_| Errno::EINVAL)?;
    let mut attr = ffi::bpf_attr_obj_get { pathname: c.as_ptr() as u64, ..Default::default() };
    bpf_fd(ffi::BPF_OBJ_GET, &mut attr)
}

/// The kernel's (type, id) of a program or map.
pub fn info_head(fd: BorrowedFd<'_>) -> Result<ffi::bpf_info_head, Errno> {
    let mut head = ffi::bpf_info_head::default();
    let mut attr = ffi::bpf_attr_info_by_fd {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<ffi::bpf_info_head>() as u32,
        info: &mut head as *mut ffi::bpf_info_head as u64,
    };
    bpf(ffi::BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(head)
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> ffi::bpf_insn {
    ffi::bpf_insn { code, regs: (src << 4) | dst, off, imm }
}

/// The redirect program's instructions for the XSKMAP `map_fd`.
pub fn redirect_program(map_fd: i32) -> [ffi::bpf_insn; 6] {
    [
        // r2 = ctx->rx_queue_index
        insn(ffi::BPF_LDX_MEM_W, 2, 1, ffi::XDP_MD_RX_QUEUE_INDEX, 0),
        // r1 = &xsks_map (a 64-bit immediate in two instructions; the verifier swaps the fd for
        // the map)
        insn(ffi::BPF_LD_IMM_DW, 1, ffi::BPF_PSEUDO_MAP_FD, 0, map_fd),
        insn(0, 0, 0, 0, 0),
        // r3 = XDP_PASS: the action when the queue has no socket
        insn(ffi::BPF_ALU64_MOV_K, 3, 0, 0, ffi::XDP_PASS),
        // r0 = bpf_redirect_map(r1, r2, r3)
        insn(ffi::BPF_JMP_CALL, 0, 0, 0, ffi::BPF_FUNC_REDIRECT_MAP),
        insn(ffi::BPF_JMP_EXIT, 0, 0, 0, 0),
    ]
}

/// Loads the redirect program for `map`. On failure returns the errno and the verifier's log.
pub fn load_redirect_program(map: BorrowedFd<'_>) -> Result<OwnedFd, (Errno, String)> {
    load_program(ffi::BPF_PROG_TYPE_XDP, &redirect_program(map.as_raw_fd()), "netring_xsk")
}

/// Loads a program of `prog_type` (XDP programs with the BPF_XDP attach type, so that a link
/// takes them). On failure returns the errno and the verifier's log.
fn load_program(prog_type: u32, insns: &[ffi::bpf_insn], name: &str) -> Result<OwnedFd, (Errno, String)> {
    let license = c"GPL";
    let mut log = vec![0u8; 4096];
    let mut attr = ffi::bpf_attr_prog_load {
        prog_type,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name16(name),
        expected_attach_type: if prog_type == ffi::BPF_PROG_TYPE_XDP { ffi::BPF_XDP } else { 0 },
        ..Default::default()
    };
    match bpf_fd(ffi::BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(fd),
        Err(Errno::EPERM) => Err((Errno::EPERM, String::new())),
        Err(_) => {
            // Load again with the verifier log on, to say why.
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let e = bpf_fd(ffi::BPF_PROG_LOAD, &mut attr).err().unwrap_or(Errno::EINVAL);
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            Err((e, String::from_utf8_lossy(&log[..end]).trim().to_string()))
        }
    }
}

/// A descriptor of our own for a caller's descriptor number, which stays the caller's: netring
/// never closes it, and the caller may close it while netring still uses the object.
pub fn dup_caller_fd(raw: RawFd) -> Result<OwnedFd, Errno> {
    // SAFETY: fcntl on any number is harmless: a number that is not open gives EBADF.
    let fd = unsafe { libc::fcntl(raw, libc::F_DUPFD_CLOEXEC, 3) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What a descriptor refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FdKind {
    Program,
    Map,
    /// Anything else, as /proc names it (`socket:[123]`, a path, `anon_inode:bpf_link`).
    Other(String),
}

/// Whether `fd` is a BPF program, a BPF map or something else. BPF_OBJ_GET_INFO_BY_FD cannot
/// tell: a program's and a map's info both begin with (type, id).
pub fn fd_kind(fd: BorrowedFd<'_>) -> FdKind {
    match std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())) {
        Ok(target) => match target.to_string_lossy() {
            t if t == ffi::BPF_PROG_FD_LINK => FdKind::Program,
            t if t == ffi::BPF_MAP_FD_LINK => FdKind::Map,
            t => FdKind::Other(t.into_owned()),
        },
        Err(e) => FdKind::Other(format!("unknown ({e})")),
    }
}

/// A program's (type, id) and the ids of the maps it uses.
pub fn program_maps(prog: BorrowedFd<'_>) -> Result<(ffi::bpf_info_head, Vec<u32>), Errno> {
    let mut ids = [0u32; ffi::BPF_MAX_USED_MAPS];
    let mut info = ffi::bpf_prog_info_maps {
        nr_map_ids: ids.len() as u32,
        map_ids: ids.as_mut_ptr() as u64,
        ..Default::default()
    };
    let mut attr = ffi::bpf_attr_info_by_fd {
        bpf_fd: prog.as_raw_fd() as u32,
        info_len: std::mem::size_of::<ffi::bpf_prog_info_maps>() as u32,
        info: &mut info as *mut ffi::bpf_prog_info_maps as u64,
    };
    bpf(ffi::BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    let n = (info.nr_map_ids as usize).min(ids.len());
    Ok((ffi::bpf_info_head { kind: info.kind, id: info.id }, ids[..n].to_vec()))
}

/// Opens the map with kernel id `id` (needs CAP_SYS_ADMIN).
pub fn map_by_id(id: u32) -> Result<OwnedFd, Errno> {
    let mut attr = ffi::bpf_attr_get_id { id, ..Default::default() };
    bpf_fd(ffi::BPF_MAP_GET_FD_BY_ID, &mut attr)
}

/// BPF objects for the tests of a caller's own program and XSKMAP (Node cannot make them).
#[doc(hidden)]
pub struct TestObjects {
    pub program: OwnedFd,
    pub xskmaps: Vec<OwnedFd>,
    pub arrays: Vec<OwnedFd>,
}

/// For tests: a program that uses `xskmaps` XSKMAPs of 4 entries (redirecting to the first, as
/// netring's own program does; with none it passes everything) and `arrays` array maps; with
/// `xdp` false, a socket filter that uses no map.
#[doc(hidden)]
pub fn make_test_objects(xskmaps: u32, arrays: u32, xdp: bool) -> Result<TestObjects, (Errno, String)> {
    let no_log = |e| (e, String::new());
    let xskmaps = (0..xskmaps).map(|_| create_xskmap(4)).collect::<Result<Vec<_>, _>>().map_err(no_log)?;
    let arrays = (0..arrays)
        .map(|_| create_map(ffi::BPF_MAP_TYPE_ARRAY, 1, "netring_test"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(no_log)?;
    if !xdp {
        let insns = [insn(ffi::BPF_ALU64_MOV_K, 0, 0, 0, 0), insn(ffi::BPF_JMP_EXIT, 0, 0, 0, 0)];
        let program = load_program(ffi::BPF_PROG_TYPE_SOCKET_FILTER, &insns, "netring_test")?;
        return Ok(TestObjects { program, xskmaps, arrays });
    }
    // The verifier records every map a program loads, so loading a map into r1 and then
    // overwriting it makes the program use it.
    let mut insns = Vec::new();
    for map in xskmaps.iter().skip(1).chain(&arrays) {
        insns.extend([insn(ffi::BPF_LD_IMM_DW, 1, ffi::BPF_PSEUDO_MAP_FD, 0, map.as_raw_fd()), insn(0, 0, 0, 0, 0)]);
    }
    match xskmaps.first() {
        Some(first) => insns.extend(redirect_program(first.as_raw_fd())),
        None => insns.extend([insn(ffi::BPF_ALU64_MOV_K, 0, 0, 0, ffi::XDP_PASS), insn(ffi::BPF_JMP_EXIT, 0, 0, 0, 0)]),
    }
    let program = load_program(ffi::BPF_PROG_TYPE_XDP, &insns, "netring_test")?;
    Ok(TestObjects { program, xskmaps, arrays })
}

/// Attaches `prog` to `ifindex` with a BPF link: the kernel detaches it when the link's last
/// descriptor closes, which includes the process dying by any signal. `flags` is one mode flag
/// (XDP_FLAGS_DRV_MODE or XDP_FLAGS_SKB_MODE) or 0.
pub fn link_create(prog: BorrowedFd<'_>, ifindex: u32, flags: u32) -> Result<OwnedFd, Errno> {
    let mut attr = ffi::bpf_attr_link_create {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: ffi::BPF_XDP,
        flags,
    };
    bpf_fd(ffi::BPF_LINK_CREATE, &mut attr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_reads_the_queue_and_redirects_with_pass_as_fallback() {
        let p = redirect_program(7);
        assert_eq!((p[0].code, p[0].regs, p[0].off), (0x61, 0x12, 16), "r2 = *(u32 *)(r1 + 16)");
        assert_eq!((p[1].code, p[1].regs, p[1].imm), (0x18, 0x11, 7), "r1 = map fd 7 (pseudo)");
        assert_eq!(p[2], ffi::bpf_insn::default());
        assert_eq!((p[3].code, p[3].regs, p[3].imm), (0xb7, 0x03, 2), "r3 = XDP_PASS");
        assert_eq!((p[4].code, p[4].imm), (0x85, 51), "call bpf_redirect_map");
        assert_eq!(p[5].code, 0x95);
    }

    #[test]
    fn the_kernel_verifier_accepts_the_program() {
        if !crate::afxdp::is_root() {
            return;
        }
        let map = create_xskmap(4).unwrap();
        let prog =
            load_redirect_program(std::os::fd::AsFd::as_fd(&map)).map_err(|(e, log)| format!("{e}: {log}")).unwrap();
        let head = info_head(std::os::fd::AsFd::as_fd(&prog)).unwrap();
        assert_eq!(head.kind, ffi::BPF_PROG_TYPE_XDP);
        assert!(head.id > 0);
    }
}
