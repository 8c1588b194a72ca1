//! The words of the options, each vocabulary defined once, here. napi-rs checks incoming strings
//! against them and exports them to JavaScript (`native.Profile`, ...), from which the facade
//! derives its types and its checks; the engine gets its own enums, matched exhaustively.

use netring_engine::{
    AttachMode, FanoutFlags, FanoutMode as EngineFanoutMode, Profile as EngineProfile,
    TimestampSource as EngineTimestampSource, XdpMode as EngineXdpMode, ZeroCopy,
};

#[napi(string_enum)]
pub enum Profile {
    #[napi(value = "default")]
    Default,
    #[napi(value = "high-throughput")]
    HighThroughput,
    #[napi(value = "low-latency")]
    LowLatency,
    #[napi(value = "low-memory")]
    LowMemory,
    #[napi(value = "jumbo")]
    Jumbo,
}

#[napi(string_enum)]
pub enum FanoutMode {
    #[napi(value = "hash")]
    Hash,
    #[napi(value = "lb")]
    LoadBalance,
    #[napi(value = "cpu")]
    Cpu,
    #[napi(value = "rollover")]
    Rollover,
    #[napi(value = "random")]
    Random,
    #[napi(value = "qm")]
    QueueMapping,
}

#[napi(string_enum)]
pub enum FanoutFlag {
    #[napi(value = "defrag")]
    Defrag,
    #[napi(value = "rollover")]
    Rollover,
    #[napi(value = "uniqueId")]
    UniqueId,
    #[napi(value = "ignoreOutgoing")]
    IgnoreOutgoing,
}

#[napi(string_enum)]
pub enum TimestampSource {
    #[napi(value = "software")]
    Software,
    #[napi(value = "hardware")]
    Hardware,
}

/// The directions an XdpSocket serves.
#[napi(string_enum)]
pub enum XdpMode {
    #[napi(value = "rx")]
    Rx,
    #[napi(value = "tx")]
    Tx,
    #[napi(value = "rxtx")]
    RxTx,
}

/// How netring's XDP program is attached.
#[napi(string_enum)]
pub enum XdpAttach {
    #[napi(value = "auto")]
    Auto,
    #[napi(value = "driver")]
    Driver,
    #[napi(value = "skb")]
    Skb,
}

/// Zero-copy as the binding takes it (the facade's `'auto' | true | false`).
#[napi(string_enum)]
pub enum XdpZeroCopy {
    #[napi(value = "auto")]
    Auto,
    #[napi(value = "on")]
    On,
    #[napi(value = "off")]
    Off,
}

impl From<Profile> for EngineProfile {
    fn from(p: Profile) -> Self {
        match p {
            Profile::Default => EngineProfile::Default,
            Profile::HighThroughput => EngineProfile::HighThroughput,
            Profile::LowLatency => EngineProfile::LowLatency,
            Profile::LowMemory => EngineProfile::LowMemory,
            Profile::Jumbo => EngineProfile::Jumbo,
        }
    }
}

impl From<EngineProfile> for Profile {
    fn from(p: EngineProfile) -> Self {
        match p {
            EngineProfile::Default => Profile::Default,
            EngineProfile::HighThroughput => Profile::HighThroughput,
            EngineProfile::LowLatency => Profile::LowLatency,
            EngineProfile::LowMemory => Profile::LowMemory,
            EngineProfile::Jumbo => Profile::Jumbo,
        }
    }
}

impl From<FanoutMode> for EngineFanoutMode {
    fn from(m: FanoutMode) -> Self {
        match m {
            FanoutMode::Hash => EngineFanoutMode::Hash,
            FanoutMode::LoadBalance => EngineFanoutMode::LoadBalance,
            FanoutMode::Cpu => EngineFanoutMode::Cpu,
            FanoutMode::Rollover => EngineFanoutMode::Rollover,
            FanoutMode::Random => EngineFanoutMode::Random,
            FanoutMode::QueueMapping => EngineFanoutMode::QueueMapping,
        }
    }
}

/// The engine's flag set from a list of flag words.
pub fn fanout_flags(flags: &[FanoutFlag]) -> FanoutFlags {
    let mut set = FanoutFlags::default();
    for flag in flags {
        match flag {
            FanoutFlag::Defrag => set.defrag = true,
            FanoutFlag::Rollover => set.rollover = true,
            FanoutFlag::UniqueId => set.unique_id = true,
            FanoutFlag::IgnoreOutgoing => set.ignore_outgoing = true,
        }
    }
    set
}

impl From<TimestampSource> for EngineTimestampSource {
    fn from(t: TimestampSource) -> Self {
        match t {
            TimestampSource::Software => EngineTimestampSource::Software,
            TimestampSource::Hardware => EngineTimestampSource::Hardware,
        }
    }
}

impl From<XdpMode> for EngineXdpMode {
    fn from(m: XdpMode) -> Self {
        match m {
            XdpMode::Rx => EngineXdpMode::Rx,
            XdpMode::Tx => EngineXdpMode::Tx,
            XdpMode::RxTx => EngineXdpMode::RxTx,
        }
    }
}

impl From<XdpAttach> for AttachMode {
    fn from(a: XdpAttach) -> Self {
        match a {
            XdpAttach::Auto => AttachMode::Auto,
            XdpAttach::Driver => AttachMode::Driver,
            XdpAttach::Skb => AttachMode::Skb,
        }
    }
}

impl From<XdpZeroCopy> for ZeroCopy {
    fn from(z: XdpZeroCopy) -> Self {
        match z {
            XdpZeroCopy::Auto => ZeroCopy::Auto,
            XdpZeroCopy::On => ZeroCopy::Required,
            XdpZeroCopy::Off => ZeroCopy::Off,
        }
    }
}
