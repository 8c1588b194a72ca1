//! Any bytes as a TPACKET_V3 block: reading the descriptor, walking the packets and
//! re-inserting VLAN tags must never panic or touch memory outside the block, and every packet
//! handed out must lie where the binding lends it from (the packet area: from the first packet
//! to `blk_len`), with its header before its frame.

#![no_main]

use libfuzzer_sys::fuzz_target;
use netring_engine::afpacket::block::{read_block_header, reinsert_vlan, Walker};
use netring_engine::ffi;

fuzz_target!(|data: &[u8]| {
    // The first byte picks whether tags are re-inserted, the rest is the block.
    let Some((&flags, bytes)) = data.split_first() else { return };
    let mut block = bytes.to_vec();
    let Ok(info) = read_block_header(&block) else { return };
    assert!(info.used_len <= block.len());
    let mut walker = Walker::new(&info);
    let mut previous_end = info.first_offset;
    let mut walked = 0;
    while let Some(step) = walker.next(&block) {
        let Ok(mut desc) = step else { break };
        walked += 1;
        if flags & 1 == 1 {
            reinsert_vlan(&mut block, &mut desc);
        }
        let header = desc.header_offset as usize;
        let data = desc.data_offset as usize;
        let end = data + desc.captured_len as usize;
        // Inside the packet area the binding lends, in order, header before frame.
        assert!(header >= info.first_offset && header >= previous_end, "packets do not overlap");
        assert!(header >= ffi::BLOCK_DESC_LEN);
        assert!(header + ffi::TPACKET3_HDRLEN <= data, "the frame starts after the headers");
        assert!(end <= info.used_len, "the frame ends inside blk_len");
        assert!(desc.halen as usize <= desc.addr.len());
        previous_end = end;
    }
    assert!(walked <= info.num_packets);
});
