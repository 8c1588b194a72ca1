//! Which XDP program steers an interface's packets into netring's sockets, and its lifetime.
//!
//! The built-in program is attached with a BPF link, never through netlink: the link is a file
//! descriptor, and the kernel detaches the program when its last descriptor closes, so it cannot
//! outlive the process (exit, crash or SIGKILL). An interface takes one XDP link, so the sockets
//! of this process on several queues of one interface share one program, one XSKMAP and one link
//! through a per-interface registry; the link goes with the last socket.
//!
//! A program that netring did not attach (another process, `ip link set xdp`, another link) is
//! never replaced: attaching then fails with EBUSY.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
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
    /// The user's program is attached already; netring only puts its socket into this pinned
    /// XSKMAP at its queue.
    XskMapPath(String),
    /// No program: the socket only transmits.
    None,
}

/// netring's program on one interface. Dropping the last reference closes the link (the kernel
/// detaches the program), then the program and the map: fields drop in declaration order.
pub struct Attachment {
    _link: OwnedFd,
    _prog: OwnedFd,
    map: OwnedFd,
    mode: AttachMode,
    prog_id: u32,
}

impl Attachment {
    pub fn map(&self) -> BorrowedFd<'_> {
        self.map.as_fd()
    }

    /// The mode the kernel attached in (Driver or Skb, never Auto).
    pub fn mode(&self) -> AttachMode {
        self.mode
    }

    pub fn prog_id(&self) -> u32 {
        self.prog_id
    }
}

static REGISTRY: Mutex<Option<HashMap<u32, Weak<Attachment>>>> = Mutex::new(None);

/// The process's attachment on `iface`, created on first use. `queues`: RX queue count (map
/// size). `mode`: Auto shares whatever is attached; Driver or Skb must match it.
pub fn attach(iface: &Interface, mode: AttachMode, queues: u32) -> Result<Arc<Attachment>> {
    let mut registry = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    let registry = registry.get_or_insert_with(HashMap::new);
    registry.retain(|_, w| w.strong_count() > 0);
    if let Some(existing) = registry.get(&iface.index).and_then(Weak::upgrade) {
        if mode != AttachMode::Auto && mode != existing.mode {
            return Err(Error::new(
                Errno::EBUSY,
                Subject::Option("attach"),
                format!(
                    "another socket of this process attached netring's program to '{}' in {} mode; {} mode was asked for",
                    iface.name,
                    existing.mode.name(),
                    mode.name()
                ),
            )
            .with_hint("sockets on one interface share one program: use the same attach mode (or 'auto') for all"));
        }
        return Ok(existing);
    }
    let attachment = Arc::new(create(iface, mode, queues)?);
    registry.insert(iface.index, Arc::downgrade(&attachment));
    Ok(attachment)
}

fn create(iface: &Interface, mode: AttachMode, queues: u32) -> Result<Attachment> {
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
    let prog_id = bpf::info_head(prog.as_fd()).map(|h| h.id).unwrap_or(0);
    let try_mode = |m: AttachMode| {
        let flags = if m == AttachMode::Driver { ffi::XDP_FLAGS_DRV_MODE } else { ffi::XDP_FLAGS_SKB_MODE };
        bpf::link_create(prog.as_fd(), iface.index, flags)
    };
    let (link, mode) = match mode {
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
    };
    Ok(Attachment { _link: link, _prog: prog, map, mode, prog_id })
}

/// Opens a pinned XSKMAP and checks that it is one.
pub fn open_pinned_xskmap(path: &str) -> Result<OwnedFd> {
    let fd = bpf::obj_get(path).map_err(|e| {
        bpf_error(
            e,
            "bpf",
            Subject::Option("program.xskMap"),
            format!("opening the pinned XSKMAP '{path}' (BPF_OBJ_GET)"),
        )
    })?;
    let head = bpf::info_head(fd.as_fd()).map_err(|e| {
        bpf_error(
            e,
            "bpf",
            Subject::Option("program.xskMap"),
            format!("reading what '{path}' is (BPF_OBJ_GET_INFO_BY_FD)"),
        )
    })?;
    if head.kind != ffi::BPF_MAP_TYPE_XSKMAP {
        return Err(Error::invalid_option(
            "program.xskMap",
            format!("'{path}' is a BPF map of type {}, not an XSKMAP", head.kind),
        ));
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
            "'{}' already has an XDP program that netring did not attach (see `ip -d link show {}` or \
             `bpftool net`); netring leaves it alone. Detach it, or pass program: {{ xskMap: '/sys/fs/bpf/...' }} \
             with the XSKMAP your program redirects to",
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
