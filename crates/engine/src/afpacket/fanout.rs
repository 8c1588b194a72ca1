//! Fanout groups: several sockets on one interface sharing its traffic.

use crate::error::{Error, Result};
use crate::ffi;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanoutMode {
    /// By flow hash: every packet of a flow goes to the same member.
    Hash,
    /// Round robin.
    LoadBalance,
    /// By the CPU the packet arrived on.
    Cpu,
    /// Fill one member, then spill over to the next.
    Rollover,
    Random,
    /// By the packet's recorded RX queue.
    QueueMapping,
}

impl FanoutMode {
    fn kernel_value(self) -> u32 {
        match self {
            FanoutMode::Hash => ffi::PACKET_FANOUT_HASH,
            FanoutMode::LoadBalance => ffi::PACKET_FANOUT_LB,
            FanoutMode::Cpu => ffi::PACKET_FANOUT_CPU,
            FanoutMode::Rollover => ffi::PACKET_FANOUT_ROLLOVER,
            FanoutMode::Random => ffi::PACKET_FANOUT_RND,
            FanoutMode::QueueMapping => ffi::PACKET_FANOUT_QM,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FanoutFlags {
    /// Reassemble IP fragments before choosing a member, so fragments of one datagram stay together.
    pub defrag: bool,
    /// Spill to another member when the chosen one's ring is full.
    pub rollover: bool,
    /// Let the kernel pick an unused group id (the group must be 0).
    pub unique_id: bool,
    /// Do not deliver outgoing packets to the group.
    pub ignore_outgoing: bool,
}

impl FanoutFlags {
    fn kernel_value(self) -> u32 {
        let mut v = 0;
        if self.defrag {
            v |= ffi::PACKET_FANOUT_FLAG_DEFRAG;
        }
        if self.rollover {
            v |= ffi::PACKET_FANOUT_FLAG_ROLLOVER;
        }
        if self.unique_id {
            v |= ffi::PACKET_FANOUT_FLAG_UNIQUEID;
        }
        if self.ignore_outgoing {
            v |= ffi::PACKET_FANOUT_FLAG_IGNORE_OUTGOING;
        }
        v
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanoutConfig {
    pub group: u16,
    pub mode: FanoutMode,
    pub flags: FanoutFlags,
}

impl FanoutConfig {
    /// A checked configuration: the group id fits in 16 bits and the flags suit the mode.
    pub fn new(group: u32, mode: FanoutMode, flags: FanoutFlags) -> Result<Self> {
        let group = u16::try_from(group)
            .map_err(|_| Error::invalid_option("fanout.group", format!("must be 0 to 65535, got {group}")))?;
        let cfg = FanoutConfig { group, mode, flags };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        if self.flags.unique_id && self.group != 0 {
            return Err(Error::invalid_option(
                "fanout.group",
                "must be 0 with the uniqueId flag (the kernel picks the id)",
            ));
        }
        if self.mode == FanoutMode::Rollover && self.flags.rollover {
            return Err(Error::invalid_option(
                "fanout.flags",
                "the rollover flag cannot be combined with rollover mode",
            ));
        }
        Ok(())
    }

    /// The `PACKET_FANOUT` argument: group id in the low 16 bits, mode and flags above.
    pub fn socket_option_value(&self) -> u32 {
        self.group as u32 | ((self.mode.kernel_value() | self.flags.kernel_value()) << 16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_group_mode_and_flags() {
        let cfg = FanoutConfig {
            group: 0x1234,
            mode: FanoutMode::LoadBalance,
            flags: FanoutFlags { defrag: true, ..Default::default() },
        };
        assert_eq!(cfg.socket_option_value(), 0x1234 | ((1 | 0x8000) << 16));
    }

    #[test]
    fn refuses_bad_combinations() {
        let unique = FanoutConfig {
            group: 3,
            mode: FanoutMode::Hash,
            flags: FanoutFlags { unique_id: true, ..Default::default() },
        };
        assert!(unique.validate().is_err());
    }
}
