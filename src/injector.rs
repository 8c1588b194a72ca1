//! `NativeInjector`: the engine's `Injector`, with zero-copy slots lent to JavaScript.

use std::time::Duration;

use napi::bindgen_prelude::{Buffer, Object, ObjectFinalize};
use napi::{Env, Result};
use netring_engine::reactor::Readiness;
use netring_engine::{Errno, Error, Injector, InjectorOptions, Subject};

use crate::error::{error_json, to_napi, OrThrow};
use crate::lent_buffer::{force_copy_from_env, LentBuffer};
use crate::wait::readiness_promise;

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
    pub pending: u32,
}

#[napi(custom_finalize)]
pub struct NativeInjector {
    engine: Option<Injector>,
    /// The slot lent for each frame index, if any, with its length.
    lent: Vec<Option<(LentBuffer, u32)>>,
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
            force_copy: force_copy_from_env(),
        })
    }

    /// Copies `frame` into the ring and queues it; false when the ring is full.
    #[napi]
    pub fn send(&mut self, frame: Buffer) -> Result<bool> {
        self.engine()?.send(&frame).or_throw()
    }

    /// Queues frames in order until the ring is full; returns how many were queued.
    #[napi]
    pub fn send_batch(&mut self, frames: Vec<Buffer>) -> Result<u32> {
        let engine = self.engine()?;
        let mut queued = 0;
        for frame in &frames {
            if !engine.send(frame).or_throw()? {
                break;
            }
            queued += 1;
        }
        Ok(queued)
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

    /// Queues a lent slot with `length` bytes (at most what was allocated); its buffer is
    /// detached first.
    #[napi]
    pub fn commit(&mut self, env: &Env, index: u32, length: u32) -> Result<()> {
        let lent_length = self.take_back(env, index)?;
        if length > lent_length {
            return Err(to_napi(Error::new(
                Errno::EINVAL,
                Subject::None,
                format!("cannot send {length} bytes from a slot of {lent_length}"),
            )));
        }
        let engine = self.engine()?;
        if let Err(e) = engine.commit(index, length as usize) {
            // The buffer is already detached: the slot cannot be written again, so give it back.
            engine.discard(index).or_throw()?;
            return Err(to_napi(e));
        }
        Ok(())
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

    /// The last rejection (a frame the kernel marked WRONG_FORMAT) not yet reported, as the
    /// same JSON a thrown error carries, or null.
    #[napi]
    pub fn take_rejection(&mut self) -> Result<Option<String>> {
        Ok(self.engine()?.take_rejection().map(error_json))
    }

    /// Blocks until everything queued was sent or `timeoutMs` passed; returns whether it all was.
    #[napi]
    pub fn drain(&mut self, timeout_ms: Option<f64>) -> Result<bool> {
        let timeout = timeout_ms.map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1000.0));
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
        Ok(NativeInjectorStats { sent: s.sent as f64, rejected: s.rejected as f64, pending: s.pending })
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

    /// Detaches every lent slot and closes the socket (without flushing: the facade decides).
    #[napi]
    pub fn close(&mut self, env: &Env) -> Result<()> {
        for (lent, _) in self.lent.iter_mut().filter_map(Option::take) {
            lent.take_back(env)?;
        }
        self.engine = None;
        Ok(())
    }

    fn engine(&mut self) -> Result<&mut Injector> {
        self.engine.as_mut().ok_or_else(|| {
            to_napi(Error::new(Errno::EBADF, Subject::None, "the injector is closed").with_syscall("sendto"))
        })
    }

    /// Detaches slot `index`'s buffer (in copy mode, after writing the copy back to the ring)
    /// and returns the length it was lent with.
    fn take_back(&mut self, env: &Env, index: u32) -> Result<u32> {
        let Some((lent, length)) = self.lent.get_mut(index as usize).and_then(Option::take) else {
            return Err(to_napi(Error::new(Errno::EINVAL, Subject::None, format!("slot {index} is not lent out"))));
        };
        if let Some(engine) = self.engine.as_ref() {
            // SAFETY: the slot is still lent (ours) and holds `length` bytes.
            unsafe { lent.write_back(engine.slot_ptr(index), length as usize) };
        }
        if lent.take_back(env)? {
            return Ok(length);
        }
        // The slot's memory was transferred away: the kernel could send whatever the new owner
        // writes later, so the injector stops here (see LentBuffer::take_back).
        self.engine = None;
        Err(to_napi(
            Error::new(
                Errno::EPERM,
                Subject::None,
                "a slot's ArrayBuffer was transferred: ring memory cannot leave the injector, so it was closed",
            )
            .with_hint("write into slot.data, then slot.send(); copy data you want to keep"),
        ))
    }
}

impl ObjectFinalize for NativeInjector {
    fn finalize(mut self, env: Env) -> Result<()> {
        for (lent, _) in self.lent.iter_mut().filter_map(Option::take) {
            lent.forget(env.raw());
        }
        Ok(())
    }
}
