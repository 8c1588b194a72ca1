//! Which XDP program steers an interface's packets into netring's sockets, and its lifetime.
//!
//! The built-in program is attached with a BPF link, never through netlink: the link is a file
//! descriptor, and the kernel detaches the program when its last descriptor closes, so it cannot
//! outlive the process (exit, crash or SIGKILL). An interface takes one XDP link, so the sockets
//! of this process on several queues of one interface share one program, one XSKMAP and one link
//! through a per-interface registry; the link goes with the last socket.
//!
//! A user's own XDP program given by descriptor is attached the same way and shares the same
//! registry (an interface runs one program, so asking for another one there is EBUSY); its socket
//! joins the program's XSKMAP. A user's program attached already is only joined, through its
//! XSKMAP. The caller's descriptors are duplicated, never closed.
//!
//! A program that this process did not attach (another process's, netring's too, `ip link set xdp`) is
//! never replaced: attaching then fails with EBUSY.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, Weak};

use nix::errno::Errno;

use crate::afpacket::socket::Interface;
use crate::error::{Error, Result, Subject};
use crate::ffi;

use super::bpf;

/// How the program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// Driver mode where the driver supports it, else generic (skb) mode.
    Auto,
    /// Native XDP in the driver (XDP_FLAGS_DRV_MODE).
    Driver,
    /// Generic XDP after the skb is built (XDP_FLAGS_SKB_MODE), on any device.
    Skb,
}

impl AttachMode {
    pub fn name(self) -> &'static str {
        match self {
            AttachMode::Auto => "auto",
            AttachMode::Driver => "driver",
            AttachMode::Skb => "skb",
        }
    }
}

/// Where the socket's XSKMAP comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgramChoice {
    /// netring's own program, attached with a link.
    BuiltIn,
    /// The user's program is attached already; netring only puts its socket into this XSKMAP
    /// at its queue.
    XskMap(XskMapSource),
    /// The user's XDP program, by descriptor: netring attaches it with a link (shared like the
    /// built-in one) and puts its socket into the program's XSKMAP, or into `xsk_map`.
    Program { fd: RawFd, xsk_map: Option<XskMapSource> },
    /// No program: the socket only transmits.
    None,
}

/// An XSKMAP of the user's: pinned in bpffs, or a descriptor that stays the caller's (netring
/// works on a duplicate and never closes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XskMapSource {
    Path(String),
    Fd(RawFd),
}

/// Which program an attachment runs: netring's, or the user's (by kernel id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runs {
    BuiltIn,
    User(u32),
}

impl Runs {
    fn describe(self) -> String {
        match self {
            Runs::BuiltIn => "netring's built-in program".into(),
            Runs::User(id) => format!("the program with id {id} (program.fd)"),
        }
    }
}

/// A program attached by this process to one interface. Dropping the last reference closes the
/// link (the kernel detaches the program), then the program and the map: fields drop in
/// declaration order.
pub struct Attachment {
    _link: OwnedFd,
    _prog: OwnedFd,
    /// netring's own XSKMAP (the built-in program only).
    map: Option<OwnedFd>,
    mode: AttachMode,
    runs: Runs,
    prog_id: u32,
}

impl Attachment {
    /// The mode the kernel attached in (Driver or Skb, never Auto).
    pub fn mode(&self) -> AttachMode {
        self.mode
    }

    pub fn prog_id(&self) -> u32 {
        self.prog_id
    }
}

static REGISTRY: Mutex<Option<HashMap<u32, Weak<Attachment>>>> = Mutex::new(None);

/// The XSKMAP a socket goes into, and the attachment (if any) that must outlive its place there.
pub struct Steering {
    pub attachment: Option<Arc<Attachment>>,
    /// The user's XSKMAP (a duplicate), when the map is not the built-in program's.
    user_map: Option<OwnedFd>,
}

impl Steering {
    pub fn map(&self) -> Option<BorrowedFd<'_>> {
        self.user_map.as_ref().or(self.attachment.as_ref().and_then(|a| a.map.as_ref())).map(AsFd::as_fd)
    }
}

/// Sets up `choice` on `iface`: every check of the user's descriptors comes before anything is
/// attached. `queues`: RX queue count (the built-in map's size).
pub fn steer(choice: &ProgramChoice, iface: &Interface, mode: AttachMode, queues: u32) -> Result<Steering> {
    Ok(match choice {
        ProgramChoice::BuiltIn => {
            Steering { attachment: Some(attach(iface, mode, Wanted::BuiltIn { queues })?), user_map: None }
        }
        ProgramChoice::XskMap(source) => Steering { attachment: None, user_map: Some(open_xskmap(source)?) },
        ProgramChoice::Program { fd, xsk_map } => {
            let (prog, info, map_ids) = open_user_program(*fd)?;
            let map = match xsk_map {
                Some(source) => open_xskmap(source)?,
                None => program_xskmap(info.id, &map_ids)?,
            };
            let attachment = attach(iface, mode, Wanted::User { prog, id: info.id })?;
            Steering { attachment: Some(attachment), user_map: Some(map) }
        }
        ProgramChoice::None => Steering { attachment: None, user_map: None },
    })
}

enum Wanted {
    BuiltIn { queues: u32 },
    User { prog: OwnedFd, id: u32 },
}

/// The process's attachment on `iface`, created on first use. `mode`: Auto shares whatever is
/// attached; Driver or Skb must match it. A different program than the one attached: EBUSY.
fn attach(iface: &Interface, mode: AttachMode, wanted: Wanted) -> Result<Arc<Attachment>> {
    let runs = match wanted {
        Wanted::BuiltIn { .. } => Runs::BuiltIn,
        Wanted::User { id, .. } => Runs::User(id),
    };
    let mut registry = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    let registry = registry.get_or_insert_with(HashMap::new);
    registry.retain(|_, w| w.strong_count() > 0);
    if let Some(existing) = registry.get(&iface.index).and_then(Weak::upgrade) {
        if existing.runs != runs {
            return Err(Error::new(
                Errno::EBUSY,
                Subject::Option("program"),
                format!(
                    "this process attached {} to '{}'; {} was asked for",
                    existing.runs.describe(),
                    iface.name,
                    runs.describe()
                ),
            )
            .with_hint("an interface runs one XDP program: open every socket on it with the same program option"));
        }
        if mode != AttachMode::Auto && mode != existing.mode {
            return Err(Error::new(
                Errno::EBUSY,
                Subject::Option("attach"),
                format!(
                    "another socket of this process attached the XDP program to '{}' in {} mode; {} mode was asked for",
                    iface.name,
                    existing.mode.name(),
                    mode.name()
                ),
            )
            .with_hint("sockets on one interface share one program: use the same attach mode (or 'auto') for all"));
        }
        return Ok(existing);
    }
    let attachment = Arc::new(match wanted {
        Wanted::BuiltIn { queues } => {
            let (prog, map) = load_builtin(iface, queues)?;
            let prog_id = bpf::info_head(prog.as_fd()).map(|h| h.id).unwrap_or(0);
            let (link, mode) = link(iface, prog.as_fd(), mode)?;
            Attachment { _link: link, _prog: prog, map: Some(map), mode, runs, prog_id }
        }
        Wanted::User { prog, id } => {
            let (link, mode) = link(iface, prog.as_fd(), mode)?;
            Attachment { _link: link, _prog: prog, map: None, mode, runs, prog_id: id }
        }
    });
    registry.insert(iface.index, Arc::downgrade(&attachment));
    Ok(attachment)
}

/// netring's program and its XSKMAP of `queues` entries.
fn load_builtin(iface: &Interface, queues: u32) -> Result<(OwnedFd, OwnedFd)> {
    let subject = iface.subject();
    let map = bpf::create_xskmap(queues.max(1))
        .map_err(|e| bpf_error(e, "bpf", subject.clone(), "creating the XSKMAP (BPF_MAP_CREATE)"))?;
    let prog = bpf::load_redirect_program(map.as_fd()).map_err(|(e, log)| {
        let err = bpf_error(e, "bpf", subject.clone(), "loading the XDP program (BPF_PROG_LOAD)");
        if log.is_empty() {
            err
        } else {
            err.with_hint(format!("the verifier said: {log}"))
        }
    })?;
    Ok((prog, map))
}

/// Attaches `prog` to `iface` with a link; the mode the kernel took (Driver or Skb).
fn link(iface: &Interface, prog: BorrowedFd<'_>, mode: AttachMode) -> Result<(OwnedFd, AttachMode)> {
    let try_mode = |m: AttachMode| {
        let flags = if m == AttachMode::Driver { ffi::XDP_FLAGS_DRV_MODE } else { ffi::XDP_FLAGS_SKB_MODE };
        bpf::link_create(prog, iface.index, flags)
    };
    Ok(match mode {
        AttachMode::Auto => match try_mode(AttachMode::Driver) {
            Ok(link) => (link, AttachMode::Driver),
            // A program someone else attached: never fall back around it.
            Err(e @ (Errno::EBUSY | Errno::EEXIST | Errno::EPERM)) => {
                return Err(attach_error(e, iface, AttachMode::Driver))
            }
            // The driver cannot (no native XDP, MTU too large, ...): generic mode works on any device.
            Err(_) => {
                (try_mode(AttachMode::Skb).map_err(|e| attach_error(e, iface, AttachMode::Skb))?, AttachMode::Skb)
            }
        },
        m => (try_mode(m).map_err(|e| attach_error(e, iface, m))?, m),
    })
}

const PROGRAM_FD_HINT: &str = "pass the descriptor of a loaded XDP program (libbpf: bpf_program__fd()) \
that is still open in this process";
const XSKMAP_FD_HINT: &str = "pass an XSKMAP (BPF_MAP_TYPE_XSKMAP) of your program: its descriptor \
(libbpf: bpf_map__fd()) or its pinned path under /sys/fs/bpf";

/// A duplicate of the caller's descriptor `fd`, checked to be a BPF program or map (`want`).
fn caller_object(fd: RawFd, option: &'static str, want: bpf::FdKind, hint: &'static str) -> Result<OwnedFd> {
    let what = if want == bpf::FdKind::Program { "a BPF program" } else { "a BPF map" };
    let dup = bpf::dup_caller_fd(fd).map_err(|e| {
        Error::new(e, Subject::Option(option), format!("invalid option {option}: {fd} is not an open descriptor"))
            .with_syscall("fcntl")
            .with_hint(hint)
    })?;
    match bpf::fd_kind(dup.as_fd()) {
        kind if kind == want => Ok(dup),
        kind => {
            let is = match kind {
                bpf::FdKind::Program => "a BPF program".to_string(),
                bpf::FdKind::Map => "a BPF map".to_string(),
                bpf::FdKind::Other(name) => format!("'{name}'"),
            };
            Err(Error::invalid_option(option, format!("descriptor {fd} is {is}, not {what}")).with_hint(hint))
        }
    }
}

/// The user's XDP program: our duplicate, its (type, id) and the ids of the maps it uses.
fn open_user_program(fd: RawFd) -> Result<(OwnedFd, ffi::bpf_info_head, Vec<u32>)> {
    let prog = caller_object(fd, "program.fd", bpf::FdKind::Program, PROGRAM_FD_HINT)?;
    let (info, map_ids) = bpf::program_maps(prog.as_fd()).map_err(|e| {
        bpf_error(e, "bpf", Subject::Option("program.fd"), "reading the program's info (BPF_OBJ_GET_INFO_BY_FD)")
    })?;
    if info.kind != ffi::BPF_PROG_TYPE_XDP {
        return Err(Error::invalid_option(
            "program.fd",
            format!(
                "descriptor {fd} is a BPF program of type {}, not an XDP program (type {})",
                info.kind,
                ffi::BPF_PROG_TYPE_XDP
            ),
        )
        .with_hint(PROGRAM_FD_HINT));
    }
    Ok((prog, info, map_ids))
}

/// The one XSKMAP among the maps (`map_ids`) of program `prog_id`.
fn program_xskmap(prog_id: u32, map_ids: &[u32]) -> Result<OwnedFd> {
    let mut xskmaps = Vec::new();
    for &id in map_ids {
        let map = match bpf::map_by_id(id) {
            Ok(map) => map,
            // Freed since the program was read (a map the program no longer holds): not its map.
            Err(Errno::ENOENT) => continue,
            Err(e) => {
                return Err(bpf_error(
                    e,
                    "bpf",
                    Subject::Option("program.fd"),
                    format!("opening map {id} of the program (BPF_MAP_GET_FD_BY_ID)"),
                )
                .with_hint("finding a program's XSKMAP by id needs CAP_SYS_ADMIN: pass it as program: { fd, xskMap }"))
            }
        };
        let kind = bpf::info_head(map.as_fd()).map(|h| h.kind).unwrap_or(0);
        xskmaps.push((id, kind, map));
    }
    only_xskmap(prog_id, xskmaps)
}

/// Picks the one XSKMAP of `maps` (id, map type, map); none or several is EINVAL.
fn only_xskmap<T>(prog_id: u32, maps: Vec<(u32, u32, T)>) -> Result<T> {
    let total = maps.len();
    let mut xsk: Vec<(u32, T)> =
        maps.into_iter().filter(|(_, kind, _)| *kind == ffi::BPF_MAP_TYPE_XSKMAP).map(|(id, _, m)| (id, m)).collect();
    if xsk.len() == 1 {
        return Ok(xsk.pop().expect("one").1);
    }
    let found = if xsk.is_empty() {
        format!("uses no XSKMAP (it uses {total} other map(s))")
    } else {
        let ids: Vec<String> = xsk.iter().map(|(id, _)| id.to_string()).collect();
        format!("uses {} XSKMAPs (ids {})", xsk.len(), ids.join(", "))
    };
    Err(Error::invalid_option("program.fd", format!("the XDP program (id {prog_id}) {found}, so netring cannot tell which to join"))
        .with_hint("pass the XSKMAP your program redirects to as well: program: { fd, xskMap: mapFd or '/sys/fs/bpf/...' } (a program that reaches its XSKMAP through a tail call or a dispatcher needs it too)"))
}

/// Opens the user's XSKMAP and checks that it is one.
pub fn open_xskmap(source: &XskMapSource) -> Result<OwnedFd> {
    let (fd, named) = match source {
        XskMapSource::Path(path) => (open_pinned(path)?, format!("'{path}'")),
        XskMapSource::Fd(fd) => {
            (caller_object(*fd, "program.xskMap", bpf::FdKind::Map, XSKMAP_FD_HINT)?, format!("descriptor {fd}"))
        }
    };
    let head = bpf::info_head(fd.as_fd()).map_err(|e| {
        bpf_error(
            e,
            "bpf",
            Subject::Option("program.xskMap"),
            format!("reading what {named} is (BPF_OBJ_GET_INFO_BY_FD)"),
        )
    })?;
    if head.kind != ffi::BPF_MAP_TYPE_XSKMAP {
        return Err(Error::invalid_option(
            "program.xskMap",
            format!("{named} is a BPF map of type {}, not an XSKMAP (type {})", head.kind, ffi::BPF_MAP_TYPE_XSKMAP),
        )
        .with_hint(XSKMAP_FD_HINT));
    }
    Ok(fd)
}

/// Opens a pinned BPF object that must be a map.
fn open_pinned(path: &str) -> Result<OwnedFd> {
    let fd = bpf::obj_get(path).map_err(|e| {
        bpf_error(
            e,
            "bpf",
            Subject::Option("program.xskMap"),
            format!("opening the pinned XSKMAP '{path}' (BPF_OBJ_GET)"),
        )
    })?;
    if bpf::fd_kind(fd.as_fd()) != bpf::FdKind::Map {
        return Err(Error::invalid_option("program.xskMap", format!("'{path}' is pinned, but is not a BPF map"))
            .with_hint(XSKMAP_FD_HINT));
    }
    Ok(fd)
}

pub const XDP_PERMISSION_HINT: &str = "AF_XDP needs CAP_NET_RAW, and attaching netring's XDP program \
CAP_NET_ADMIN and CAP_BPF (or root): grant them with `sudo setcap cap_net_raw,cap_net_admin,cap_bpf+ep \
\"$(readlink -f \"$(command -v node)\")\"`, or use program: 'none' for a TX-only socket";

fn bpf_error(e: Errno, syscall: &'static str, subject: Subject, doing: impl std::fmt::Display) -> Error {
    let err = Error::sys(e, syscall, subject, doing);
    if matches!(e, Errno::EPERM | Errno::EACCES) {
        err.with_hint(XDP_PERMISSION_HINT)
    } else {
        err
    }
}

fn attach_error(e: Errno, iface: &Interface, mode: AttachMode) -> Error {
    let doing = format!("attaching the XDP program to '{}' in {} mode (BPF_LINK_CREATE)", iface.name, mode.name());
    let err = bpf_error(e, "bpf", iface.subject(), doing);
    match e {
        // Same mode as an existing program: EBUSY; the other mode: EEXIST. Both mean one thing.
        Errno::EBUSY | Errno::EEXIST => Error { errno: Errno::EBUSY, ..err }.with_hint(format!(
            "'{}' already has an XDP program that this process did not attach (another process's, netring's too, \
             or one attached with `ip link` or bpftool: see `ip -d link show {}` or `bpftool net`); netring leaves \
             it alone. Detach it or end that process, or, if the program is yours and attached already, pass \
             program: {{ xskMap }} (a pinned path or a descriptor) with the XSKMAP it redirects to",
            iface.name, iface.name
        )),
        Errno::ERANGE => err.with_hint(format!(
            "the MTU of '{}' (or of its veth peer) is too large for native XDP without multi-buffer \
             support: a frame must fit one page with headroom, about 3520 bytes on a 4 KiB page. \
             Lower the MTU, or use attach: 'skb'",
            iface.name
        )),
        Errno::EOPNOTSUPP => err.with_hint("the driver has no native XDP: use attach: 'skb' (or 'auto')"),
        Errno::ENOTCONN => err.with_hint("a veth needs its peer up for native XDP"),
        Errno::ENOSPC => err.with_hint(
            "native XDP on a veth needs at least as many RX queues here as its peer has TX queues \
             (create the pair with numtxqueues/numrxqueues on both ends), or use attach: 'skb'",
        ),
        _ => err,
    }
}

#[cfg(test)]
mod tests {
    use crate::afxdp::is_root;
    use std::os::fd::AsRawFd;

    use super::*;

    fn option_and_code(e: Error) -> (Subject, Errno) {
        (e.subject, e.errno)
    }

    #[test]
    fn the_one_xskmap_among_a_programs_maps_is_chosen() {
        let (xsk, array) = (ffi::BPF_MAP_TYPE_XSKMAP, ffi::BPF_MAP_TYPE_ARRAY);
        assert_eq!(only_xskmap(9, vec![(1, array, 'a'), (2, xsk, 'x'), (3, array, 'b')]).unwrap(), 'x');
        let none = only_xskmap(9, vec![(1, array, 'a')]).unwrap_err();
        assert_eq!((none.subject.clone(), none.errno), (Subject::Option("program.fd"), Errno::EINVAL));
        assert!(none.message.contains("uses no XSKMAP"), "{}", none.message);
        assert!(none.hint.unwrap().contains("xskMap"));
        let several = only_xskmap(9, vec![(4, xsk, 'x'), (5, xsk, 'y')]).unwrap_err();
        assert!(several.message.contains("2 XSKMAPs (ids 4, 5)"), "{}", several.message);
        assert!(only_xskmap::<char>(9, vec![]).is_err());
    }

    #[test]
    fn a_users_program_is_checked_and_its_xskmap_found_through_the_kernel() {
        if !is_root() {
            return;
        }
        let objects = bpf::make_test_objects(1, 2, true).map_err(|(e, log)| format!("{e}: {log}")).unwrap();
        let (prog, info, map_ids) = open_user_program(objects.program.as_raw_fd()).unwrap();
        assert_ne!(prog.as_raw_fd(), objects.program.as_raw_fd(), "netring works on its own duplicate");
        assert_eq!(map_ids.len(), 3, "one XSKMAP and two arrays");
        let found = program_xskmap(info.id, &map_ids).unwrap();
        let want = bpf::info_head(objects.xskmaps[0].as_fd()).unwrap().id;
        assert_eq!(bpf::info_head(found.as_fd()).unwrap().id, want);
        drop((prog, found));
        assert!(bpf::dup_caller_fd(objects.program.as_raw_fd()).is_ok(), "the caller's descriptor stays open");

        let none = bpf::make_test_objects(0, 1, true).map_err(|(e, _)| e).unwrap();
        let (_, info, ids) = open_user_program(none.program.as_raw_fd()).unwrap();
        let e = program_xskmap(info.id, &ids).unwrap_err();
        assert_eq!(option_and_code(e), (Subject::Option("program.fd"), Errno::EINVAL));
        let two = bpf::make_test_objects(2, 0, true).map_err(|(e, _)| e).unwrap();
        let (_, info, ids) = open_user_program(two.program.as_raw_fd()).unwrap();
        assert!(program_xskmap(info.id, &ids).unwrap_err().message.contains("2 XSKMAPs"));
    }

    #[test]
    fn descriptors_that_are_not_what_the_option_needs_are_refused_by_name() {
        if !is_root() {
            return;
        }
        let filter = bpf::make_test_objects(0, 0, false).map_err(|(e, _)| e).unwrap();
        let xdp = bpf::make_test_objects(1, 1, true).map_err(|(e, _)| e).unwrap();
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        let fd = |o: &OwnedFd| o.as_raw_fd();
        let program = |raw| option_and_code(open_user_program(raw).unwrap_err());
        let bad_fd = (Subject::Option("program.fd"), Errno::EBADF);
        let bad_value = (Subject::Option("program.fd"), Errno::EINVAL);
        assert_eq!(program(i32::MAX), bad_fd, "not open");
        assert_eq!(program(file.as_raw_fd()), bad_value, "a file");
        assert_eq!(program(fd(&filter.program)), bad_value, "a socket filter");
        assert_eq!(program(fd(&xdp.xskmaps[0])), bad_value, "a map");
        let map = |raw| option_and_code(open_xskmap(&XskMapSource::Fd(raw)).unwrap_err());
        let bad_fd = (Subject::Option("program.xskMap"), Errno::EBADF);
        let bad_value = (Subject::Option("program.xskMap"), Errno::EINVAL);
        assert_eq!(map(i32::MAX), bad_fd);
        assert_eq!(map(file.as_raw_fd()), bad_value);
        assert_eq!(map(fd(&xdp.program)), bad_value, "a program");
        assert_eq!(map(fd(&xdp.arrays[0])), bad_value, "an array map");
        assert!(open_xskmap(&XskMapSource::Fd(fd(&xdp.xskmaps[0]))).is_ok());
    }
}
