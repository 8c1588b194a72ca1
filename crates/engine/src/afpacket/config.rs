//! Capture options: what a caller asks for (`CaptureOptions`, every field optional), the
//! profiles that supply the defaults, and the resolved, validated `CaptureConfig`.
//!
//! Defaults are written here and only here; the README and the typings quote this table.

use crate::error::{Error, Result};
use crate::ffi;

use super::fanout::FanoutConfig;
use super::filter::BpfProgram;
use super::ring::RingGeometry;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    #[default]
    Default,
    HighThroughput,
    LowLatency,
    LowMemory,
    Jumbo,
}

/// Ring shape and retire timeout of a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileDefaults {
    pub block_size: u32,
    pub block_count: u32,
    pub frame_size: u32,
    pub block_timeout_ms: u32,
}

const KIB: u32 = 1024;
const MIB: u32 = 1024 * 1024;

impl Profile {
    pub fn defaults(self) -> ProfileDefaults {
        let (block_size, block_count, frame_size, block_timeout_ms) = match self {
            // 16 MiB: absorbs a 100 ms stall at ~1 Gbit/s.
            Profile::Default => (MIB, 16, 2048, 10),
            // 256 MiB in 4 MiB blocks: few block hand-offs, long stalls absorbed.
            Profile::HighThroughput => (4 * MIB, 64, 2048, 50),
            // Small blocks retired after 1 ms: packets reach the reader quickly at low rates.
            Profile::LowLatency => (256 * KIB, 32, 2048, 1),
            // 512 KiB in all.
            Profile::LowMemory => (128 * KIB, 4, 2048, 10),
            // Blocks large enough for 64 KiB GRO/GSO packets and jumbo frames.
            Profile::Jumbo => (4 * MIB, 32, 64 * KIB, 10),
        };
        ProfileDefaults { block_size, block_count, frame_size, block_timeout_ms }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampSource {
    #[default]
    Software,
    /// Raw hardware timestamps where the NIC provides them (the kernel falls back to software
    /// timestamps and says so in each packet's status where it does not).
    Hardware,
}

/// What a caller asked for. `None` means "the profile's default".
#[derive(Debug, Clone, Default)]
pub struct CaptureOptions {
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
    pub fanout: Option<FanoutConfig>,
    pub filter: Option<BpfProgram>,
    pub reinsert_vlan: Option<bool>,
    pub offload_info: Option<bool>,
}

/// Resolved and validated options.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    pub profile: Profile,
    pub promiscuous: bool,
    pub geometry: RingGeometry,
    /// Bytes kept of each packet; `None` keeps whole packets.
    pub snap_len: Option<u32>,
    /// Retire timeout of a partly filled block; 0 lets the kernel choose.
    pub block_timeout_ms: u32,
    pub fill_rxhash: bool,
    pub ignore_outgoing: bool,
    pub busy_poll_us: Option<u32>,
    pub timestamp_source: TimestampSource,
    pub fanout: Option<FanoutConfig>,
    pub filter: Option<BpfProgram>,
    /// Write stripped 802.1Q tags back into the frame (as on the wire, as tcpdump shows them).
    pub reinsert_vlan: bool,
    /// Receive each frame's offload metadata (the virtio-net header, 10 bytes before it).
    pub offload_info: bool,
}

/// Longest retire timeout accepted: a minute. Longer makes a quiet capture look hung.
pub const MAX_BLOCK_TIMEOUT_MS: u32 = 60_000;

impl CaptureConfig {
    pub fn resolve(o: CaptureOptions) -> Result<Self> {
        let profile = o.profile.unwrap_or_default();
        let d = profile.defaults();
        let reinsert_vlan = o.reinsert_vlan.unwrap_or(true);
        let geometry = RingGeometry {
            block_size: o.block_size.unwrap_or(d.block_size),
            block_count: o.block_count.unwrap_or(d.block_count),
            frame_size: o.frame_size.unwrap_or(d.frame_size),
        };
        geometry.validate(min_rx_frame(reinsert_vlan))?;
        if o.snap_len == Some(0) {
            return Err(Error::invalid_option("snapLen", "must be at least 1 (leave it out to keep whole packets)"));
        }
        let block_timeout_ms = o.block_timeout_ms.unwrap_or(d.block_timeout_ms);
        // 0 would not mean "never": the kernel picks a timeout of its own from the link speed
        // (prb_calc_retire_blk_tmo()), so it is refused like any value out of range.
        if !(1..=MAX_BLOCK_TIMEOUT_MS).contains(&block_timeout_ms) {
            return Err(Error::invalid_option(
                "blockTimeoutMs",
                format!("must be from 1 to {MAX_BLOCK_TIMEOUT_MS}, got {block_timeout_ms}"),
            ));
        }
        if let Some(us) = o.busy_poll_us {
            if us > i32::MAX as u32 {
                return Err(Error::invalid_option("busyPollUs", format!("must be at most {}, got {us}", i32::MAX)));
            }
        }
        if let Some(f) = &o.fanout {
            f.validate()?;
        }
        Ok(CaptureConfig {
            profile,
            promiscuous: o.promiscuous.unwrap_or(false),
            geometry,
            snap_len: o.snap_len,
            block_timeout_ms,
            fill_rxhash: o.fill_rxhash.unwrap_or(false),
            ignore_outgoing: o.ignore_outgoing.unwrap_or(false),
            busy_poll_us: o.busy_poll_us,
            timestamp_source: o.timestamp_source.unwrap_or_default(),
            fanout: o.fanout,
            filter: o.filter,
            reinsert_vlan,
            offload_info: o.offload_info.unwrap_or(false),
        })
    }

    /// The filter to attach, with the snapshot length folded in.
    pub fn effective_filter(&self) -> Option<BpfProgram> {
        match (&self.filter, self.snap_len) {
            (Some(f), Some(s)) => Some(f.with_snap_len(s)),
            (Some(f), None) => Some(f.clone()),
            (None, Some(s)) => Some(BpfProgram::accept_all(s)),
            (None, None) => None,
        }
    }

    /// Headroom asked of the kernel in front of each frame.
    pub fn reserve(&self) -> u32 {
        if self.reinsert_vlan {
            ffi::VLAN_HLEN as u32
        } else {
            0
        }
    }
}

/// The kernel refuses RX frames smaller than `TPACKET3_HDRLEN + reserve`.
fn min_rx_frame(reinsert_vlan: bool) -> u32 {
    let reserve = if reinsert_vlan { ffi::VLAN_HLEN } else { 0 };
    ffi::tpacket_align(ffi::TPACKET3_HDRLEN + reserve) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Subject;

    #[test]
    fn every_profile_is_valid() {
        for p in [Profile::Default, Profile::HighThroughput, Profile::LowLatency, Profile::LowMemory, Profile::Jumbo] {
            let cfg = CaptureConfig::resolve(CaptureOptions { profile: Some(p), ..Default::default() });
            assert!(cfg.is_ok(), "{p:?}: {cfg:?}");
        }
    }

    #[test]
    fn explicit_options_override_the_profile() {
        let cfg = CaptureConfig::resolve(CaptureOptions {
            profile: Some(Profile::LowMemory),
            block_count: Some(9),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(cfg.geometry.block_count, 9);
        assert_eq!(cfg.geometry.block_size, Profile::LowMemory.defaults().block_size);
    }

    #[test]
    fn errors_name_the_option() {
        let opt = |o: CaptureOptions| match CaptureConfig::resolve(o).unwrap_err().subject {
            Subject::Option(name) => name,
            s => panic!("{s:?}"),
        };
        assert_eq!(opt(CaptureOptions { snap_len: Some(0), ..Default::default() }), "snapLen");
        assert_eq!(opt(CaptureOptions { block_timeout_ms: Some(70_000), ..Default::default() }), "blockTimeoutMs");
        assert_eq!(opt(CaptureOptions { block_timeout_ms: Some(0), ..Default::default() }), "blockTimeoutMs");
        assert_eq!(opt(CaptureOptions { block_size: Some(1000), ..Default::default() }), "blockSize");
    }

    #[test]
    fn snap_len_becomes_a_filter() {
        let cfg = CaptureConfig::resolve(CaptureOptions { snap_len: Some(64), ..Default::default() }).unwrap();
        assert_eq!(cfg.effective_filter().unwrap().instructions()[0].k, 64);
    }
}
