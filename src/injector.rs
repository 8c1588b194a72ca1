//! `NativeInjector`: the engine's `Injector`, with zero-copy slots lent to JavaScript.

use napi::bindgen_prelude::{Buffer, Object, ObjectFinalize};
use napi::{Env, JsValue, Result};
use netring_engine::afpacket::offload;
use netring_engine::reactor::Readiness;
use netring_engine::{ffi, Errno, Error, Injector, InjectorOptions, InjectorStats, RefusedFrame, Subject};

use crate::error::{error_object, to_js_error, OrThrow};
use crate::external_memory::ReportedMemory;
use crate::frame_list::{FrameList, ReadFrame};
use crate::lent_buffer::{force_copy_from_env, LentBuffer, TakenBack};
use crate::wait::{interruptible, readiness_promise, timeout_from_ms};

#[napi(object)]
pub struct NativeInjectorOptions {
    pub frame_size: Option<u32>,
    pub frame_count: Option<u32>,
    pub qdisc_bypass: Option<bool>,
    pub offload: Option<bool>,
}

/// Offload metadata of one frame, as `Packet.offload` shows it.
#[napi(object)]
pub struct NativeOffload {
    pub gso_type: Option<String>,
    pub gso_size: Option<u32>,
    pub hdr_len: Option<u32>,
    pub csum_start: Option<u32>,
    pub csum_offset: Option<u32>,
    pub needs_csum: Option<bool>,
    pub csum_valid: Option<bool>,
}

impl NativeOffload {
    /// The header these fields make (each checked to fit; the whole is checked against its
    /// frame when sent).
    fn header(&self) -> netring_engine::Result<ffi::virtio_net_hdr> {
        Ok(ffi::virtio_net_hdr {
            flags: offload::flags(self.needs_csum.unwrap_or(false), self.csum_valid.unwrap_or(false)),
            gso_type: self.gso_type.as_deref().map_or(Ok(ffi::VIRTIO_NET_HDR_GSO_NONE), offload::gso_type)?,
            hdr_len: offload::field(self.hdr_len, "offload.hdrLen")?,
            gso_size: offload::field(self.gso_size, "offload.gsoSize")?,
            csum_start: offload::field(self.csum_start, "offload.csumStart")?,
            csum_offset: offload::field(self.csum_offset, "offload.csumOffset")?,
        })
    }
}

/// The GSO type names by their number in the virtio-net header ("" where none is defined).
#[napi(catch_unwind)]
pub fn gso_type_names() -> Result<Vec<&'static str>> {
    Ok(offload::GSO_TYPE_NAMES.to_vec())
}

/// Bytes of offload metadata before each frame of a capture with `offloadInfo`.
#[napi]
pub const OFFLOAD_HDR_LEN: u32 = ffi::VIRTIO_NET_HDR_LEN as u32;
#[napi]
pub const OFFLOAD_F_NEEDS_CSUM: u32 = ffi::VIRTIO_NET_HDR_F_NEEDS_CSUM as u32;
#[napi]
pub const OFFLOAD_F_DATA_VALID: u32 = ffi::VIRTIO_NET_HDR_F_DATA_VALID as u32;
#[napi]
pub const OFFLOAD_GSO_ECN: u32 = ffi::VIRTIO_NET_HDR_GSO_ECN as u32;

#[napi(object)]
pub struct NativeInjectorInfo {
    pub interface: String,
    pub ifindex: u32,
    pub frame_size: u32,
    pub frame_count: u32,
    /// Bytes of frame data one slot holds.
    pub slot_capacity: u32,
    /// The largest untagged frame that can be sent now (slot, or MTU + 14); an 802.1Q-tagged
    /// frame may be 4 bytes longer.
    pub max_frame_length: u32,
    pub qdisc_bypass: bool,
    /// Frames are sent with offload metadata (GSO frames up to 64 KiB included).
    pub offload: bool,
    pub locked: bool,
}

#[napi(object)]
pub struct NativeInjectorStats {
    pub sent: f64,
    pub rejected: f64,
    pub withdrawn: f64,
    pub pending: u32,
}

/// Consecutive slots lent as one ArrayBuffer: frame data `stride` bytes apart.
struct Run {
    lent: LentBuffer,
    count: u32,
    length: u32,
}

#[napi(custom_finalize)]
pub struct NativeInjector {
    engine: Option<Injector>,
    /// The interface's name, for errors raised after the engine is gone.
    interface: String,
    /// The ring's size, reported to V8 while the injector is open.
    reported: ReportedMemory,
    /// The slot lent for each frame index, if any, with its length.
    lent: Vec<Option<(LentBuffer, u32)>>,
    /// Runs of slots lent as one buffer, by their first frame index.
    runs: Vec<Option<Run>>,
    force_copy: bool,
    /// The counts at close(), still given by `stats()` afterwards.
    final_stats: Option<InjectorStats>,
    /// The frames of the `send_frames` call being made (empty between calls; kept for its capacity).
    read: Vec<ReadFrame>,
}

#[napi]
impl NativeInjector {
    #[napi(factory, catch_unwind)]
    pub fn open(env: Env, interface: String, options: Option<NativeInjectorOptions>) -> Result<NativeInjector> {
        let options = options.map_or_else(InjectorOptions::default, |o| InjectorOptions {
            frame_size: o.frame_size,
            frame_count: o.frame_count,
            qdisc_bypass: o.qdisc_bypass,
            offload: o.offload,
        });
        let engine = Injector::open(&interface, options).or_throw(&env)?;
        let frames = engine.geometry().frame_count() as usize;
        Ok(NativeInjector {
            reported: ReportedMemory::report(&env, engine.mapping().len()),
            engine: Some(engine),
            interface,
            lent: (0..frames).map(|_| None).collect(),
            runs: (0..frames).map(|_| None).collect(),
            force_copy: force_copy_from_env(),
            final_stats: None,
            read: Vec::new(),
        })
    }

    /// Copies `frame` into the ring and queues it; returns its sequence number, or -1 when the
    /// ring is full.
    #[napi(catch_unwind)]
    pub fn send(&mut self, env: &Env, frame: Buffer) -> Result<f64> {
        Ok(self.engine(env)?.send(&frame).or_throw(env)?.map_or(-1.0, |seq| seq as f64))
    }

    /// Like `send`, with the frame's offload metadata; a frame larger than a slot leaves at
    /// once through the injector's second socket, after everything queued (-1 while some is).
    #[napi(catch_unwind)]
    pub fn send_offload(&mut self, env: &Env, frame: Buffer, offload: NativeOffload) -> Result<f64> {
        let h = offload.header().or_throw(env)?;
        Ok(self.engine(env)?.send_offload(&frame, Some(&h), false).or_throw(env)?.map_or(-1.0, |seq| seq as f64))
    }

    /// Throws what `send` (or `send_offload`, with `offload`) would throw for `frame`, queueing
    /// nothing.
    #[napi(catch_unwind)]
    pub fn check(&mut self, env: &Env, frame: Buffer, offload: Option<NativeOffload>) -> Result<()> {
        let h = offload.map(|o| o.header()).transpose().or_throw(env)?;
        self.engine(env)?.check_frame(&frame, h.as_ref()).or_throw(env)
    }

    /// Forwards a captured frame with its raw offload header (10 bytes as the capture received
    /// them, or null); `modified`: the bytes were rewritten, so their checksums are redone.
    /// Returns the frame's sequence number, or -1 when it must wait (ring full).
    #[napi(catch_unwind)]
    pub fn forward(&mut self, env: &Env, frame: Buffer, header: Option<Buffer>, modified: bool) -> Result<f64> {
        let h = header.filter(|b| b.len() == ffi::VIRTIO_NET_HDR_LEN).map(|b| offload::read(&b));
        Ok(self.engine(env)?.send_offload(&frame, h.as_ref(), modified).or_throw(env)?.map_or(-1.0, |seq| seq as f64))
    }

    /// Sets the offload metadata a lent slot is sent with. The engine keeps it and writes it in
    /// front of the frame only when the frame is queued, after checking it.
    #[napi(catch_unwind)]
    pub fn set_slot_offload(&mut self, env: &Env, index: u32, offload: NativeOffload) -> Result<()> {
        let h = offload.header().or_throw(env)?;
        self.engine(env)?.set_slot_offload(index, &h).or_throw(env)
    }

    /// Queues frames (Buffers or Uint8Arrays) in order until the ring is full; returns how many
    /// were queued (none when any frame is refused).
    #[napi(ts_args_type = "frames: Uint8Array[]", catch_unwind)]
    pub fn send_frames(&mut self, env: &Env, frames: Object) -> Result<u32> {
        let list = FrameList::new(env, &frames)?;
        let Self { engine, read, .. } = self;
        let engine = engine.as_mut().ok_or_else(|| closed(env))?;
        // SAFETY: used by the engine call, with no JavaScript in between, then cleared.
        let sent = unsafe { list.read_all(read) }.and_then(|()| engine.send_frames(read));
        read.clear();
        sent.map_err(|e| list.error(env, e))
    }

    /// Like `send_frames`, with offload metadata: `headers` holds 10-byte virtio-net headers
    /// (as the facade encodes `offload`), one for every frame or one per frame (`per_frame`: the
    /// caller gave a list, so an error names the entry). A frame larger than a slot leaves
    /// through the second socket, in order.
    #[napi(ts_args_type = "frames: Uint8Array[], headers: Buffer, perFrame: boolean", catch_unwind)]
    pub fn send_frames_offload(&mut self, env: &Env, frames: Object, headers: Buffer, per_frame: bool) -> Result<u32> {
        let list = FrameList::new(env, &frames)?;
        let Self { engine, read, .. } = self;
        let engine = engine.as_mut().ok_or_else(|| closed(env))?;
        // SAFETY: as in send_frames.
        let refused = match unsafe { list.read_all(read) } {
            Ok(()) => engine.send_frames_offload(read, &headers).map_err(|r| refused_error(env, r, per_frame)),
            Err(e) => Err(list.error(env, e)),
        };
        read.clear();
        refused
    }

    /// Lends the next free slot as `{ index, data }` (`data`: an ArrayBuffer of `length` bytes
    /// over the ring frame), or null when the ring is full.
    #[napi(ts_return_type = "{ index: number, data: ArrayBuffer } | null", catch_unwind)]
    pub fn allocate<'env>(&mut self, env: &'env Env, length: u32) -> Result<Option<Object<'env>>> {
        let force_copy = self.force_copy;
        let engine = self.engine(env)?;
        let Some(index) = engine.allocate(length as usize).or_throw(env)? else { return Ok(None) };
        let mapping = engine.mapping().clone();
        let ptr = engine.slot_ptr(index);
        // SAFETY: the slot lies inside the mapping, is ours (Lent) until committed or discarded,
        // and no other lent buffer covers it (each frame index has at most one).
        let (lent, data) = unsafe { LentBuffer::lend(env, ptr, length as usize, &mapping, force_copy)? };
        self.lent[index as usize] = Some((lent, length));
        let mut result = Object::new(env)?;
        result.set("index", index)?;
        // SAFETY: created just above in this scope.
        unsafe { result.set("data", napi::bindgen_prelude::Unknown::from_raw_unchecked(env.raw(), data))? };
        Ok(Some(result))
    }

    /// Lends up to `count` consecutive slots of `length` bytes as one ArrayBuffer: slot `i`
    /// starts at `i * stride` and holds `length` bytes. Null when the ring is full. One lend and
    /// one detach for the whole run is what makes zero-copy sending cheap per frame.
    #[napi(ts_return_type = "{ first: number, count: number, stride: number, data: ArrayBuffer } | null", catch_unwind)]
    pub fn allocate_run<'env>(&mut self, env: &'env Env, count: u32, length: u32) -> Result<Option<Object<'env>>> {
        let force_copy = self.force_copy;
        let engine = self.engine(env)?;
        let Some((first, n)) = engine.allocate_run(count, length as usize).or_throw(env)? else { return Ok(None) };
        let stride = engine.frame_stride();
        let span = (n as usize - 1) * stride + length as usize;
        let mapping = engine.mapping().clone();
        let ptr = engine.slot_ptr(first);
        // SAFETY: the run's frames are consecutive and one stride apart inside the mapping, all
        // lent to this run alone, and `span` ends inside the last frame.
        let (lent, data) = unsafe { LentBuffer::lend(env, ptr, span, &mapping, force_copy)? };
        self.runs[first as usize] = Some(Run { lent, count: n, length });
        let mut result = Object::new(env)?;
        result.set("first", first)?;
        result.set("count", n)?;
        result.set("stride", stride as u32)?;
        // SAFETY: created just above in this scope.
        unsafe { result.set("data", napi::bindgen_prelude::Unknown::from_raw_unchecked(env.raw(), data))? };
        Ok(Some(result))
    }

    /// Queues the first `send` slots of a run and gives the rest back; the run's buffer is
    /// detached first. `lengths` holds one length for every slot, or one per queued slot. On
    /// error nothing is queued and the whole run goes back.
    #[napi(catch_unwind)]
    pub fn commit_run(&mut self, env: &Env, first: u32, send: u32, lengths: Vec<u32>) -> Result<()> {
        let (count, _) = self.take_back_run(env, first, send > 0)?;
        self.engine(env)?.commit_run(first, count, send, &lengths).or_throw(env)
    }

    /// Like `commit_run`, with offload metadata for the slots sent (10-byte headers, one for
    /// all or one per slot sent, as for `send_frames_offload`).
    #[napi(catch_unwind)]
    pub fn commit_run_offload(
        &mut self,
        env: &Env,
        first: u32,
        send: u32,
        lengths: Vec<u32>,
        headers: Buffer,
        per_slot: bool,
    ) -> Result<()> {
        let (count, _) = self.take_back_run(env, first, send > 0)?;
        let refused = self.engine(env)?.commit_run_offload(first, count, send, &lengths, &headers);
        refused.map_err(|r| refused_error(env, r, per_slot))
    }

    /// Queues a lent slot with `length` bytes (at most what was allocated); its buffer is
    /// detached first. Returns the frame's sequence number. On error the slot goes back.
    #[napi(catch_unwind)]
    pub fn commit(&mut self, env: &Env, index: u32, length: u32) -> Result<f64> {
        self.take_back(env, index, true)?;
        Ok(self.engine(env)?.commit(index, length as usize).or_throw(env)? as f64)
    }

    /// Gives a lent slot back unused; its buffer is detached.
    #[napi(catch_unwind)]
    pub fn discard(&mut self, env: &Env, index: u32) -> Result<()> {
        self.take_back(env, index, false)?;
        self.engine(env)?.discard(index).or_throw(env)
    }

    /// Sends everything queued with one kick; returns how many frames the kernel took.
    #[napi(catch_unwind)]
    pub fn flush(&mut self, env: &Env) -> Result<u32> {
        self.engine(env)?.flush().or_throw(env)
    }

    /// The frames the kernel refused since the last call, or null: their sequence numbers and
    /// the same Error object a throw carries.
    #[napi(ts_return_type = "{ seqs: number[], error: Error } | null", catch_unwind)]
    pub fn take_rejection<'env>(&mut self, env: &'env Env) -> Result<Option<Object<'env>>> {
        let Some(rejection) = self.engine(env)?.take_rejection() else { return Ok(None) };
        let mut object = Object::new(env)?;
        object.set("seqs", rejection.seqs.iter().map(|&s| s as f64).collect::<Vec<f64>>())?;
        object.set("error", error_object(env, rejection.error)?)?;
        Ok(Some(object))
    }

    /// Every frame with a smaller sequence number was sent, refused or withdrawn.
    #[napi(catch_unwind)]
    pub fn settled_before(&mut self, env: &Env) -> Result<f64> {
        Ok(self.engine(env)?.settled_before() as f64)
    }

    /// Withdraws queued frame `seq` if the kernel has not taken it yet; whether it was.
    #[napi(catch_unwind)]
    pub fn withdraw(&mut self, env: &Env, seq: f64) -> Result<bool> {
        Ok(self.engine(env)?.withdraw(seq as u64))
    }

    /// Blocks until everything queued was sent or `timeoutMs` passed; returns whether it all was.
    #[napi(catch_unwind)]
    pub fn drain(&mut self, env: &Env, timeout_ms: Option<f64>) -> Result<bool> {
        let injector = self.engine(env)?;
        interruptible(env, timeout_from_ms(timeout_ms), |slice| injector.drain(slice).or_throw(env))
    }

    /// Resolves (with the epoll events, > 0) once the ring may have room, or with 0 when the
    /// wait is withdrawn. Waits on the engine's reactor thread.
    #[napi(ts_return_type = "Promise<number>", catch_unwind)]
    pub fn wait_writable<'env>(&mut self, env: &'env Env) -> Result<Object<'env>> {
        let injector = self.engine(env)?;
        readiness_promise(env, |callback| injector.arm_wait(callback))
    }

    #[napi(catch_unwind)]
    pub fn cancel_wait(&mut self) {
        if let Some(callback) = self.engine.as_mut().and_then(Injector::disarm_wait) {
            callback(Readiness::Cancelled);
        }
    }

    #[napi(catch_unwind)]
    pub fn stats(&mut self, env: &Env) -> Result<NativeInjectorStats> {
        let s = match (&self.engine, self.final_stats) {
            (None, Some(last)) => last,
            _ => self.engine(env)?.stats(),
        };
        Ok(NativeInjectorStats {
            sent: s.sent as f64,
            rejected: s.rejected as f64,
            withdrawn: s.withdrawn as f64,
            pending: s.pending,
        })
    }

    #[napi(catch_unwind)]
    pub fn info(&mut self, env: &Env) -> Result<NativeInjectorInfo> {
        let e = self.engine(env)?;
        let g = e.geometry();
        Ok(NativeInjectorInfo {
            interface: e.interface().name.clone(),
            ifindex: e.interface().index,
            frame_size: g.frame_size,
            frame_count: g.frame_count(),
            slot_capacity: e.slot_capacity(),
            max_frame_length: e.max_frame_len(false),
            qdisc_bypass: e.qdisc_bypass(),
            offload: e.offload(),
            locked: e.mapping().locked(),
        })
    }

    #[napi(getter, catch_unwind)]
    pub fn fd(&self) -> i32 {
        self.engine.as_ref().map_or(-1, Injector::fd)
    }

    #[napi(getter, catch_unwind)]
    pub fn closed(&self) -> bool {
        self.engine.is_none()
    }

    /// Takes back every slot and run still lent and gives them back unsent, so none holds back
    /// the frames queued after it (before a close, which drains first).
    #[napi(catch_unwind)]
    pub fn give_back_lent(&mut self, env: &Env) -> Result<()> {
        for index in 0..self.lent.len() as u32 {
            if self.lent[index as usize].is_some() {
                self.take_back(env, index, false)?;
                self.engine(env)?.discard(index).or_throw(env)?;
            }
        }
        for first in 0..self.runs.len() as u32 {
            if self.runs[first as usize].is_some() {
                let (count, _) = self.take_back_run(env, first, false)?;
                self.engine(env)?.commit_run(first, count, 0, &[0]).or_throw(env)?;
            }
        }
        Ok(())
    }

    /// Detaches every lent slot and closes the socket (without flushing: the facade decides).
    #[napi(catch_unwind)]
    pub fn close(&mut self, env: &Env) -> Result<()> {
        // Failures need no error here: the socket closes either way, so the kernel reads nothing
        // a view may still write.
        for (lent, _) in self.lent.iter_mut().filter_map(Option::take) {
            // SAFETY: nothing is written back on close.
            let _ = unsafe { lent.take_back(env, None) };
            lent.forget(env.raw());
        }
        for run in self.runs.iter_mut().filter_map(Option::take) {
            // SAFETY: as above.
            let _ = unsafe { run.lent.take_back(env, None) };
            run.lent.forget(env.raw());
        }
        // Frames still queued never leave now: their senders were told (a sendAsync promise
        // rejects with EBADF, a drain() or close() said not all was sent), so they count as
        // withdrawn.
        self.final_stats = self.engine.take().map(|engine| {
            let s = engine.stats();
            InjectorStats { withdrawn: s.withdrawn + u64::from(s.pending), pending: 0, ..s }
        });
        self.reported.withdraw(env);
        Ok(())
    }

    fn engine(&mut self, env: &Env) -> Result<&mut Injector> {
        self.engine.as_mut().ok_or_else(|| closed(env))
    }

    /// Takes a run's buffer back (in copy mode, writing the copy back to the ring first).
    /// Returns the run's slot count and length. Fails closed like `take_back`.
    fn take_back_run(&mut self, env: &Env, first: u32, sending: bool) -> Result<(u32, u32)> {
        let Some(run) = self.runs.get(first as usize).and_then(Option::as_ref) else {
            return Err(self.not_lent(env, format!("no run of slots starts at {first}")));
        };
        let (count, length) = (run.count, run.length);
        let dest = self
            .engine
            .as_ref()
            .map(|engine| (engine.slot_ptr(first), (count as usize - 1) * engine.frame_stride() + length as usize));
        // SAFETY: the run is still lent (ours) and spans that many bytes from its first slot.
        let taken = unsafe { run.lent.take_back(env, dest) };
        let taken = self.settle(taken)?;
        if let Some(run) = self.runs[first as usize].take() {
            run.lent.forget(env.raw());
        }
        self.after_take_back(env, taken, first, count, sending)?;
        Ok((count, length))
    }

    /// A slot or run used after it went back: EBADF once the injector is closed (close() gave
    /// every lent slot back), else EINVAL.
    fn not_lent(&mut self, env: &Env, what: String) -> napi::Error {
        match self.engine(env) {
            Err(closed) => closed,
            Ok(_) => to_js_error(env, Error::new(Errno::EINVAL, Subject::None, what)),
        }
    }

    /// Takes slot `index`'s buffer back (in copy mode, writing the copy back to the ring first)
    /// and returns the length it was lent with. Fails closed: if a Node-API call fails the
    /// socket closes, and the slot never reaches the kernel while a view may still write it.
    fn take_back(&mut self, env: &Env, index: u32, sending: bool) -> Result<u32> {
        let Some((lent, length)) = self.lent.get(index as usize).and_then(Option::as_ref) else {
            return Err(self.not_lent(env, format!("slot {index} is not lent out")));
        };
        let length = *length;
        let dest = self.engine.as_ref().map(|engine| (engine.slot_ptr(index), length as usize));
        // SAFETY: the slot is still lent (ours) and holds `length` bytes.
        let taken = unsafe { lent.take_back(env, dest) };
        let taken = self.settle(taken)?;
        if let Some((lent, _)) = self.lent[index as usize].take() {
            lent.forget(env.raw());
        }
        self.after_take_back(env, taken, index, 1, sending)?;
        Ok(length)
    }

    /// A failed take-back closes the injector (fail closed) and passes the error on.
    fn settle(&mut self, taken: Result<TakenBack>) -> Result<TakenBack> {
        taken.inspect_err(|_| self.engine = None)
    }

    /// What a take-back found, acted on: escaped ring memory, or a buffer that cannot be
    /// detached, closes the injector (the kernel could send whatever is written later); a moved copy
    /// (copy mode) of slots about to be sent gives them back unsent, since what JavaScript
    /// wrote went with it.
    fn after_take_back(&mut self, env: &Env, taken: TakenBack, first: u32, count: u32, sending: bool) -> Result<()> {
        match taken {
            TakenBack::Detached => Ok(()),
            TakenBack::CopyMoved if !sending => Ok(()),
            TakenBack::Escaped | TakenBack::Refused => {
                self.engine = None;
                Err(to_js_error(
                    env,
                    taken.error(
                        "a slot's ArrayBuffer",
                        "injector",
                        &self.interface,
                        "write into slot.data, then slot.send(); copy data you want to keep",
                    ),
                ))
            }
            TakenBack::CopyMoved => {
                let engine = self.engine(env)?;
                for index in (first..first + count).rev() {
                    engine.discard(index).or_throw(env)?;
                }
                Err(to_js_error(
                    env,
                    Error::new(
                        Errno::EPERM,
                        Subject::None,
                        "a slot's ArrayBuffer was transferred before it was sent: what was written into it went \
                         with it, so nothing was sent",
                    )
                    .with_hint("write into the slot's Buffer and send() it; do not transfer it"),
                ))
            }
        }
    }
}

fn closed(env: &Env) -> napi::Error {
    to_js_error(env, Error::new(Errno::EBADF, Subject::None, "the injector is closed").with_syscall("sendto"))
}

/// A refused frame's error; where the caller gave one offload entry per frame (`per_item`), its
/// option names the entry: `offload[2].gsoSize`.
fn refused_error(env: &Env, refused: RefusedFrame, per_item: bool) -> napi::Error {
    let option = match (&refused.error.subject, refused.index) {
        (Subject::Option(name), Some(i)) if per_item => {
            name.strip_prefix("offload").map(|field| format!("offload[{i}]{field}"))
        }
        _ => None,
    };
    let object = error_object(env, refused.error).and_then(|mut object| {
        if let Some(option) = option {
            object.set("option", option)?;
        }
        Ok(object)
    });
    match object {
        Ok(object) => napi::Error::from(object.to_unknown()),
        Err(failed) => failed,
    }
}

impl ObjectFinalize for NativeInjector {
    fn finalize(mut self, env: Env) -> Result<()> {
        for (lent, _) in self.lent.iter_mut().filter_map(Option::take) {
            lent.forget(env.raw());
        }
        for run in self.runs.iter_mut().filter_map(Option::take) {
            run.lent.forget(env.raw());
        }
        self.reported.withdraw(&env);
        Ok(())
    }
}
