//! `NativeCapture`: the engine's `Capture`, lent to JavaScript one block at a time.

use napi::bindgen_prelude::{Either, Object, ObjectFinalize, Unknown};
use napi::{Env, Result};
use netring_engine::reactor::Readiness;
use netring_engine::{BpfProgram, Capture, CaptureOptions, FanoutConfig};

use crate::vocabulary::{fanout_flags, FanoutFlag, FanoutMode, Profile, TimestampSource};

use crate::batch_table::BatchTable;
use crate::error::{to_js_error, OrThrow};
use crate::external_memory::ReportedMemory;
use crate::lent_buffer::{force_copy_from_env, lends_copies, LentBuffer, TakenBack};
use crate::wait::{interruptible, readiness_promise, timeout_from_ms};

/// Options as the facade passes them (already type-checked there; values are checked by the
/// engine).
#[napi(object)]
pub struct NativeCaptureOptions {
    pub profile: Option<Profile>,
    pub promiscuous: Option<bool>,
    pub block_size: Option<u32>,
    pub block_count: Option<u32>,
    pub frame_size: Option<u32>,
    pub snap_len: Option<u32>,
    pub block_timeout_ms: Option<u32>,
    pub fill_rxhash: Option<bool>,
    pub ignore_outgoing: Option<bool>,
    pub busy_poll_us: Option<u32>,
    pub timestamp_source: Option<TimestampSource>,
    pub fanout: Option<NativeFanout>,
    pub filter: Option<Either<String, Vec<NativeBpfInstruction>>>,
    pub reinsert_vlan: Option<bool>,
    pub offload_info: Option<bool>,
}

#[napi(object)]
pub struct NativeFanout {
    pub group: u32,
    pub mode: FanoutMode,
    pub flags: Option<Vec<FanoutFlag>>,
}

#[napi(object)]
pub struct NativeBpfInstruction {
    pub code: f64,
    pub jt: f64,
    pub jf: f64,
    pub k: f64,
}

/// What was opened, with the ring geometry the kernel accepted.
#[napi(object)]
pub struct NativeCaptureInfo {
    pub interface: String,
    pub ifindex: u32,
    pub profile: Profile,
    pub block_size: u32,
    pub block_count: u32,
    pub frame_size: u32,
    /// The block count asked for; larger than `block_count` after an ENOMEM retry.
    pub requested_block_count: u32,
    pub block_timeout_ms: u32,
    pub snap_len: Option<u32>,
    /// The ring is locked in memory (MAP_LOCKED).
    pub locked: bool,
    /// Buffers are copies of the ring (the runtime refuses external buffers, or on Node >= 22 no
    /// working `ArrayBuffer.prototype.transfer` was there when netring loaded).
    pub copy_mode: bool,
    /// The fanout group joined (the id the kernel picked, with the uniqueId flag).
    pub fanout_group: Option<u32>,
}

#[napi(object)]
pub struct NativeCaptureStats {
    pub packets: f64,
    pub drops: f64,
    pub freeze_count: f64,
}

#[napi(custom_finalize)]
pub struct NativeCapture {
    engine: Option<Capture>,
    /// The interface's name, for errors raised after the engine is gone.
    interface: String,
    /// The ring's size, reported to V8 while the capture is open.
    reported: ReportedMemory,
    lent: Option<LentBuffer>,
    force_copy: bool,
    copied: bool,
}

#[napi]
impl NativeCapture {
    #[napi(factory, catch_unwind)]
    pub fn open(env: Env, interface: String, options: Option<NativeCaptureOptions>) -> Result<NativeCapture> {
        let options = match options {
            Some(o) => engine_options(o).or_throw(&env)?,
            None => CaptureOptions::default(),
        };
        let engine = Capture::open(&interface, options).or_throw(&env)?;
        let reported = ReportedMemory::report(&env, engine.mapping().len());
        Ok(NativeCapture {
            engine: Some(engine),
            interface,
            reported,
            lent: None,
            force_copy: force_copy_from_env(),
            copied: false,
        })
    }

    /// The next ready block as `{ block: ArrayBuffer, table: Uint32Array }`, or null: `block`
    /// covers the block's packets only (not its descriptor), and `table` gives each packet's
    /// header offset in it. The block lent before is detached and handed back first.
    #[napi(ts_return_type = "{ block: ArrayBuffer, table: Uint32Array } | null", catch_unwind)]
    pub fn next_batch<'env>(&mut self, env: &'env Env) -> Result<Option<Object<'env>>> {
        self.take_back(env)?;
        let force_copy = self.force_copy;
        let capture = self.engine.as_mut().ok_or_else(|| closed(env))?;
        let mapping = capture.mapping().clone();
        let offload_info = capture.config().offload_info;
        let Some(mut batch) = capture.next_batch().or_throw(env)? else {
            return Ok(None);
        };

        let info = *batch.info();
        // Only the packets are lent, never the block descriptor the kernel reads: table offsets
        // are from the start of the packet area.
        let area = batch.packet_area();
        let mut table = BatchTable::new(env, info.num_packets as usize)?;
        while let Some(desc) = batch.next_packet() {
            match desc {
                Ok(desc) => table.push(desc.header_offset - area.start as u32),
                Err(e) => {
                    capture.release();
                    return Err(to_js_error(env, e));
                }
            }
        }
        if offload_info {
            table.flag(crate::batch_table::TABLE_FLAG_OFFLOAD);
        }
        let table = table.finish(&info);
        // SAFETY: the packet area lies inside the block, inside the mapping, and the block lent
        // before was taken back above, so no other lent buffer covers this memory.
        let (lent, block) =
            unsafe { LentBuffer::lend(env, batch.block_ptr().add(area.start), area.len(), &mapping, force_copy)? };
        self.copied = lent.is_copy();
        self.lent = Some(lent);

        let mut result = Object::new(env)?;
        // SAFETY: both values were just created in this scope.
        unsafe {
            result.set("block", Unknown::from_raw_unchecked(env.raw(), block))?;
            result.set("table", Unknown::from_raw_unchecked(env.raw(), table))?;
        }
        Ok(Some(result))
    }

    /// Blocks the calling thread until a block is ready or `timeoutMs` passes (no limit when
    /// omitted), then behaves like `nextBatch`. For worker threads and scripts.
    #[napi(ts_return_type = "{ block: ArrayBuffer, table: Uint32Array } | null", catch_unwind)]
    pub fn next_batch_blocking<'env>(
        &mut self,
        env: &'env Env,
        timeout_ms: Option<f64>,
    ) -> Result<Option<Object<'env>>> {
        self.take_back(env)?;
        let capture = self.engine.as_mut().ok_or_else(|| closed(env))?;
        let ready = interruptible(env, timeout_from_ms(timeout_ms), |slice| capture.wait_ready(slice).or_throw(env))?;
        if ready {
            self.next_batch(env)
        } else {
            Ok(None)
        }
    }

    /// Detaches the lent block and hands it back to the kernel.
    #[napi(catch_unwind)]
    pub fn release(&mut self, env: &Env) -> Result<()> {
        self.take_back(env)?;
        if let Some(capture) = self.engine.as_mut() {
            capture.release();
        }
        Ok(())
    }

    /// Replaces the filter (null: accept all). The lent block is taken back first; packets
    /// already in the ring are filtered with the new program as they are read.
    #[napi(catch_unwind)]
    pub fn set_filter(&mut self, env: &Env, filter: Option<Either<String, Vec<NativeBpfInstruction>>>) -> Result<()> {
        self.take_back(env)?;
        let capture = self.engine.as_mut().ok_or_else(|| closed(env))?;
        let program = filter.map(|f| engine_filter(f, capture.config().snap_len)).transpose().or_throw(env)?;
        capture.set_filter(program).or_throw(env)
    }

    /// Resolves once a block may be ready or the socket reports an error (with the epoll
    /// events, > 0), or with 0 when the wait is withdrawn (`cancelWait`, `close`). Never blocks
    /// the JavaScript thread: the wait happens on the engine's reactor thread.
    #[napi(ts_return_type = "Promise<number>", catch_unwind)]
    pub fn wait_readable<'env>(&mut self, env: &'env Env) -> Result<Object<'env>> {
        self.take_back(env)?;
        let capture = self.engine.as_mut().ok_or_else(|| closed(env))?;
        readiness_promise(env, |callback| capture.arm_wait(callback))
    }

    /// Withdraws a pending `waitReadable` (it resolves with 0).
    #[napi(catch_unwind)]
    pub fn cancel_wait(&mut self) {
        if let Some(callback) = self.engine.as_mut().and_then(Capture::disarm_wait) {
            callback(Readiness::Cancelled);
        }
    }

    #[napi(catch_unwind)]
    pub fn stats(&mut self, env: &Env) -> Result<NativeCaptureStats> {
        let s = self.engine.as_mut().ok_or_else(|| closed(env))?.stats().or_throw(env)?;
        Ok(NativeCaptureStats { packets: s.packets as f64, drops: s.drops as f64, freeze_count: s.freeze_count as f64 })
    }

    #[napi(catch_unwind)]
    pub fn info(&self, env: &Env) -> Result<NativeCaptureInfo> {
        let c = self.engine.as_ref().ok_or_else(|| closed(env))?;
        let cfg = c.config();
        Ok(NativeCaptureInfo {
            interface: c.interface().name.clone(),
            ifindex: c.interface().index,
            profile: cfg.profile.into(),
            block_size: cfg.geometry.block_size,
            block_count: cfg.geometry.block_count,
            frame_size: cfg.geometry.frame_size,
            requested_block_count: c.requested_geometry().block_count,
            block_timeout_ms: cfg.block_timeout_ms,
            snap_len: cfg.snap_len,
            locked: c.mapping().locked(),
            copy_mode: self.force_copy || self.copied || lends_copies(env),
            fanout_group: cfg.fanout.map(|f| u32::from(f.group)),
        })
    }

    #[napi(getter, catch_unwind)]
    pub fn fd(&self) -> i32 {
        self.engine.as_ref().map_or(-1, Capture::fd)
    }

    #[napi(getter, catch_unwind)]
    pub fn closed(&self) -> bool {
        self.engine.is_none()
    }

    /// Detaches the lent block, withdraws the pending wait, closes the socket. Idempotent.
    #[napi(catch_unwind)]
    pub fn close(&mut self, env: &Env) -> Result<()> {
        // A block whose memory escaped, or that cannot be detached (marked untransferable: its
        // views keep reading it), needs no error here: the socket closes either way, so the
        // kernel writes no more into what a view may see.
        if let Some(lent) = self.lent.take() {
            // SAFETY: nothing to write back on receive.
            let _ = unsafe { lent.take_back(env, None) };
            lent.forget(env.raw());
        }
        // Dropping the engine capture withdraws its wait (the promise resolves with 0), closes
        // the socket and drops its share of the mapping.
        self.engine = None;
        self.reported.withdraw(env);
        Ok(())
    }

    /// Takes the lent block back from JavaScript (detaches it) before the engine may hand it to
    /// the kernel. Fails closed: if a Node-API call fails, or the memory escaped, the socket
    /// closes instead, and the block is never handed back while a view may still see it.
    fn take_back(&mut self, env: &Env) -> Result<()> {
        let Some(lent) = self.lent.as_ref() else {
            return Ok(());
        };
        // SAFETY: nothing to write back on receive.
        let taken = unsafe { lent.take_back(env, None) }.inspect_err(|_| self.engine = None)?;
        if let Some(lent) = self.lent.take() {
            lent.forget(env.raw());
        }
        if !matches!(taken, TakenBack::Escaped | TakenBack::Refused) {
            return Ok(());
        }
        // The block's memory was transferred to an ArrayBuffer we cannot detach, or cannot be
        // detached at all. Closing the socket (as close() does: the wait withdrawn, the ring no
        // longer reported to V8) stops the kernel writing into the ring; the mapping itself
        // stays alive for as long as that ArrayBuffer does.
        self.close(env)?;
        Err(to_js_error(
            env,
            taken.error(
                "a batch's ArrayBuffer",
                "capture",
                &self.interface,
                "copy packets you want to keep (packet.copy(), Buffer.from(packet.data))",
            ),
        ))
    }
}

impl ObjectFinalize for NativeCapture {
    /// Collected without `close()`: the socket closes here. A buffer JavaScript still holds
    /// cannot be detached from a finalizer, but it stays valid: it keeps the mapping alive, and
    /// with the socket closed the kernel writes no more into it.
    fn finalize(mut self, env: Env) -> Result<()> {
        if let Some(lent) = self.lent.take() {
            lent.forget(env.raw());
        }
        self.reported.withdraw(&env);
        Ok(())
    }
}

fn closed(env: &Env) -> napi::Error {
    to_js_error(
        env,
        netring_engine::Error::new(
            netring_engine::Errno::EBADF,
            netring_engine::Subject::None,
            "the capture is closed",
        )
        .with_syscall("close"),
    )
}

fn engine_options(o: NativeCaptureOptions) -> crate::error::Result<CaptureOptions> {
    Ok(CaptureOptions {
        filter: o.filter.map(|f| engine_filter(f, o.snap_len)).transpose()?,
        profile: o.profile.map(Into::into),
        promiscuous: o.promiscuous,
        block_size: o.block_size,
        block_count: o.block_count,
        frame_size: o.frame_size,
        snap_len: o.snap_len,
        block_timeout_ms: o.block_timeout_ms,
        fill_rxhash: o.fill_rxhash,
        ignore_outgoing: o.ignore_outgoing,
        busy_poll_us: o.busy_poll_us,
        timestamp_source: o.timestamp_source.map(Into::into),
        fanout: o
            .fanout
            .map(|f| FanoutConfig::new(f.group, f.mode.into(), fanout_flags(f.flags.as_deref().unwrap_or_default())))
            .transpose()?,
        reinsert_vlan: o.reinsert_vlan,
        offload_info: o.offload_info,
    })
}

/// A filter in any of its three forms: an expression, `tcpdump -dd` text, or instructions.
pub fn engine_filter(
    filter: Either<String, Vec<NativeBpfInstruction>>,
    snap_len: Option<u32>,
) -> crate::error::Result<BpfProgram> {
    match filter {
        Either::A(text) => BpfProgram::from_text(&text, snap_len),
        Either::B(insns) => insns
            .iter()
            .map(|i| BpfProgram::instruction_from(i.code, i.jt, i.jf, i.k))
            .collect::<netring_engine::Result<Vec<_>>>()
            .and_then(BpfProgram::new),
    }
}
