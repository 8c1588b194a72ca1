//! `NativeInjector`: the engine's `Injector`, with zero-copy slots lent to JavaScript.

use std::time::Duration;

use napi::bindgen_prelude::{Buffer, Object, ObjectFinalize};
use napi::{Env, Result};
use netring_engine::afpacket::offload;
use netring_engine::reactor::Readiness;
use netring_engine::{ffi, Errno, Error, Injector, InjectorOptions, Subject};

use crate::error::{error_json, to_napi, OrThrow};
use crate::lent_buffer::{force_copy_from_env, LentBuffer};
use crate::wait::readiness_promise;

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
#[napi]
pub fn gso_type_names() -> Vec<&'static str> {
    offload::GSO_TYPE_NAMES.to_vec()
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
            offload: o.offload,
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

    /// Copies `frame` into the ring and queues it; false when the ring is full.
    #[napi]
    pub fn send(&mut self, frame: Buffer) -> Result<bool> {
        self.engine()?.send(&frame).or_throw()
    }

    /// Like `send`, with the frame's offload metadata.
    #[napi]
    pub fn send_offload(&mut self, frame: Buffer, offload: NativeOffload) -> Result<bool> {
        let h = offload.header().or_throw()?;
        self.engine()?.send_offload(&frame, Some(&h), false).or_throw()
    }

    /// Forwards a captured frame with its raw offload header (10 bytes as the capture received
    /// them, or null); `modified`: the bytes were rewritten, so their checksums are redone.
    #[napi]
    pub fn forward(&mut self, frame: Buffer, header: Option<Buffer>, modified: bool) -> Result<bool> {
        let h = header.filter(|b| b.len() == ffi::VIRTIO_NET_HDR_LEN).map(|b| offload::read(&b));
        self.engine()?.send_offload(&frame, h.as_ref(), modified).or_throw()
    }

    /// Sets the offload metadata a lent slot is sent with.
    #[napi]
    pub fn set_slot_offload(&mut self, index: u32, offload: NativeOffload) -> Result<()> {
        let h = offload.header().or_throw()?;
        if self.lent.get(index as usize).is_none_or(Option::is_none) {
            return Err(to_napi(Error::new(Errno::EINVAL, Subject::None, format!("slot {index} is not lent out"))));
        }
        let engine = self.engine()?;
        if !engine.offload() {
            return Err(to_napi(Error::invalid_option(
                "offload",
                "this injector was opened without { offload: true }",
            )));
        }
        engine.set_slot_offload(index, &h);
        Ok(())
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
    /// detached first. `lengths` holds one length for every slot, or one per queued slot (each
    /// at most the run's slot length).
    #[napi]
    pub fn commit_run(&mut self, env: &Env, first: u32, send: u32, lengths: Vec<u32>) -> Result<()> {
        let (count, lent_length) = self.take_back_run(env, first)?;
        let engine = self.engine()?;
        let send = send.min(count);
        let length_of =
            |i: u32| if lengths.len() == 1 { lengths[0] } else { lengths.get(i as usize).copied().unwrap_or(u32::MAX) };
        let mut failed = None;
        if lengths.len() != 1 && lengths.len() < send as usize {
            failed = Some(Error::new(
                Errno::EINVAL,
                Subject::None,
                format!("{send} slots to send but {} lengths", lengths.len()),
            ));
        }
        let mut queued = 0;
        while failed.is_none() && queued < send {
            let length = length_of(queued);
            let result = if length > lent_length {
                Err(Error::new(
                    Errno::EINVAL,
                    Subject::None,
                    format!("cannot send {length} bytes from slots of {lent_length}"),
                ))
            } else {
                engine.commit(first + queued, length as usize)
            };
            match result {
                Ok(()) => queued += 1,
                Err(e) => failed = Some(e),
            }
        }
        // Give back what was not queued, last first, so the ring's cursor steps back over it.
        for index in (first + queued..first + count).rev() {
            engine.discard(index).or_throw()?;
        }
        failed.map_or(Ok(()), |e| Err(to_napi(e)))
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
            offload: e.offload(),
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
            return Err(to_napi(Error::new(
                Errno::EINVAL,
                Subject::None,
                format!("no run of slots starts at {first}"),
            )));
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
