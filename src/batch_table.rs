//! The per-batch table: a `Uint32Array` with a short header and, per packet, the offset of its
//! `tpacket3_hdr` in the block. The facade reads each packet's metadata from that header in the
//! block itself (the layout constants below come from the engine's ffi), so per packet the
//! native side writes one word and creates no JavaScript object.

use std::ptr;

use napi::{check_status, sys, Env, Result};
use netring_engine::ffi::layout;
use netring_engine::BlockInfo;

/// Header words: packet count, sequence number (low, high), flags.
#[napi]
pub const TABLE_HEADER_WORDS: u32 = 4;
#[napi]
pub const TABLE_FLAG_TIMED_OUT: u32 = 1;
#[napi]
pub const TABLE_FLAG_LOSING: u32 = 2;
/// The capture has `offloadInfo`: each frame's virtio-net header sits right before it.
#[napi]
pub const TABLE_FLAG_OFFLOAD: u32 = 4;

// Byte offsets, from a packet's header offset, of what the facade reads.
#[napi]
pub const HDR_SEC: u32 = layout::SEC as u32;
#[napi]
pub const HDR_NSEC: u32 = layout::NSEC as u32;
#[napi]
pub const HDR_SNAPLEN: u32 = layout::SNAPLEN as u32;
#[napi]
pub const HDR_LEN: u32 = layout::LEN as u32;
#[napi]
pub const HDR_STATUS: u32 = layout::STATUS as u32;
/// `tp_mac` (u16): where the frame starts, from the header.
#[napi]
pub const HDR_MAC: u32 = layout::MAC as u32;
#[napi]
pub const HDR_RXHASH: u32 = layout::RXHASH as u32;
#[napi]
pub const HDR_VLAN_TCI: u32 = layout::VLAN_TCI as u32;
#[napi]
pub const HDR_VLAN_TPID: u32 = layout::VLAN_TPID as u32;
#[napi]
pub const HDR_NETRING_FLAGS: u32 = layout::NETRING_FLAGS as u32;
#[napi]
pub const FLAG_VLAN_REINSERTED: u32 = layout::FLAG_VLAN_REINSERTED as u32;
/// `sll_protocol` (u16, network byte order).
#[napi]
pub const HDR_SLL_PROTOCOL: u32 = layout::SLL_PROTOCOL as u32;
#[napi]
pub const HDR_SLL_IFINDEX: u32 = layout::SLL_IFINDEX as u32;
#[napi]
pub const HDR_SLL_PKTTYPE: u32 = layout::SLL_PKTTYPE as u32;
#[napi]
pub const HDR_SLL_HALEN: u32 = layout::SLL_HALEN as u32;
#[napi]
pub const HDR_SLL_ADDR: u32 = layout::SLL_ADDR as u32;

// tp_status bits the facade decodes.
#[napi]
pub const TP_STATUS_LOSING: u32 = netring_engine::ffi::TP_STATUS_LOSING;
#[napi]
pub const TP_STATUS_CSUMNOTREADY: u32 = netring_engine::ffi::TP_STATUS_CSUMNOTREADY;
#[napi]
pub const TP_STATUS_VLAN_VALID: u32 = netring_engine::ffi::TP_STATUS_VLAN_VALID;
#[napi]
pub const TP_STATUS_VLAN_TPID_VALID: u32 = netring_engine::ffi::TP_STATUS_VLAN_TPID_VALID;
#[napi]
pub const TP_STATUS_CSUM_VALID: u32 = netring_engine::ffi::TP_STATUS_CSUM_VALID;
#[napi]
pub const TP_STATUS_GSO_TCP: u32 = netring_engine::ffi::TP_STATUS_GSO_TCP;
#[napi]
pub const TP_STATUS_TS_SOFTWARE: u32 = netring_engine::ffi::TP_STATUS_TS_SOFTWARE;
#[napi]
pub const TP_STATUS_TS_RAW_HARDWARE: u32 = netring_engine::ffi::TP_STATUS_TS_RAW_HARDWARE;

/// A fresh `Uint32Array` of `len` words, and a slice over its memory to fill it.
pub fn u32_array<'a>(env: &Env, len: usize) -> Result<(sys::napi_value, &'a mut [u32])> {
    let mut data = ptr::null_mut();
    let mut buffer = ptr::null_mut();
    let mut array = ptr::null_mut();
    // SAFETY: plain Node-API allocations; the slice covers exactly the buffer just created,
    // which the typed array keeps alive while the caller's scope holds it.
    unsafe {
        check_status!(sys::napi_create_arraybuffer(env.raw(), len * 4, &mut data, &mut buffer))?;
        check_status!(sys::napi_create_typedarray(
            env.raw(),
            sys::TypedarrayType::uint32_array,
            len,
            buffer,
            0,
            &mut array
        ))?;
        Ok((array, std::slice::from_raw_parts_mut(data.cast::<u32>(), len)))
    }
}

/// A freshly allocated table being filled.
pub struct BatchTable<'a> {
    pub value: sys::napi_value,
    words: &'a mut [u32],
    rows: usize,
    flags: u32,
}

impl BatchTable<'_> {
    /// Allocates a table for `capacity` packets.
    pub fn new(env: &Env, capacity: usize) -> Result<BatchTable<'_>> {
        let (value, words) = u32_array(env, TABLE_HEADER_WORDS as usize + capacity)?;
        Ok(BatchTable { value, words, rows: 0, flags: 0 })
    }

    /// Adds a packet by the offset of its header in the block.
    pub fn push(&mut self, header_offset: u32) {
        self.words[TABLE_HEADER_WORDS as usize + self.rows] = header_offset;
        self.rows += 1;
    }

    /// Sets a `TABLE_FLAG_*` bit of the batch.
    pub fn flag(&mut self, flag: u32) {
        self.flags |= flag;
    }

    pub fn finish(self, info: &BlockInfo) -> sys::napi_value {
        self.words[0] = self.rows as u32;
        self.words[1] = info.seq_num as u32;
        self.words[2] = (info.seq_num >> 32) as u32;
        self.words[3] = if info.timed_out { TABLE_FLAG_TIMED_OUT } else { 0 }
            | if info.losing { TABLE_FLAG_LOSING } else { 0 }
            | self.flags;
        self.value
    }
}
