//! Writes capture files. Two ways in: whole ring blocks, written with `writev` straight from
//! the ring (record headers are built in a reused buffer, large frames go out of the block
//! itself), and single packets, copied into a buffer that is flushed when it fills. A block is
//! on its way to the file (in the kernel's page cache) when `write_block` returns, so a killed
//! process leaves a file that is complete up to its last block.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;

use super::*;
use crate::afpacket::block::{read_block_header, Walker};
use crate::error::{Error, Result, Subject};
use crate::ffi;
use crate::syscall;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Pcap { nanos: bool },
    PcapNg,
}

impl FileFormat {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "pcap" => Ok(FileFormat::Pcap { nanos: false }),
            "pcap-ns" => Ok(FileFormat::Pcap { nanos: true }),
            "pcapng" => Ok(FileFormat::PcapNg),
            _ => Err(Error::invalid_option("format", format!("must be 'pcap', 'pcap-ns' or 'pcapng', got {name:?}"))),
        }
    }
}

/// The interface a file describes (pcapng's Interface Description Block; pcap keeps the snap
/// length and link type only).
#[derive(Debug, Clone)]
pub struct FileInterface {
    pub name: String,
    pub snap_len: u32,
}

/// One packet to write.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub sec: u32,
    pub nsec: u32,
    pub data: &'a [u8],
    pub original_len: u32,
    /// `sll_pkttype`: which way the packet went.
    pub pkttype: u8,
}

/// Frames at least this long are written from where they are instead of being copied next to
/// their record header: below it, a copy is cheaper than an iovec.
const COPY_BELOW: usize = 256;
/// Single packets are gathered up to this many bytes before a write.
const FLUSH_AT: usize = 256 * 1024;
const ZEROS: [u8; 8] = [0; 8];

pub struct PcapWriter {
    fd: OwnedFd,
    path: String,
    format: FileFormat,
    /// Record headers, small frames and padding of the block being written, or the single
    /// packets not flushed yet. Reused: it stops growing after the first blocks.
    buf: Vec<u8>,
    /// What to write: a range of `buf` or a frame in the block.
    pieces: Vec<Piece>,
    /// Start of the part of `buf` not yet in `pieces`.
    buf_mark: usize,
    iov: Vec<libc::iovec>,
    bytes: u64,
    packets: u64,
    /// Packets in `bytes`: what is in the file after a failed write.
    packets_flushed: u64,
    /// The writer created the file, so it holds our bytes only, from offset 0: a write that
    /// fails half-way (ENOSPC) can be cut off. Not so for a descriptor it was given: a pipe
    /// cannot be cut, and a file opened by someone else (perhaps for appending) may hold their
    /// bytes after ours.
    owns_file: bool,
}

#[derive(Clone, Copy)]
enum Piece {
    Buf { start: usize, end: usize },
    Frame { ptr: *const u8, len: usize },
}

impl PcapWriter {
    /// Creates (or truncates) `path` and writes the file header.
    pub fn create(path: &str, format: FileFormat, iface: &FileInterface) -> Result<Self> {
        let file = File::create(path).map_err(|e| file_error(e.raw_os_error(), "open", path, "creating"))?;
        let mut w = Self::new(file.into(), path.to_string(), format, iface)?;
        w.owns_file = true;
        Ok(w)
    }

    /// Writes to an open descriptor (standard output for `-w -`).
    pub fn new(fd: OwnedFd, path: String, format: FileFormat, iface: &FileInterface) -> Result<Self> {
        let mut w = PcapWriter {
            fd,
            path,
            format,
            buf: Vec::with_capacity(FLUSH_AT),
            pieces: Vec::new(),
            buf_mark: 0,
            iov: Vec::new(),
            bytes: 0,
            packets: 0,
            packets_flushed: 0,
            owns_file: false,
        };
        match format {
            FileFormat::Pcap { nanos } => {
                w.put_u32(if nanos { PCAP_MAGIC_NANOS } else { PCAP_MAGIC_MICROS });
                w.put_u16(2);
                w.put_u16(4);
                w.put_u32(0); // thiszone
                w.put_u32(0); // sigfigs
                w.put_u32(iface.snap_len);
                w.put_u32(u32::from(LINKTYPE_ETHERNET));
            }
            FileFormat::PcapNg => {
                let app = concat!("netring ", env!("CARGO_PKG_VERSION"));
                let start = w.begin_block(PCAPNG_SHB);
                w.put_u32(PCAPNG_BYTE_ORDER_MAGIC);
                w.put_u16(1);
                w.put_u16(0);
                w.buf.extend_from_slice(&(-1i64).to_ne_bytes()); // section length: unknown
                w.put_option(OPT_SHB_USERAPPL, app.as_bytes());
                w.put_u32(0); // opt_endofopt
                w.end_block(start);

                let start = w.begin_block(PCAPNG_IDB);
                w.put_u16(LINKTYPE_ETHERNET);
                w.put_u16(0);
                w.put_u32(iface.snap_len);
                w.put_option(OPT_IF_NAME, iface.name.as_bytes());
                w.put_option(OPT_IF_TSRESOL, &[9]);
                w.put_u32(0);
                w.end_block(start);
            }
        }
        w.flush()?;
        Ok(w)
    }

    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    pub fn packets_written(&self) -> u64 {
        self.packets
    }

    /// Copies one packet into the buffer; written when the buffer fills, or by `flush`.
    pub fn write_packet(&mut self, r: &Record<'_>) -> Result<()> {
        self.put_record_header(r);
        self.buf.extend_from_slice(r.data);
        self.put_record_trailer(r);
        self.packets += 1;
        if self.buf.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    /// The file's size once what is buffered is written.
    pub fn size(&self) -> u64 {
        self.bytes + self.buf.len() as u64
    }

    /// Writes the packets of a ring block whose headers start at `header_offsets` (the packets
    /// the caller was handed, in order), straight from the block, and returns how many. Like
    /// tcpdump's `-C`, it stops before a packet once the file holds `size_limit` bytes (the
    /// caller then opens the next file): a file grows past the limit by one packet at most.
    pub fn write_block(&mut self, block: &[u8], header_offsets: &[u32], size_limit: u64) -> Result<usize> {
        self.flush()?;
        // Records are never larger than the ring's own headers: one reservation per block.
        self.buf.reserve(block.len());
        let packets_before = self.packets;
        let mut size = self.bytes;
        let mut written = 0;
        for &h in header_offsets {
            if size >= size_limit {
                break;
            }
            let Some(r) = record_at(block, h as usize) else {
                // All or nothing: the records queued so far point into a block the caller is
                // about to hand back, so a later flush must not write them.
                self.discard_pending(packets_before);
                return Err(Error::new(
                    Errno::EINVAL,
                    Subject::None,
                    format!("no packet header at offset {h} of the block"),
                ));
            };
            size += u64::from(self.record_len(r.data.len()));
            self.push_record(r);
            written += 1;
        }
        self.write_pieces()?;
        Ok(written)
    }

    /// Drops the records of a block that failed half-way (the buffer was flushed before it).
    fn discard_pending(&mut self, packets_before: u64) {
        self.packets = packets_before;
        self.pieces.clear();
        self.buf.clear();
        self.buf_mark = 0;
    }

    /// Writes every packet of a ring block, found by walking it (for the engine's own loops).
    pub fn write_walked_block(&mut self, block: &[u8]) -> Result<()> {
        self.flush()?;
        let info = read_block_header(block)
            .map_err(|c| Error::new(Errno::EIO, Subject::None, format!("corrupt block: {}", c.reason)))?;
        let mut walker = Walker::new(&info);
        let packets_before = self.packets;
        while let Some(desc) = walker.next(block) {
            let desc = match desc {
                Ok(desc) => desc,
                Err(c) => {
                    // All or nothing, as in write_block.
                    self.discard_pending(packets_before);
                    return Err(Error::new(Errno::EIO, Subject::None, format!("corrupt block: {}", c.reason)));
                }
            };
            if let Some(r) = record_at(block, desc.header_offset as usize) {
                self.push_record(r);
            }
        }
        self.write_pieces()
    }

    /// Writes what is buffered.
    pub fn flush(&mut self) -> Result<()> {
        self.write_pieces()
    }

    /// Writes the pcapng Interface Statistics Block (the kernel's counts at the end: packets
    /// received and dropped) and everything buffered. pcap files have no place for them.
    pub fn finish(&mut self, received: u64, dropped: u64, now_ns: u64) -> Result<()> {
        if self.format == FileFormat::PcapNg {
            let start = self.begin_block(PCAPNG_ISB);
            self.put_u32(0); // interface
            self.put_u32((now_ns >> 32) as u32);
            self.put_u32(now_ns as u32);
            self.put_option(OPT_ISB_IFRECV, &received.to_ne_bytes());
            self.put_option(OPT_ISB_IFDROP, &dropped.to_ne_bytes());
            self.put_u32(0);
            self.end_block(start);
        }
        self.flush()
    }

    fn push_record(&mut self, r: Record<'_>) {
        self.put_record_header(&r);
        if r.data.len() < COPY_BELOW {
            self.buf.extend_from_slice(r.data);
        } else {
            self.pieces.push(Piece::Buf { start: self.buf_mark, end: self.buf.len() });
            self.pieces.push(Piece::Frame { ptr: r.data.as_ptr(), len: r.data.len() });
            self.buf_mark = self.buf.len();
        }
        self.put_record_trailer(&r);
        self.packets += 1;
    }

    /// Writes the pieces and the rest of the buffer in order, `UIO_MAXIOV` at a time, and
    /// empties the buffers.
    fn write_pieces(&mut self) -> Result<()> {
        self.pieces.push(Piece::Buf { start: self.buf_mark, end: self.buf.len() });
        self.iov.clear();
        let base = self.buf.as_ptr();
        for piece in &self.pieces {
            let (ptr, len) = match *piece {
                // SAFETY: the range lies inside `buf`, which does not change until written.
                Piece::Buf { start, end } => (unsafe { base.add(start) }, end - start),
                Piece::Frame { ptr, len } => (ptr, len),
            };
            if len > 0 {
                self.iov.push(libc::iovec { iov_base: ptr as *mut libc::c_void, iov_len: len });
            }
        }
        let total: usize = self.iov.iter().map(|v| v.iov_len).sum();
        let mut result = Ok(());
        for chunk in self.iov.chunks_mut(ffi::UIO_MAXIOV) {
            if let Err(e) = syscall::writev_all(self.fd.as_fd(), chunk) {
                result = Err(file_error(Some(e as i32), "writev", &self.path, "writing"));
                break;
            }
        }
        self.pieces.clear();
        self.iov.clear();
        self.buf.clear();
        self.buf_mark = 0;
        if result.is_ok() {
            self.bytes += total as u64;
            self.packets_flushed = self.packets;
        } else {
            self.cut_back_to_last_write();
        }
        result
    }

    /// After a write that failed half-way (a full disk writes part of a record), removes the
    /// part: the file then ends with a complete record, readers see no truncated packet, and
    /// what comes next (the statistics block at close) lands right after it. Best effort: a
    /// pipe cannot be cut, and the write's own error is the one reported.
    fn cut_back_to_last_write(&mut self) {
        self.packets = self.packets_flushed;
        if self.owns_file {
            let end = self.bytes as libc::off_t;
            let _ = nix::unistd::ftruncate(self.fd.as_fd(), end);
            let _ = nix::unistd::lseek(self.fd.as_fd(), end, nix::unistd::Whence::SeekSet);
        }
    }

    // Each record header and trailer goes in with one copy of a stack array: this runs once per
    // packet on the capture-to-disk path.
    fn put_record_header(&mut self, r: &Record<'_>) {
        let caplen = r.data.len() as u32;
        match self.format {
            FileFormat::Pcap { nanos } => {
                let frac = if nanos { r.nsec } else { r.nsec / 1000 };
                self.buf.extend_from_slice(&words::<4, 16>([r.sec, frac, caplen, r.original_len]));
            }
            FileFormat::PcapNg => {
                let ts = u64::from(r.sec) * 1_000_000_000 + u64::from(r.nsec);
                let len = epb_len(r.data.len());
                let (high, low) = ((ts >> 32) as u32, ts as u32);
                self.buf.extend_from_slice(&words::<7, 28>([PCAPNG_EPB, len, 0, high, low, caplen, r.original_len]));
            }
        }
    }

    /// Bytes of a record holding `caplen` bytes of frame.
    fn record_len(&self, caplen: usize) -> u32 {
        match self.format {
            FileFormat::Pcap { .. } => 16 + caplen as u32,
            FileFormat::PcapNg => epb_len(caplen),
        }
    }

    fn put_record_trailer(&mut self, r: &Record<'_>) {
        if self.format == FileFormat::PcapNg {
            self.buf.extend_from_slice(&ZEROS[..pad4(r.data.len())]);
            // epb_flags (code 2, length 4), its value, opt_endofopt, the block length again.
            let option = u32::from(OPT_EPB_FLAGS) | (4 << 16);
            let option = if cfg!(target_endian = "little") { option } else { option.rotate_left(16) };
            self.buf.extend_from_slice(&words::<4, 16>([option, epb_flags(r.pkttype), 0, epb_len(r.data.len())]));
        }
    }

    fn begin_block(&mut self, kind: u32) -> usize {
        let start = self.buf.len();
        self.put_u32(kind);
        self.put_u32(0); // length, set by end_block
        start
    }

    fn end_block(&mut self, start: usize) {
        let len = (self.buf.len() - start + 4) as u32;
        self.buf[start + 4..start + 8].copy_from_slice(&len.to_ne_bytes());
        self.put_u32(len);
    }

    fn put_option(&mut self, code: u16, value: &[u8]) {
        self.put_u16(code);
        self.put_u16(value.len() as u16);
        self.buf.extend_from_slice(value);
        self.buf.extend_from_slice(&ZEROS[..pad4(value.len())]);
    }

    fn put_u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_ne_bytes());
    }

    fn put_u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_ne_bytes());
    }
}

/// Host-order bytes of `N` words.
fn words<const N: usize, const B: usize>(w: [u32; N]) -> [u8; B] {
    let mut out = [0u8; B];
    for (chunk, v) in out.chunks_exact_mut(4).zip(w) {
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    out
}

/// Bytes of an Enhanced Packet Block with `len` bytes of frame and the `epb_flags` option.
fn epb_len(len: usize) -> u32 {
    (28 + len + pad4(len) + 8 + 4 + 4) as u32
}

fn pad4(len: usize) -> usize {
    (4 - len % 4) % 4
}

fn epb_flags(pkttype: u8) -> u32 {
    match pkttype {
        ffi::PACKET_OUTGOING => EPB_OUTBOUND,
        ffi::PACKET_BROADCAST => EPB_INBOUND | EPB_BROADCAST,
        ffi::PACKET_MULTICAST => EPB_INBOUND | EPB_MULTICAST,
        ffi::PACKET_OTHERHOST => EPB_INBOUND | EPB_PROMISCUOUS,
        _ => EPB_INBOUND | EPB_UNICAST,
    }
}

/// The packet whose `tpacket3_hdr` starts at `h`, read from the header in the block (after a
/// VLAN re-insertion the header describes the frame with its tag).
fn record_at(block: &[u8], h: usize) -> Option<Record<'_>> {
    let u32_at = |at: usize| block.get(h + at..h + at + 4).map(|b| u32::from_ne_bytes(b.try_into().unwrap()));
    let mac = u32_at(ffi::layout::MAC)? as usize & 0xffff;
    let snaplen = u32_at(ffi::layout::SNAPLEN)? as usize;
    let data = block.get(h + mac..(h + mac).checked_add(snaplen)?)?;
    Some(Record {
        sec: u32_at(ffi::layout::SEC)?,
        nsec: u32_at(ffi::layout::NSEC)?,
        data,
        original_len: u32_at(ffi::layout::LEN)?,
        pkttype: *block.get(h + ffi::layout::SLL_PKTTYPE)?,
    })
}

fn file_error(raw: Option<i32>, syscall: &'static str, path: &str, doing: &str) -> Error {
    let errno = Errno::from_raw(raw.unwrap_or(libc::EIO));
    let e = Error::sys(errno, syscall, Subject::None, format!("{doing} the capture file {path}"));
    match errno {
        Errno::ENOSPC | Errno::EDQUOT => e.with_hint("the disk is full: free space or write elsewhere; the file holds every packet up to the last complete write"),
        Errno::ENOENT => e.with_hint("the directory does not exist"),
        _ => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::afpacket::block::tests::{Meta, SyntheticBlock};

    fn temp(name: &str) -> String {
        format!("{}/netring-writer-{}-{name}", std::env::temp_dir().display(), std::process::id())
    }

    fn frame(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)).collect()
    }

    #[test]
    fn pcap_records_hold_the_frames_in_order() {
        let path = temp("a.pcap");
        let iface = FileInterface { name: "eth0".into(), snap_len: 65535 };
        let mut w = PcapWriter::create(&path, FileFormat::Pcap { nanos: true }, &iface).unwrap();
        let frames: Vec<Vec<u8>> = [60, 300, 1500, 61].iter().enumerate().map(|(i, &n)| frame(n, i as u8)).collect();
        let mut block = SyntheticBlock::new(1 << 16, 0);
        for f in &frames {
            block.push(f, Meta::default());
        }
        w.write_walked_block(&block.bytes).unwrap();
        w.write_packet(&Record { sec: 7, nsec: 999_999_999, data: &frames[0], original_len: 100, pkttype: 4 }).unwrap();
        w.finish(0, 0, 0).unwrap();
        let file = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(u32::from_ne_bytes(file[0..4].try_into().unwrap()), PCAP_MAGIC_NANOS);
        assert_eq!(w.bytes_written(), file.len() as u64);
        let mut off = 24;
        let mut got = Vec::new();
        while off < file.len() {
            let len = u32::from_ne_bytes(file[off + 8..off + 12].try_into().unwrap()) as usize;
            got.push((
                file[off + 16..off + 16 + len].to_vec(),
                u32::from_ne_bytes(file[off + 4..off + 8].try_into().unwrap()),
            ));
            off += 16 + len;
        }
        assert_eq!(got.len(), 5);
        for (g, f) in got.iter().zip(&frames) {
            assert_eq!(&g.0, f);
        }
        assert_eq!(got[4], (frames[0].clone(), 999_999_999));
    }

    /// A pcap writer on a fresh file, and a block of 600-byte frames (long enough to be written
    /// from the block itself, not copied next to their record headers).
    fn writer_and_block(name: &str, frames: u8) -> (String, PcapWriter, SyntheticBlock) {
        let path = temp(name);
        let iface = FileInterface { name: "eth0".into(), snap_len: 65535 };
        let w = PcapWriter::create(&path, FileFormat::Pcap { nanos: false }, &iface).unwrap();
        let mut block = SyntheticBlock::new(1 << 16, 0);
        for i in 0..frames {
            block.push(&frame(600, i), Meta::default());
        }
        (path, w, block)
    }

    /// Closes the writer and asserts that the file holds its header and nothing else.
    fn assert_header_only(mut w: PcapWriter, path: &str) {
        w.finish(0, 0, 0).unwrap();
        let file = std::fs::read(path).unwrap();
        std::fs::remove_file(path).unwrap();
        assert_eq!(file.len(), 24, "the file header only");
        assert_eq!(w.bytes_written(), 24);
    }

    #[test]
    fn a_block_that_fails_half_way_leaves_nothing_to_write() {
        let (path, mut w, mut block) = writer_and_block("half.pcap", 1);
        let info = read_block_header(&block.bytes).unwrap();
        let first = Walker::new(&info).next(&block.bytes).unwrap().unwrap().header_offset;
        let e = w.write_block(&block.bytes, &[first, u32::MAX - 3], u64::MAX).unwrap_err();
        assert_eq!(e.errno, Errno::EINVAL);
        assert_eq!(w.packets_written(), 0);
        // The block goes back to the kernel: what a later flush writes must not come from it.
        block.bytes.fill(0xee);
        w.flush().unwrap();
        assert_header_only(w, &path);
    }

    #[test]
    fn a_walked_block_that_turns_out_corrupt_half_way_leaves_nothing_to_write() {
        let (path, mut w, mut block) = writer_and_block("half-walked.pcap", 2);
        let info = read_block_header(&block.bytes).unwrap();
        let mut walker = Walker::new(&info);
        walker.next(&block.bytes).unwrap().unwrap();
        let second = walker.next(&block.bytes).unwrap().unwrap().header_offset as usize;
        // The second packet's snap length now runs past the block: the walk fails there.
        let snaplen = second + ffi::layout::SNAPLEN;
        block.bytes[snaplen..snaplen + 4].copy_from_slice(&u32::MAX.to_ne_bytes());
        let e = w.write_walked_block(&block.bytes).unwrap_err();
        assert_eq!(e.errno, Errno::EIO);
        assert_eq!(w.packets_written(), 0);
        assert_header_only(w, &path);
    }

    #[test]
    fn a_size_limit_stops_before_the_packet_that_finds_the_file_full() {
        let path = temp("limit.pcapng");
        let iface = FileInterface { name: "eth0".into(), snap_len: 65535 };
        let mut w = PcapWriter::create(&path, FileFormat::PcapNg, &iface).unwrap();
        let mut block = SyntheticBlock::new(1 << 16, 0);
        for i in 0..6 {
            block.push(&frame(100 + 300 * i, i as u8), Meta::default());
        }
        let info = read_block_header(&block.bytes).unwrap();
        let mut walker = Walker::new(&info);
        let mut offsets = Vec::new();
        while let Some(desc) = walker.next(&block.bytes) {
            offsets.push(desc.unwrap().header_offset);
        }
        // The header, then records of 148, 448, 748, ... bytes: a limit one byte past the
        // header and the first record lets the second in (the file was not full before it).
        let header = w.size();
        let limit = header + epb_len(100) as u64 + 1;
        assert_eq!(w.write_block(&block.bytes, &offsets, limit).unwrap(), 2);
        assert_eq!(w.size(), header + u64::from(epb_len(100) + epb_len(400)));
        assert_eq!(w.write_block(&block.bytes, &offsets[2..], limit).unwrap(), 0);
        assert_eq!(w.write_block(&block.bytes, &offsets[2..], u64::MAX).unwrap(), 4);
        assert_eq!(w.packets_written(), 6);
        w.finish(6, 0, 0).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), w.size());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_failing_write_is_an_error_not_silence() {
        let iface = FileInterface { name: "eth0".into(), snap_len: 65535 };
        // /dev/full: every write is ENOSPC.
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let e = PcapWriter::new(full.into(), "/dev/full".into(), FileFormat::PcapNg, &iface).err().unwrap();
        assert_eq!(e.errno, Errno::ENOSPC);
        assert_eq!(e.syscall, Some("writev"));
        assert!(e.hint.unwrap().contains("disk is full"));
    }
}
