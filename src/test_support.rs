//! Exports for netring's own tests only (the facade does not re-export them, and their names
//! start with `_test`): BPF objects that Node cannot make, for the tests of a user's own XDP
//! program and XSKMAP.

use std::os::fd::{AsFd, IntoRawFd, OwnedFd};

use napi::{Env, Result};
use netring_engine::afpacket::socket::Interface;
use netring_engine::afxdp::bpf;
use netring_engine::{Error, Subject};

use crate::error::OrThrow;

#[napi(object)]
pub struct TestXdpProgramOptions {
    /// XSKMAPs the program uses (4 entries each); it redirects to the first. @default 1
    pub xsk_maps: Option<u32>,
    /// Array maps the program uses as well. @default 0
    pub array_maps: Option<u32>,
    /// A socket filter program (no maps) instead of an XDP program.
    pub socket_filter: Option<bool>,
    /// Attach the program to this interface with a BPF link of the test's own (`link`).
    pub attach_to: Option<String>,
}

/// Descriptors the caller owns (close them with `fs.closeSync`).
#[napi(object)]
pub struct TestXdpProgram {
    pub program: i32,
    pub program_id: u32,
    pub xsk_maps: Vec<i32>,
    pub array_maps: Vec<i32>,
    /// The link, with `attach_to`: closing it detaches the program.
    pub link: Option<i32>,
}

/// For tests only: loads an XDP program over fresh maps with the engine's assembler.
#[napi(js_name = "_testMakeXdpProgram")]
pub fn test_make_xdp_program(env: Env, options: Option<TestXdpProgramOptions>) -> Result<TestXdpProgram> {
    let o = options.unwrap_or(TestXdpProgramOptions {
        xsk_maps: None,
        array_maps: None,
        socket_filter: None,
        attach_to: None,
    });
    let objects =
        bpf::make_test_objects(o.xsk_maps.unwrap_or(1), o.array_maps.unwrap_or(0), !o.socket_filter.unwrap_or(false))
            .map_err(|(e, log)| Error::sys(e, "bpf", Subject::None, format!("loading a test program ({log})")))
            .or_throw(&env)?;
    let program_id = bpf::info_head(objects.program.as_fd()).map(|h| h.id).unwrap_or(0);
    let link = match &o.attach_to {
        Some(name) => {
            let iface = Interface::resolve(name).or_throw(&env)?;
            let link = bpf::link_create(objects.program.as_fd(), iface.index, 0)
                .map_err(|e| Error::sys(e, "bpf", iface.subject(), "attaching the test program (BPF_LINK_CREATE)"))
                .or_throw(&env)?;
            Some(link.into_raw_fd())
        }
        None => None,
    };
    let raw = |fds: Vec<OwnedFd>| fds.into_iter().map(IntoRawFd::into_raw_fd).collect();
    Ok(TestXdpProgram {
        program: objects.program.into_raw_fd(),
        program_id,
        xsk_maps: raw(objects.xskmaps),
        array_maps: raw(objects.arrays),
        link,
    })
}
