//! `NativeXdpSocket`: the engine's `XdpSocket`, with received frames and TX slots lent to
//! JavaScript as ArrayBuffers over the UMEM.
//!
//! An RX batch is lent as one ArrayBuffer per run of consecutive frames (one or two: the engine
//! fills in address order), each covering only frames the batch owns, plus a table saying where
//! each packet lies. Taking the batch back detaches those buffers before the engine may post
//! their frames to the fill ring again.

use napi::bindgen_prelude::{Array, Buffer, Either, Object, ObjectFinalize, Unknown};
use napi::{sys, Env, Result};
use netring_engine::reactor::Readiness;
use netring_engine::{Errno, Error, ProgramChoice, Subject, XdpOptions, XdpSocket, XskMapSource};

use crate::batch_table::u32_array;
use crate::error::{to_js_error, OrThrow};
use crate::frame_list::FrameList;
use crate::lent_buffer::{force_copy_from_env, lends_copies, LentBuffer, TakenBack};
use crate::vocabulary::{XdpAttach, XdpMode, XdpZeroCopy};
use crate::wait::{interruptible, readiness_promise, timeout_from_ms};

/// RX table: header words (packet count, run count, receive time sec, nsec), then per packet
/// (run, offset in the run's buffer, length).
#[napi]
pub const XDP_TABLE_HEADER_WORDS: u32 = 4;
#[napi]
pub const XDP_TABLE_ROW_WORDS: u32 = 3;

#[napi(object)]
pub struct NativeXdpOptions {
    pub queue: Option<u32>,
    pub mode: Option<XdpMode>,
    pub attach: Option<XdpAttach>,
    /// 'auto', 'on' or 'off'.
    pub zero_copy: Option<XdpZeroCopy>,
    pub need_wakeup: Option<bool>,
    pub frame_size: Option<u32>,
    pub frame_count: Option<u32>,
    pub ring_size: Option<u32>,
    pub headroom: Option<u32>,
    /// 'builtin' or 'none'. Instead: `program_fd`, the user's XDP program by descriptor;
    /// `xsk_map`, the user's XSKMAP (a pinned path or a descriptor); or both.
    pub program: Option<String>,
    pub program_fd: Option<i32>,
    pub xsk_map: Option<Either<String, i32>>,
    pub busy_poll_us: Option<u32>,
    pub batch_size: Option<u32>,
}

#[napi(object)]
pub struct NativeXdpInfo {
    pub interface: String,
    pub ifindex: u32,
    pub queue: u32,
    pub mode: String,
    pub zero_copy: bool,
    /// 'driver' or 'skb' for a program netring attached; null with program 'none' or { xskMap }.
    pub attach: Option<String>,
    pub program_id: u32,
    pub need_wakeup: bool,
    pub frame_size: u32,
    pub frame_count: u32,
    pub rx_frames: u32,
    pub tx_frames: u32,
    pub ring_size: u32,
    pub headroom: u32,
    pub batch_size: u32,
    /// Buffers are copies (the runtime refuses external buffers, or on Node >= 22 no working
    /// `ArrayBuffer.prototype.transfer` was there when netring loaded).
    pub copy_mode: bool,
}

#[napi(object)]
#[derive(Clone)]
pub struct NativeXdpStats {
    pub received: f64,
    /// RX batches handed out, and the times the socket slept waiting for packets.
    pub batches: f64,
    pub waits: f64,
    pub sent: f64,
    pub pending: u32,
    /// TX frames that will never leave, their sender told: still in the TX ring at close().
    pub withdrawn: f64,
    pub rx_dropped: f64,
    pub rx_invalid_descs: f64,
    pub tx_invalid_descs: f64,
    pub rx_ring_full: f64,
    pub rx_fill_ring_empty_descs: f64,
    pub tx_ring_empty_descs: f64,
    /// Now, not cumulative: RX frames in the fill ring (what the kernel can still receive into
    /// before the next batch is taken) and packets waiting in the RX ring.
    pub fill_ring: u32,
    pub rx_ring: u32,
}

/// TX frames lent as one buffer: `count` frames one frame size apart, `length` bytes each.
struct TxRun {
    lent: LentBuffer,
    count: u32,
    length: u32,
}

#[napi(custom_finalize)]
pub struct NativeXdpSocket {
    engine: Option<XdpSocket>,
    /// The interface's name, for errors raised after the engine is gone.
    interface: String,
    /// The held RX batch's buffers, one per run.
    rx_lent: Vec<LentBuffer>,
    /// Lent TX runs by their first frame.
    tx_lent: Vec<Option<TxRun>>,
    force_copy: bool,
    copied: bool,
    /// The counts at close(), still given by `stats()` afterwards.
    final_stats: Option<NativeXdpStats>,
}

#[napi]
impl NativeXdpSocket {
    #[napi(factory, catch_unwind)]
    pub fn open(env: &Env, interface: String, options: Option<NativeXdpOptions>) -> Result<NativeXdpSocket> {
        let options = options.map(engine_options).transpose().or_throw(env)?.unwrap_or_default();
        let engine = XdpSocket::open(&interface, options).or_throw(env)?;
        let frames = engine.config().frame_count as usize;
        Ok(NativeXdpSocket {
            engine: Some(engine),
            interface,
            rx_lent: Vec::with_capacity(netring_engine::afxdp::socket::MAX_RUNS),
            tx_lent: (0..frames).map(|_| None).collect(),
            force_copy: force_copy_from_env(),
            copied: false,
            final_stats: None,
        })
    }

    /// The next received packets as `[table, ...runs]`, or null: the table (a `Uint32Array`,
    /// layout above), then one ArrayBuffer per run. One array rather than an object: a batch
    /// holds a few packets at low rates, and named properties on a fresh object cost more per
    /// batch than the rest of the call. The batch lent before is detached and its frames
    /// returned to the kernel first.
    #[napi(ts_return_type = "[Uint32Array, ...ArrayBuffer[]] | null", catch_unwind)]
    pub fn next_batch<'env>(&mut self, env: &'env Env) -> Result<Option<Array<'env>>> {
        self.take_back_rx(env)?;
        let force_copy = self.force_copy;
        let engine = self.engine.as_mut().ok_or_else(|| closed(env))?;
        let umem = engine.umem().clone();
        let fs = engine.frame_size() as usize;
        let Some(batch) = engine.next_batch().or_throw(env)? else { return Ok(None) };
        let now = realtime();

        let rows = batch.packets.len();
        let words = (XDP_TABLE_HEADER_WORDS + XDP_TABLE_ROW_WORDS * rows as u32) as usize;
        let (table, cells) = u32_array(env, words)?;
        cells[0] = rows as u32;
        cells[1] = batch.runs.len() as u32;
        (cells[2], cells[3]) = now;
        // Packets come in run order, one frame each: run k holds the next `runs[k].count`. A
        // batch that wraps the RX range has a second run at lower addresses than the first, so
        // a packet's run is found by counting, never by comparing frame numbers.
        let run_of = batch.runs.iter().enumerate().flat_map(|(k, r)| (0..r.count).map(move |_| (k, r.first)));
        for (i, (p, (run, first))) in batch.packets.iter().zip(run_of).enumerate() {
            let row = XDP_TABLE_HEADER_WORDS as usize + i * XDP_TABLE_ROW_WORDS as usize;
            cells[row] = run as u32;
            cells[row + 1] = (p.frame - first) * fs as u32 + p.offset;
            cells[row + 2] = p.len;
        }
        let mut result = env.create_array(1 + batch.runs.len() as u32)?;
        // SAFETY: created in this scope.
        result.set(0, unsafe { Unknown::from_raw_unchecked(env.raw(), table) })?;
        for (i, r) in batch.runs.iter().enumerate() {
            // SAFETY: the run's frames lie inside the UMEM, are Lent to this batch alone, and the
            // previous batch's buffers were taken back above, so no other lent buffer covers them.
            let (lent, value) = unsafe {
                LentBuffer::lend(
                    env,
                    umem.as_ptr().add(r.first as usize * fs),
                    r.count as usize * fs,
                    &umem,
                    force_copy,
                )?
            };
            self.copied = lent.is_copy();
            self.rx_lent.push(lent);
            // SAFETY: created just above in this scope.
            result.set(1 + i as u32, unsafe { Unknown::from_raw_unchecked(env.raw(), value) })?;
        }
        Ok(Some(result))
    }

    /// Blocks until packets are ready or `timeoutMs` passes, then behaves like `nextBatch`.
    #[napi(ts_return_type = "[Uint32Array, ...ArrayBuffer[]] | null", catch_unwind)]
    pub fn next_batch_blocking<'env>(
        &mut self,
        env: &'env Env,
        timeout_ms: Option<f64>,
    ) -> Result<Option<Array<'env>>> {
        self.take_back_rx(env)?;
        let engine = self.engine(env)?;
        // In slices, as for Capture: worker.terminate() and process.exit() wait for this thread.
        if interruptible(env, timeout_from_ms(timeout_ms), |slice| engine.wait_ready(slice).or_throw(env))? {
            self.next_batch(env)
        } else {
            Ok(None)
        }
    }

    /// Detaches the held batch's buffers and gives its frames back to the kernel.
    #[napi(catch_unwind)]
    pub fn release(&mut self, env: &Env) -> Result<()> {
        self.take_back_rx(env)?;
        if let Some(engine) = self.engine.as_mut() {
            engine.release();
        }
        Ok(())
    }

    /// Resolves (events > 0) once packets may be ready, or with 0 when withdrawn. The held
    /// batch is released first. The facade also re-checks periodically: a deleted interface
    /// wakes no epoll waiter.
    #[napi(ts_return_type = "Promise<number>", catch_unwind)]
    pub fn wait_readable<'env>(&mut self, env: &'env Env) -> Result<Object<'env>> {
        self.release(env)?;
        let engine = self.engine(env)?;
        readiness_promise(env, |callback| engine.arm_wait(false, callback))
    }

    /// Resolves once the TX ring may have room (POLLOUT), or with 0 when withdrawn.
    #[napi(ts_return_type = "Promise<number>", catch_unwind)]
    pub fn wait_writable<'env>(&mut self, env: &'env Env) -> Result<Object<'env>> {
        let engine = self.engine(env)?;
        readiness_promise(env, |callback| engine.arm_wait(true, callback))
    }

    #[napi(catch_unwind)]
    pub fn cancel_wait(&mut self) {
        if let Some(callback) = self.engine.as_mut().and_then(XdpSocket::disarm_wait) {
            callback(Readiness::Cancelled);
        }
    }

    /// Copies `frame` into a TX frame and queues it; false when none is free.
    #[napi(catch_unwind)]
    pub fn send(&mut self, env: &Env, frame: Buffer) -> Result<bool> {
        self.engine(env)?.send(&frame).or_throw(env)
    }

    /// Copies frames (Buffers or Uint8Arrays) into free TX frames and queues them in order until
    /// none is free; returns how many. Every frame is checked first: on error nothing is queued.
    #[napi(ts_args_type = "frames: Uint8Array[]", catch_unwind)]
    pub fn send_frames(&mut self, env: &Env, frames: Object) -> Result<u32> {
        let list = FrameList::new(env, &frames)?;
        // SAFETY: the engine copies each frame before it reads the next (send_frames_with).
        let sent = self.engine(env)?.send_frames_with(list.len(), |i| unsafe { list.frame(i) });
        sent.map_err(|e| list.error(env, e))
    }

    /// Lends one TX frame of `length` bytes: `{ index, data }`, or null when none is free.
    #[napi(ts_return_type = "{ index: number, data: ArrayBuffer } | null", catch_unwind)]
    pub fn allocate<'env>(&mut self, env: &'env Env, length: u32) -> Result<Option<Object<'env>>> {
        let Some((first, _, data)) = self.lend_run(env, 1, length)? else { return Ok(None) };
        let mut result = Object::new(env)?;
        result.set("index", first)?;
        // SAFETY: created in lend_run in this scope.
        unsafe { result.set("data", Unknown::from_raw_unchecked(env.raw(), data))? };
        Ok(Some(result))
    }

    /// Lends up to `count` consecutive TX frames as one buffer: slot `i` at `i * stride`.
    #[napi(ts_return_type = "{ first: number, count: number, stride: number, data: ArrayBuffer } | null", catch_unwind)]
    pub fn allocate_run<'env>(&mut self, env: &'env Env, count: u32, length: u32) -> Result<Option<Object<'env>>> {
        let Some((first, n, data)) = self.lend_run(env, count, length)? else { return Ok(None) };
        let mut result = Object::new(env)?;
        result.set("first", first)?;
        result.set("count", n)?;
        result.set("stride", self.engine(env)?.frame_size())?;
        // SAFETY: created in lend_run in this scope.
        unsafe { result.set("data", Unknown::from_raw_unchecked(env.raw(), data))? };
        Ok(Some(result))
    }

    /// Queues the first `send` slots of a run (detached first) and gives the rest back.
    /// `lengths`: one for all, or one per queued slot. On error nothing is queued and the whole
    /// run goes back.
    #[napi(catch_unwind)]
    pub fn commit_run(&mut self, env: &Env, first: u32, send: u32, lengths: Vec<u32>) -> Result<()> {
        self.commit_lent(env, first, send, &lengths)
    }

    #[napi(catch_unwind)]
    pub fn commit(&mut self, env: &Env, index: u32, length: u32) -> Result<()> {
        self.commit_lent(env, index, 1, &[length])
    }

    #[napi(catch_unwind)]
    pub fn discard(&mut self, env: &Env, index: u32) -> Result<()> {
        self.commit_lent(env, index, 0, &[0])
    }

    /// Publishes what was queued and kicks the kernel when it asks; returns how many frames.
    #[napi(catch_unwind)]
    pub fn flush(&mut self, env: &Env) -> Result<u32> {
        self.engine(env)?.flush().or_throw(env)
    }

    /// Flushes and blocks until everything was sent or `timeoutMs` passed.
    #[napi(catch_unwind)]
    pub fn drain(&mut self, env: &Env, timeout_ms: Option<f64>) -> Result<bool> {
        // No number can make the conversion panic (Infinity: no limit).
        self.engine(env)?.drain(timeout_from_ms(timeout_ms)).or_throw(env)
    }

    #[napi(catch_unwind)]
    pub fn stats(&mut self, env: &Env) -> Result<NativeXdpStats> {
        if let (None, Some(last)) = (&self.engine, &self.final_stats) {
            return Ok(last.clone());
        }
        let engine = self.engine(env)?;
        let pending = engine.pending();
        let s = engine.stats().or_throw(env)?;
        let k = s.kernel;
        Ok(NativeXdpStats {
            received: s.received as f64,
            batches: s.batches as f64,
            waits: s.waits as f64,
            sent: s.sent as f64,
            pending,
            withdrawn: 0.0,
            rx_dropped: k.rx_dropped as f64,
            rx_invalid_descs: k.rx_invalid_descs as f64,
            tx_invalid_descs: k.tx_invalid_descs as f64,
            rx_ring_full: k.rx_ring_full as f64,
            rx_fill_ring_empty_descs: k.rx_fill_ring_empty_descs as f64,
            tx_ring_empty_descs: k.tx_ring_empty_descs as f64,
            fill_ring: s.fill_ring,
            rx_ring: s.rx_ring,
        })
    }

    #[napi(catch_unwind)]
    pub fn info(&self, env: &Env) -> Result<NativeXdpInfo> {
        let e = self.engine.as_ref().ok_or_else(|| closed(env))?;
        let c = e.config();
        let i = e.info();
        Ok(NativeXdpInfo {
            interface: e.interface().name.clone(),
            ifindex: e.interface().index,
            queue: c.queue,
            mode: c.mode.name().into(),
            zero_copy: i.zero_copy,
            attach: i.attach.map(|a| a.name().to_string()),
            program_id: i.prog_id,
            need_wakeup: c.need_wakeup,
            frame_size: c.frame_size,
            frame_count: c.frame_count,
            rx_frames: i.rx_frames,
            tx_frames: i.tx_frames,
            ring_size: c.ring_size,
            headroom: c.headroom,
            batch_size: c.batch_size,
            copy_mode: self.force_copy || self.copied || lends_copies(env),
        })
    }

    #[napi(getter, catch_unwind)]
    pub fn fd(&self) -> i32 {
        self.engine.as_ref().map_or(-1, XdpSocket::fd)
    }

    #[napi(getter, catch_unwind)]
    pub fn closed(&self) -> bool {
        self.engine.is_none()
    }

    /// Detaches every lent buffer, withdraws the wait, unmaps the rings and closes the socket
    /// (the program goes with the last socket on the interface). Idempotent.
    #[napi(catch_unwind)]
    pub fn close(&mut self, env: &Env) -> Result<()> {
        // Failures need no error here: the socket closes either way, so the kernel writes no
        // more into what a view may still see.
        for lent in self.rx_lent.drain(..) {
            // SAFETY: nothing is written back on close.
            let _ = unsafe { lent.take_back(env, None) };
            lent.forget(env.raw());
        }
        for run in self.tx_lent.iter_mut().filter_map(Option::take) {
            // SAFETY: as above.
            let _ = unsafe { run.lent.take_back(env, None) };
            run.lent.forget(env.raw());
        }
        // Frames still in the TX ring never leave now (their senders were told: a sendAsync
        // promise rejects with EBADF, drain() said not all was sent): they count as withdrawn.
        // Without the kernel's counters (the interface is gone) there are no final counts.
        self.final_stats = self.stats(env).ok().map(|s| NativeXdpStats {
            withdrawn: s.withdrawn + f64::from(s.pending),
            pending: 0,
            fill_ring: 0,
            rx_ring: 0,
            ..s
        });
        self.engine = None;
        Ok(())
    }

    /// Throws what `send` would throw for `frame` (EINVAL, EMSGSIZE), queueing nothing.
    #[napi(catch_unwind)]
    pub fn check(&mut self, env: &Env, frame: Buffer) -> Result<()> {
        self.engine(env)?.check_frame(&frame).or_throw(env)
    }

    fn engine(&mut self, env: &Env) -> Result<&mut XdpSocket> {
        self.engine.as_mut().ok_or_else(|| closed(env))
    }

    fn lend_run(&mut self, env: &Env, count: u32, length: u32) -> Result<Option<(u32, u32, sys::napi_value)>> {
        let force_copy = self.force_copy;
        let engine = self.engine(env)?;
        let Some((first, n)) = engine.allocate_run(count, length as usize).or_throw(env)? else { return Ok(None) };
        let stride = engine.frame_size() as usize;
        let span = (n as usize - 1) * stride + length as usize;
        let umem = engine.umem().clone();
        let ptr = engine.frame_ptr(first);
        // SAFETY: the run's frames are consecutive TX frames inside the UMEM, TxLent to this run
        // alone; `span` ends inside the last one (length <= frame size was checked).
        let (lent, data) = unsafe { LentBuffer::lend(env, ptr, span, &umem, force_copy)? };
        self.tx_lent[first as usize] = Some(TxRun { lent, count: n, length });
        Ok(Some((first, n, data)))
    }

    fn commit_lent(&mut self, env: &Env, first: u32, send: u32, lengths: &[u32]) -> Result<()> {
        let count = self.take_back_tx(env, first)?;
        self.engine(env)?.commit_run(first, count, send, lengths).or_throw(env)
    }

    fn take_back_rx(&mut self, env: &Env) -> Result<()> {
        // Fails closed: every run is taken back before any is forgotten, and a failed Node-API
        // call closes the socket instead of handing frames a view may see back to the kernel.
        let mut kept = None;
        for lent in &self.rx_lent {
            // SAFETY: nothing to write back on receive.
            let taken = unsafe { lent.take_back(env, None) }.inspect_err(|_| self.engine = None)?;
            if matches!(taken, TakenBack::Escaped | TakenBack::Refused) {
                kept = Some(taken);
            }
        }
        for lent in self.rx_lent.drain(..) {
            lent.forget(env.raw());
        }
        let Some(kept) = kept else { return Ok(()) };
        // A frame's memory was transferred to an ArrayBuffer we cannot detach, or cannot be
        // detached at all: closing the socket stops the kernel writing into the UMEM; the memory
        // lives as long as that buffer. Closed as close() does: the other lent buffers detached,
        // the final counts kept for stats().
        self.close(env)?;
        Err(to_js_error(
            env,
            kept.error(
                "a batch's ArrayBuffer",
                "socket",
                &self.interface,
                "copy packets you want to keep (packet.copy(), Buffer.from(packet.data))",
            ),
        ))
    }

    fn take_back_tx(&mut self, env: &Env, first: u32) -> Result<u32> {
        let Some(run) = self.tx_lent.get(first as usize).and_then(Option::as_ref) else {
            // close() detached every lent run: a slot used after it gets the socket's EBADF.
            self.engine(env)?;
            return Err(to_js_error(
                env,
                Error::new(Errno::EINVAL, Subject::None, format!("no slot is lent at frame {first}")),
            ));
        };
        let (count, length) = (run.count, run.length);
        let dest = self.engine.as_ref().map(|engine| {
            (engine.frame_ptr(first), (count as usize - 1) * engine.frame_size() as usize + length as usize)
        });
        // SAFETY: the run is still lent (ours) and spans that many bytes from its first frame.
        // Fails closed: the run stays recorded as lent until the take-back succeeded.
        let taken = unsafe { run.lent.take_back(env, dest) }.inspect_err(|_| self.engine = None)?;
        if let Some(run) = self.tx_lent[first as usize].take() {
            run.lent.forget(env.raw());
        }
        if taken == TakenBack::Detached {
            return Ok(count);
        }
        self.close(env)?;
        Err(to_js_error(
            env,
            taken.error(
                "a slot's ArrayBuffer",
                "socket",
                &self.interface,
                "write into slot.data, then slot.send(); copy data you want to keep",
            ),
        ))
    }
}

impl ObjectFinalize for NativeXdpSocket {
    /// Collected without `close()`: the socket closes here; buffers JavaScript still holds keep
    /// the UMEM mapped, and the kernel no longer writes into it.
    fn finalize(mut self, env: Env) -> Result<()> {
        for lent in self.rx_lent.drain(..) {
            lent.forget(env.raw());
        }
        for run in self.tx_lent.iter_mut().filter_map(Option::take) {
            run.lent.forget(env.raw());
        }
        Ok(())
    }
}

fn closed(env: &Env) -> napi::Error {
    to_js_error(env, Error::new(Errno::EBADF, Subject::None, "the AF_XDP socket is closed").with_syscall("close"))
}

/// CLOCK_REALTIME as (sec, nsec): the receive time of a batch (copy-mode AF_XDP carries none).
fn realtime() -> (u32, u32) {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    (ts.tv_sec as u32, ts.tv_nsec as u32)
}

fn engine_options(o: NativeXdpOptions) -> netring_engine::Result<XdpOptions> {
    let xsk_map = o.xsk_map.map(|m| match m {
        Either::A(path) => XskMapSource::Path(path),
        Either::B(fd) => XskMapSource::Fd(fd),
    });
    let program = match (o.program.as_deref(), o.program_fd, xsk_map) {
        (_, Some(fd), xsk_map) => Some(ProgramChoice::Program { fd, xsk_map }),
        (_, None, Some(map)) => Some(ProgramChoice::XskMap(map)),
        (Some("none"), None, None) => Some(ProgramChoice::None),
        (Some("builtin"), None, None) => Some(ProgramChoice::BuiltIn),
        (None, None, None) => None,
        (Some(other), None, None) => {
            return Err(Error::invalid_option(
                "program",
                format!("must be 'builtin', 'none', {{ xskMap }} or {{ fd, xskMap? }}, got '{other}'"),
            ))
        }
    };
    Ok(XdpOptions {
        queue: o.queue,
        mode: o.mode.map(Into::into),
        attach: o.attach.map(Into::into),
        // 'auto' is the engine's default: the kernel chooses.
        zero_copy: o.zero_copy.and_then(|z| match z {
            XdpZeroCopy::Auto => None,
            z => Some(z.into()),
        }),
        need_wakeup: o.need_wakeup,
        frame_size: o.frame_size,
        frame_count: o.frame_count,
        ring_size: o.ring_size,
        headroom: o.headroom,
        program,
        busy_poll_us: o.busy_poll_us,
        batch_size: o.batch_size,
    })
}
