//! `NativePcapWriter`: the engine's capture-file writer. Whole ring blocks are written from
//! Rust with `writev` (no JavaScript per packet); single packets are copied in.

use std::os::fd::{BorrowedFd, OwnedFd};

use napi::bindgen_prelude::{Uint32Array, Uint8Array};
use napi::Env;
use netring_engine::pcapfile::{FileFormat, FileInterface, PcapWriter, Record};
use netring_engine::{Errno, Error, Subject};

use crate::batch_table::TABLE_HEADER_WORDS;
use crate::error::{to_js_error, OrThrow};

#[napi(object)]
pub struct NativePcapWriterOptions {
    /// `'pcap'`, `'pcap-ns'` or `'pcapng'`.
    pub format: String,
    pub interface: String,
    pub snap_len: u32,
}

#[napi]
pub struct NativePcapWriter {
    writer: Option<PcapWriter>,
    /// Bytes and packets written, kept after close.
    written: (u64, u64),
}

#[napi]
impl NativePcapWriter {
    /// Creates or truncates `path` and writes the file header.
    #[napi(factory, catch_unwind)]
    pub fn create(env: &Env, path: String, options: NativePcapWriterOptions) -> napi::Result<NativePcapWriter> {
        let (format, iface) = parse(options).or_throw(env)?;
        Ok(NativePcapWriter { writer: Some(PcapWriter::create(&path, format, &iface).or_throw(env)?), written: (0, 0) })
    }

    /// Writes to a copy of descriptor `fd` (1 for standard output).
    #[napi(factory, catch_unwind)]
    pub fn from_fd(env: &Env, fd: i32, options: NativePcapWriterOptions) -> napi::Result<NativePcapWriter> {
        let (format, iface) = parse(options).or_throw(env)?;
        if fd < 0 {
            // BorrowedFd panics on -1: a bad number is the caller's input, not our bug.
            return Err(to_js_error(
                env,
                Error::invalid_option("fd", format!("must be an open descriptor >= 0, got {fd}")),
            ));
        }
        // SAFETY: borrowed only to duplicate it; the caller keeps its own descriptor.
        let owned: OwnedFd = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned().map_err(|e| {
            to_js_error(
                env,
                Error::sys(
                    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EBADF)),
                    "dup",
                    Subject::Option("fd"),
                    format!("duplicating descriptor {fd}"),
                )
                .with_hint("pass a descriptor this process has open for writing (1 for standard output)"),
            )
        })?;
        Ok(NativePcapWriter {
            writer: Some(PcapWriter::new(owned, format!("fd {fd}"), format, &iface).or_throw(env)?),
            written: (0, 0),
        })
    }

    /// Copies one packet in; written when the buffer fills or on `flush`.
    #[napi(catch_unwind)]
    pub fn write_packet(
        &mut self,
        env: &Env,
        data: Uint8Array,
        sec: u32,
        nsec: u32,
        original_len: u32,
        pkttype: u32,
    ) -> napi::Result<()> {
        let record = Record { sec, nsec, data: &data, original_len, pkttype: pkttype as u8 };
        self.writer(env)?.write_packet(&record).or_throw(env)
    }

    /// Writes packets `start..end` of a lent batch (its block and table) straight from the
    /// block, stopping before a packet once the file holds `size_limit` bytes; returns how many
    /// were written.
    #[napi(catch_unwind)]
    pub fn write_block(
        &mut self,
        env: &Env,
        block: Uint8Array,
        table: Uint32Array,
        start: u32,
        end: u32,
        size_limit: Option<f64>,
    ) -> napi::Result<u32> {
        let count = table.first().copied().unwrap_or(0) as usize;
        let header = TABLE_HEADER_WORDS as usize;
        let (start, end) = (start as usize, (end as usize).min(count));
        let offsets = table.get(header + start.min(end)..header + end).ok_or_else(|| {
            to_js_error(
                env,
                Error::new(Errno::EINVAL, Subject::None, "the batch table is shorter than its packet count"),
            )
        })?;
        let limit = size_limit.map_or(u64::MAX, |l| l as u64);
        let written = self.writer(env)?.write_block(&block, offsets, limit).or_throw(env)?;
        Ok(written as u32)
    }

    #[napi(catch_unwind)]
    pub fn flush(&mut self, env: &Env) -> napi::Result<()> {
        self.writer(env)?.flush().or_throw(env)
    }

    /// Writes the statistics (pcapng) and what is buffered, and closes the file. Idempotent.
    #[napi(catch_unwind)]
    pub fn close(&mut self, env: &Env, received: Option<f64>, dropped: Option<f64>) -> napi::Result<()> {
        let Some(mut writer) = self.writer.take() else { return Ok(()) };
        self.written = (writer.bytes_written(), writer.packets_written());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let result = writer.finish(received.unwrap_or(0.0) as u64, dropped.unwrap_or(0.0) as u64, now).or_throw(env);
        self.written = (writer.bytes_written(), writer.packets_written());
        result
    }

    #[napi(getter, catch_unwind)]
    pub fn bytes_written(&self) -> f64 {
        self.writer.as_ref().map_or(self.written.0, PcapWriter::bytes_written) as f64
    }

    /// The file's size once what is buffered is written.
    #[napi(getter, catch_unwind)]
    pub fn size(&self) -> f64 {
        self.writer.as_ref().map_or(self.written.0, PcapWriter::size) as f64
    }

    #[napi(getter, catch_unwind)]
    pub fn packets_written(&self) -> f64 {
        self.writer.as_ref().map_or(self.written.1, PcapWriter::packets_written) as f64
    }

    fn writer(&mut self, env: &Env) -> napi::Result<&mut PcapWriter> {
        self.writer.as_mut().ok_or_else(|| {
            to_js_error(
                env,
                Error::new(Errno::EBADF, Subject::None, "the capture file is closed").with_syscall("close"),
            )
        })
    }
}

fn parse(o: NativePcapWriterOptions) -> netring_engine::Result<(FileFormat, FileInterface)> {
    Ok((FileFormat::parse(&o.format)?, FileInterface { name: o.interface, snap_len: o.snap_len }))
}
