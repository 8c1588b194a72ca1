//! `NativeInjector`: the engine's `Injector`, with zero-copy slots lent to JavaScript.

use napi::bindgen_prelude::{Buffer, Object, ObjectFinalize};
use napi::{Env, Result};
use netring_engine::reactor::Readiness;
use netring_engine::{Errno, Error, Injector, InjectorOptions, Subject};

use crate::error::{error_json, to_napi, OrThrow};
use crate::lent_buffer::{force_copy_from_env, LentBuffer};
use crate::wait::{readiness_promise, timeout_from_ms};

#[napi(object)]
pub struct NativeInjectorOptions {
    pub frame_size: Option<u32>,
    pub frame_count: Option<u32>,
    pub qdisc_bypass: Option<bool>,
}

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
    pub locked: bool,
}

#[napi(object)]
pub struct NativeInjectorStats {
    pub sent: f64,
    pub rejected: f64,
    pub withdrawn: f64,
    pub pending: u32,
}

/// Frames the kernel refused: their sequence numbers, and the error as the JSON a thrown
/// error carries.
#[napi(object)]
pub struct NativeRejection {
    pub seqs: Vec<f64>,
    pub error: String,
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
    /// The slot lent for each frame index, if any, with its length.
    lent: Vec<Option<(LentBuffer, u32)>>,
    /// Runs of slots lent as one buffer, by their first frame index.
    runs: Vec<Option<Run>>,
    force_copy: bool,
}

#[napi]
impl NativeInjector {
    #[napi(factory)]
    pub fn open(interface: String, options: Option<NativeInjectorOptions>) -> Result<NativeInjector> {
        let options = options.map_or_else(InjectorOptions::default, |o| InjectorOptions {
            frame_size: o.frame_size,
            frame_count: o.frame_count,
            qdisc_bypass: o.qdisc_bypass,
        });
        let engine = Injector::open(&interface, options).or_throw()?;
        let frames = engine.geometry().frame_count() as usize;
        Ok(NativeInjector {
            engine: Some(engine),
            lent: (0..frames).map(|_| None).collect(),
            runs: (0..frames).map(|_| None).collect(),
            force_copy: force_copy_from_env(),
        })
    }

    /// Copies `frame` into the ring and queues it; returns its sequence number, or -1 when the
    /// ring is full.
    #[napi]
    pub fn send(&mut self, frame: Buffer) -> Result<f64> {
        Ok(self.engine()?.send(&frame).or_throw()?.map_or(-1.0, |seq| seq as f64))
    }

    /// Queues frames in order until the ring is full; returns how many were queued (none when
    /// any frame is refused).
    #[napi]
    pub fn send_batch(&mut self, frames: Vec<Buffer>) -> Result<u32> {
        self.engine()?.send_batch(&frames).or_throw()
    }

    /// Lends the next free slot as `{ index, data }` (`data`: an ArrayBuffer of `length` bytes
    /// over the ring frame), or null when the ring is full.
    #[napi(ts_return_type = "{ index: number, data: ArrayBuffer } | null")]
    pub fn allocate<'env>(&mut self, env: &'env Env, length: u32) -> Result<Option<Object<'env>>> {
        let force_copy = self.force_copy;
        let engine = self.engine()?;
        let Some(index) = engine.allocate(length as usize).or_throw()? else { return Ok(None) };
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
    #[napi(ts_return_type = "{ first: number, count: number, stride: number, data: ArrayBuffer } | null")]
    pub fn allocate_run<'env>(&mut self, env: &'env Env, count: u32, length: u32) -> Result<Option<Object<'env>>> {
        let force_copy = self.force_copy;
        let engine = self.engine()?;
        let Some((first, n)) = engine.allocate_run(count, length as usize).or_throw()? else { return Ok(None) };
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
    #[napi]
    pub fn commit_run(&mut self, env: &Env, first: u32, send: u32, lengths: Vec<u32>) -> Result<()> {
        let (count, _) = self.take_back_run(env, first)?;
        self.engine()?.commit_run(first, count, send, &lengths).or_throw()
    }

    /// Queues a lent slot with `length` bytes (at most what was allocated); its buffer is
    /// detached first. Returns the frame's sequence number. On error the slot goes back.
    #[napi]
    pub fn commit(&mut self, env: &Env, index: u32, length: u32) -> Result<f64> {
        self.take_back(env, index)?;
        Ok(self.engine()?.commit(index, length as usize).or_throw()? as f64)
    }

    /// Gives a lent slot back unused; its buffer is detached.
    #[napi]
    pub fn discard(&mut self, env: &Env, index: u32) -> Result<()> {
        self.take_back(env, index)?;
        self.engine()?.discard(index).or_throw()
    }

    /// Sends everything queued with one kick; returns how many frames the kernel took.
    #[napi]
    pub fn flush(&mut self) -> Result<u32> {
        self.engine()?.flush().or_throw()
    }

    /// The frames the kernel refused since the last call, or null.
    #[napi]
    pub fn take_rejection(&mut self) -> Result<Option<NativeRejection>> {
        Ok(self
            .engine()?
            .take_rejection()
            .map(|r| NativeRejection { seqs: r.seqs.iter().map(|&s| s as f64).collect(), error: error_json(r.error) }))
    }

    /// Every frame with a smaller sequence number was sent, refused or withdrawn.
    #[napi]
    pub fn settled_before(&mut self) -> Result<f64> {
        Ok(self.engine()?.settled_before() as f64)
    }

    /// Withdraws queued frame `seq` if the kernel has not taken it yet; whether it was.
    #[napi]
    pub fn withdraw(&mut self, seq: f64) -> Result<bool> {
        Ok(self.engine()?.withdraw(seq as u64))
    }

    /// Blocks until everything queued was sent or `timeoutMs` passed; returns whether it all was.
    #[napi]
    pub fn drain(&mut self, timeout_ms: Option<f64>) -> Result<bool> {
        let timeout = timeout_ms.and_then(timeout_from_ms);
        self.engine()?.drain(timeout).or_throw()
    }

    /// Resolves (with the epoll events, > 0) once the ring may have room, or with 0 when the
    /// wait is withdrawn. Waits on the engine's reactor thread.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn wait_writable<'env>(&mut self, env: &'env Env) -> Result<Object<'env>> {
        let injector = self.engine()?;
        readiness_promise(env, |callback| injector.arm_wait(callback))
    }

    #[napi]
    pub fn cancel_wait(&mut self) {
        if let Some(callback) = self.engine.as_mut().and_then(Injector::disarm_wait) {
            callback(Readiness::Cancelled);
        }
    }

    #[napi]
    pub fn stats(&mut self) -> Result<NativeInjectorStats> {
        let s = self.engine()?.stats();
        Ok(NativeInjectorStats {
            sent: s.sent as f64,
            rejected: s.rejected as f64,
            withdrawn: s.withdrawn as f64,
            pending: s.pending,
        })
    }

    #[napi]
    pub fn info(&mut self) -> Result<NativeInjectorInfo> {
        let e = self.engine()?;
        let g = e.geometry();
        Ok(NativeInjectorInfo {
            interface: e.interface().name.clone(),
            ifindex: e.interface().index,
            frame_size: g.frame_size,
            frame_count: g.frame_count(),
            slot_capacity: e.slot_capacity(),
            max_frame_length: e.max_frame_len(false),
            qdisc_bypass: e.qdisc_bypass(),
            locked: e.mapping().locked(),
        })
    }

    #[napi(getter)]
    pub fn fd(&self) -> i32 {
        self.engine.as_ref().map_or(-1, Injector::fd)
    }

    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.engine.is_none()
    }

    /// Takes back every slot and run still lent and gives them back unsent, so none holds back
    /// the frames queued after it (before a close, which drains first).
    #[napi]
    pub fn give_back_lent(&mut self, env: &Env) -> Result<()> {
        for index in 0..self.lent.len() as u32 {
            if self.lent[index as usize].is_some() {
                self.take_back(env, index)?;
                self.engine()?.discard(index).or_throw()?;
            }
        }
        for first in 0..self.runs.len() as u32 {
            if self.runs[first as usize].is_some() {
                let (count, _) = self.take_back_run(env, first)?;
                self.engine()?.commit_run(first, count, 0, &[0]).or_throw()?;
            }
        }
        Ok(())
    }

    /// Detaches every lent slot and closes the socket (without flushing: the facade decides).
    #[napi]
    pub fn close(&mut self, env: &Env) -> Result<()> {
        for (lent, _) in self.lent.iter_mut().filter_map(Option::take) {
            lent.take_back(env)?;
        }
        for run in self.runs.iter_mut().filter_map(Option::take) {
            run.lent.take_back(env)?;
        }
        self.engine = None;
        Ok(())
    }

    fn engine(&mut self) -> Result<&mut Injector> {
        self.engine.as_mut().ok_or_else(|| {
            to_napi(Error::new(Errno::EBADF, Subject::None, "the injector is closed").with_syscall("sendto"))
        })
    }

    /// Detaches a run's buffer (in copy mode, after writing the copy back to the ring).
    /// Returns the run's slot count and length.
    fn take_back_run(&mut self, env: &Env, first: u32) -> Result<(u32, u32)> {
        let Some(run) = self.runs.get_mut(first as usize).and_then(Option::take) else {
            return Err(self.not_lent(format!("no run of slots starts at {first}")));
        };
        if let Some(engine) = self.engine.as_ref() {
            let span = (run.count as usize - 1) * engine.frame_stride() + run.length as usize;
            // SAFETY: the run is still lent (ours) and spans `span` bytes from its first slot.
            unsafe { run.lent.write_back(engine.slot_ptr(first), span) };
        }
        let Run { lent, count, length } = run;
        if lent.take_back(env)? {
            return Ok((count, length));
        }
        self.engine = None;
        Err(transferred_error())
    }

    /// A slot or run used after it went back: EBADF once the injector is closed (close() gave
    /// every lent slot back), else EINVAL.
    fn not_lent(&mut self, what: String) -> napi::Error {
        match self.engine() {
            Err(closed) => closed,
            Ok(_) => to_napi(Error::new(Errno::EINVAL, Subject::None, what)),
        }
    }

    /// Detaches slot `index`'s buffer (in copy mode, after writing the copy back to the ring)
    /// and returns the length it was lent with.
    fn take_back(&mut self, env: &Env, index: u32) -> Result<u32> {
        let Some((lent, length)) = self.lent.get_mut(index as usize).and_then(Option::take) else {
            return Err(self.not_lent(format!("slot {index} is not lent out")));
        };
        if let Some(engine) = self.engine.as_ref() {
            // SAFETY: the slot is still lent (ours) and holds `length` bytes.
            unsafe { lent.write_back(engine.slot_ptr(index), length as usize) };
        }
        if lent.take_back(env)? {
            return Ok(length);
        }
        self.engine = None;
        Err(transferred_error())
    }
}

/// A slot's memory was transferred away: the kernel could send whatever the new owner writes
/// later, so the injector closes (see LentBuffer::take_back).
fn transferred_error() -> napi::Error {
    to_napi(
        Error::new(
            Errno::EPERM,
            Subject::None,
            "a slot's ArrayBuffer was transferred: ring memory cannot leave the injector, so it was closed",
        )
        .with_hint("write into slot.data, then slot.send(); copy data you want to keep"),
    )
}

impl ObjectFinalize for NativeInjector {
    fn finalize(mut self, env: Env) -> Result<()> {
        for (lent, _) in self.lent.iter_mut().filter_map(Option::take) {
            lent.forget(env.raw());
        }
        for run in self.runs.iter_mut().filter_map(Option::take) {
            run.lent.forget(env.raw());
        }
        Ok(())
    }
}
