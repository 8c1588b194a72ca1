//! XdpSocket options: what a caller may ask for, the defaults (written once, here), and the
//! checks made before any system call so that an error can name the option.

use crate::error::{Error, Result};

use super::program::{AttachMode, ProgramChoice, XskMapSource};

/// Which directions the socket serves; the UMEM is split accordingly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    Rx,
    Tx,
    RxTx,
}

impl XdpMode {
    pub fn name(self) -> &'static str {
        match self {
            XdpMode::Rx => "rx",
            XdpMode::Tx => "tx",
            XdpMode::RxTx => "rxtx",
        }
    }

    pub fn receives(self) -> bool {
        self != XdpMode::Tx
    }

    pub fn transmits(self) -> bool {
        self != XdpMode::Rx
    }
}

/// Zero-copy: `Auto` lets the kernel choose (zero-copy where the driver supports it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZeroCopy {
    Auto,
    Required,
    Off,
}

#[derive(Debug, Clone, Default)]
pub struct XdpOptions {
    pub queue: Option<u32>,
    pub mode: Option<XdpMode>,
    pub attach: Option<AttachMode>,
    pub zero_copy: Option<ZeroCopy>,
    pub need_wakeup: Option<bool>,
    pub frame_size: Option<u32>,
    pub frame_count: Option<u32>,
    pub ring_size: Option<u32>,
    pub headroom: Option<u32>,
    pub program: Option<ProgramChoice>,
    pub busy_poll_us: Option<u32>,
    pub batch_size: Option<u32>,
}

pub const DEFAULT_FRAME_SIZE: u32 = 2048;
pub const DEFAULT_FRAME_COUNT: u32 = 4096;
pub const DEFAULT_RING_SIZE: u32 = 2048;
pub const DEFAULT_BATCH_SIZE: u32 = 256;
/// The kernel refuses a ring beyond this many entries (`XSK_RING_*` sizes are u32, the
/// allocation is capped by the page allocator well before).
const MAX_RING_SIZE: u32 = 1 << 16;

/// The fill and RX rings hold every RX frame by default: a frame the fill ring has no room for
/// is UMEM the kernel never receives into, and when the consumer is off the CPU the frames
/// posted are all the kernel has (with 4096 RX frames and 2048 entries, half sat idle and the
/// fill ring ran dry twice as soon).
fn default_ring_size(rx_frames: u32) -> u32 {
    rx_frames.checked_next_power_of_two().unwrap_or(MAX_RING_SIZE).clamp(DEFAULT_RING_SIZE, MAX_RING_SIZE)
}

/// Options resolved with defaults and checked.
#[derive(Debug, Clone)]
pub struct XdpConfig {
    pub queue: u32,
    pub mode: XdpMode,
    pub attach: AttachMode,
    pub zero_copy: ZeroCopy,
    pub need_wakeup: bool,
    pub frame_size: u32,
    pub frame_count: u32,
    pub ring_size: u32,
    pub headroom: u32,
    pub program: ProgramChoice,
    pub busy_poll_us: Option<u32>,
    pub batch_size: u32,
}

impl XdpConfig {
    pub fn resolve(o: XdpOptions) -> Result<XdpConfig> {
        let mode = o.mode.unwrap_or(XdpMode::RxTx);
        let mut c = XdpConfig {
            queue: o.queue.unwrap_or(0),
            mode,
            attach: o.attach.unwrap_or(AttachMode::Auto),
            zero_copy: o.zero_copy.unwrap_or(ZeroCopy::Auto),
            need_wakeup: o.need_wakeup.unwrap_or(true),
            frame_size: o.frame_size.unwrap_or(DEFAULT_FRAME_SIZE),
            frame_count: o.frame_count.unwrap_or(DEFAULT_FRAME_COUNT),
            ring_size: 0,
            headroom: o.headroom.unwrap_or(0),
            program: o.program.unwrap_or(if mode.receives() { ProgramChoice::BuiltIn } else { ProgramChoice::None }),
            busy_poll_us: o.busy_poll_us,
            batch_size: 0,
        };
        c.ring_size = o.ring_size.unwrap_or_else(|| default_ring_size(c.split().0));
        c.batch_size = o.batch_size.unwrap_or(DEFAULT_BATCH_SIZE.min(c.ring_size));
        if c.frame_size != 2048 && c.frame_size != 4096 {
            return Err(Error::invalid_option("frameSize", format!("must be 2048 or 4096, got {}", c.frame_size)));
        }
        let min_frames = if mode == XdpMode::RxTx { 2 } else { 1 };
        if c.frame_count < min_frames || c.frame_count > (1 << 20) || !c.frame_count.is_multiple_of(min_frames) {
            return Err(Error::invalid_option(
                "frameCount",
                format!(
                    "must be from {min_frames} to 1048576 (even in 'rxtx' mode: half RX, half TX), got {}",
                    c.frame_count
                ),
            ));
        }
        if !c.ring_size.is_power_of_two() || c.ring_size > MAX_RING_SIZE {
            return Err(Error::invalid_option(
                "ringSize",
                format!("must be a power of two up to {MAX_RING_SIZE}, got {}", c.ring_size),
            ));
        }
        // The kernel keeps XDP_PACKET_HEADROOM (256) in front of RX data as well; a frame must
        // still hold a full-size Ethernet frame.
        let room = c.frame_size - crate::ffi::XDP_PACKET_HEADROOM;
        if c.headroom > room.saturating_sub(1518) || !c.headroom.is_multiple_of(8) {
            return Err(Error::invalid_option(
                "headroom",
                format!(
                    "must be a multiple of 8 up to {} with frameSize {} (a frame keeps 256 bytes for the kernel and 1518 for the packet), got {}",
                    room.saturating_sub(1518) & !7,
                    c.frame_size,
                    c.headroom
                ),
            ));
        }
        if c.batch_size == 0 || c.batch_size > c.ring_size {
            return Err(Error::invalid_option(
                "batchSize",
                format!("must be from 1 to ringSize ({}), got {}", c.ring_size, c.batch_size),
            ));
        }
        // SO_BUSY_POLL takes an int: above i32::MAX the kernel would see a negative number.
        if let Some(us) = c.busy_poll_us.filter(|us| *us > i32::MAX as u32) {
            return Err(Error::invalid_option(
                "busyPollUs",
                format!("must be from 0 to {} microseconds, got {us}", i32::MAX),
            ));
        }
        // Descriptor numbers are checked for being open (and BPF objects) when the socket opens.
        let negative = |fd: &i32| *fd < 0;
        match &c.program {
            ProgramChoice::Program { fd, .. } if negative(fd) => {
                return Err(Error::invalid_option("program.fd", format!("must be a file descriptor (>= 0), got {fd}")))
            }
            ProgramChoice::XskMap(XskMapSource::Fd(fd))
            | ProgramChoice::Program { xsk_map: Some(XskMapSource::Fd(fd)), .. }
                if negative(fd) =>
            {
                return Err(Error::invalid_option(
                    "program.xskMap",
                    format!("must be a file descriptor (>= 0) or a path, got {fd}"),
                ))
            }
            _ => {}
        }
        if !mode.receives() && c.program != ProgramChoice::None {
            return Err(Error::invalid_option(
                "program",
                "a 'tx' socket receives nothing: leave program unset or 'none'",
            ));
        }
        Ok(c)
    }

    /// Frames for RX and for TX: all of them for one direction, half and half for both.
    pub fn split(&self) -> (u32, u32) {
        match self.mode {
            XdpMode::Rx => (self.frame_count, 0),
            XdpMode::Tx => (0, self.frame_count),
            XdpMode::RxTx => (self.frame_count / 2, self.frame_count / 2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Subject;

    fn option_of(o: XdpOptions) -> &'static str {
        match XdpConfig::resolve(o).unwrap_err().subject {
            Subject::Option(name) => name,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_split_the_umem_half_and_half() {
        let c = XdpConfig::resolve(XdpOptions::default()).unwrap();
        assert_eq!((c.frame_size, c.frame_count, c.ring_size), (2048, 4096, 2048));
        assert_eq!(c.split(), (2048, 2048));
        // Receive-only: every frame is an RX frame, and the rings hold them all.
        let rx = XdpConfig::resolve(XdpOptions { mode: Some(XdpMode::Rx), ..Default::default() }).unwrap();
        assert_eq!((rx.split(), rx.ring_size, rx.batch_size), ((4096, 0), 4096, 256));
        let big = XdpOptions { mode: Some(XdpMode::Rx), frame_count: Some(6000), ..Default::default() };
        assert_eq!(XdpConfig::resolve(big).unwrap().ring_size, 8192);
        let explicit = XdpOptions { mode: Some(XdpMode::Rx), ring_size: Some(64), ..Default::default() };
        assert_eq!(XdpConfig::resolve(explicit).unwrap().batch_size, 64);
        assert!(c.need_wakeup);
        let tx = XdpConfig::resolve(XdpOptions { mode: Some(XdpMode::Tx), ..Default::default() }).unwrap();
        assert_eq!((tx.split(), tx.program), ((0, 4096), ProgramChoice::None));
    }

    #[test]
    fn bad_values_name_their_option() {
        assert_eq!(option_of(XdpOptions { frame_size: Some(3000), ..Default::default() }), "frameSize");
        assert_eq!(option_of(XdpOptions { frame_count: Some(3), ..Default::default() }), "frameCount");
        assert_eq!(option_of(XdpOptions { ring_size: Some(1000), ..Default::default() }), "ringSize");
        assert_eq!(option_of(XdpOptions { headroom: Some(400), ..Default::default() }), "headroom");
        assert_eq!(
            option_of(XdpOptions { headroom: Some(12), frame_size: Some(4096), ..Default::default() }),
            "headroom"
        );
        assert_eq!(option_of(XdpOptions { batch_size: Some(0), ..Default::default() }), "batchSize");
        assert_eq!(option_of(XdpOptions { busy_poll_us: Some(1 << 31), ..Default::default() }), "busyPollUs");
        assert!(XdpConfig::resolve(XdpOptions { busy_poll_us: Some(i32::MAX as u32), ..Default::default() }).is_ok());
        assert_eq!(
            option_of(XdpOptions {
                mode: Some(XdpMode::Tx),
                program: Some(ProgramChoice::BuiltIn),
                ..Default::default()
            }),
            "program"
        );
        let program = |p| XdpOptions { program: Some(p), ..Default::default() };
        assert_eq!(option_of(program(ProgramChoice::Program { fd: -1, xsk_map: None })), "program.fd");
        assert_eq!(option_of(program(ProgramChoice::XskMap(XskMapSource::Fd(-3)))), "program.xskMap");
        assert_eq!(
            option_of(program(ProgramChoice::Program { fd: 5, xsk_map: Some(XskMapSource::Fd(-1)) })),
            "program.xskMap"
        );
    }
}
