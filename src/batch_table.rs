//! The per-batch descriptor table: a `Uint32Array` with a short header and one fixed-size row
//! per packet. The facade builds its cheap `Packet` views from it, so the native side creates
//! no JavaScript object per packet. The layout is exported to JavaScript from here (and only
//! from here), so facade and binding cannot disagree.

use std::ptr;

use napi::{check_status, sys, Env, Result};
use netring_engine::{BlockInfo, PacketDesc};

/// Header words: packet count, sequence number (low, high), flags.
#[napi]
pub const TABLE_HEADER_WORDS: u32 = 4;
#[napi]
pub const TABLE_FLAG_TIMED_OUT: u32 = 1;
#[napi]
pub const TABLE_FLAG_LOSING: u32 = 2;

/// Words per packet row and the meaning of each.
#[napi]
pub const ROW_WORDS: u32 = 14;
#[napi]
pub const ROW_DATA_OFFSET: u32 = 0;
#[napi]
pub const ROW_CAPTURED_LEN: u32 = 1;
#[napi]
pub const ROW_ORIGINAL_LEN: u32 = 2;
#[napi]
pub const ROW_SEC: u32 = 3;
#[napi]
pub const ROW_NSEC: u32 = 4;
#[napi]
pub const ROW_STATUS: u32 = 5;
#[napi]
pub const ROW_RXHASH: u32 = 6;
#[napi]
pub const ROW_VLAN_TCI: u32 = 7;
#[napi]
pub const ROW_VLAN_TPID: u32 = 8;
#[napi]
pub const ROW_IFINDEX: u32 = 9;
#[napi]
pub const ROW_PROTOCOL: u32 = 10;
/// `pkttype | halen << 8 | vlan_reinserted << 16`.
#[napi]
pub const ROW_KIND: u32 = 11;
/// Link-layer source address, bytes 0..4 and 4..8, little-endian packed.
#[napi]
pub const ROW_ADDR_LO: u32 = 12;
#[napi]
pub const ROW_ADDR_HI: u32 = 13;

/// A freshly allocated table being filled.
pub struct BatchTable<'a> {
    pub value: sys::napi_value,
    words: &'a mut [u32],
    rows: usize,
}

impl BatchTable<'_> {
    /// Allocates a zeroed table for `capacity` packets.
    pub fn new(env: &Env, capacity: usize) -> Result<BatchTable<'_>> {
        let len = TABLE_HEADER_WORDS as usize + capacity * ROW_WORDS as usize;
        let mut data = ptr::null_mut();
        let mut buffer = ptr::null_mut();
        let mut array = ptr::null_mut();
        // SAFETY: plain Node-API allocations; the slice covers exactly the buffer just created,
        // which the typed array keeps alive while this function's scope holds it.
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
            Ok(BatchTable { value: array, words: std::slice::from_raw_parts_mut(data.cast::<u32>(), len), rows: 0 })
        }
    }

    pub fn push(&mut self, p: &PacketDesc) {
        let base = TABLE_HEADER_WORDS as usize + self.rows * ROW_WORDS as usize;
        let row = &mut self.words[base..base + ROW_WORDS as usize];
        row[ROW_DATA_OFFSET as usize] = p.data_offset;
        row[ROW_CAPTURED_LEN as usize] = p.captured_len;
        row[ROW_ORIGINAL_LEN as usize] = p.original_len;
        row[ROW_SEC as usize] = p.sec;
        row[ROW_NSEC as usize] = p.nsec;
        row[ROW_STATUS as usize] = p.status;
        row[ROW_RXHASH as usize] = p.rxhash;
        row[ROW_VLAN_TCI as usize] = p.vlan_tci as u32;
        row[ROW_VLAN_TPID as usize] = p.vlan_tpid as u32;
        row[ROW_IFINDEX as usize] = p.ifindex as u32;
        row[ROW_PROTOCOL as usize] = p.protocol as u32;
        row[ROW_KIND as usize] = p.pkttype as u32 | (p.halen as u32) << 8 | (p.vlan_reinserted as u32) << 16;
        row[ROW_ADDR_LO as usize] = u32::from_le_bytes([p.addr[0], p.addr[1], p.addr[2], p.addr[3]]);
        row[ROW_ADDR_HI as usize] = u32::from_le_bytes([p.addr[4], p.addr[5], p.addr[6], p.addr[7]]);
        self.rows += 1;
    }

    pub fn finish(self, info: &BlockInfo) -> sys::napi_value {
        let seq_num = info.seq_num;
        self.words[0] = self.rows as u32;
        self.words[1] = seq_num as u32;
        self.words[2] = (seq_num >> 32) as u32;
        self.words[3] =
            if info.timed_out { TABLE_FLAG_TIMED_OUT } else { 0 } | if info.losing { TABLE_FLAG_LOSING } else { 0 };
        self.value
    }
}
