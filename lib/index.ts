// netring: zero-copy packet capture for Node.js on Linux. This is the public API.

export { Capture } from './capture'
export type { BatchesOptions, CaptureInfo, CaptureStats, IterateOptions, PacketsOptions, StreamOptions } from './capture'
export { Bridge } from './bridge'
export type {
  BridgeCallback,
  BridgeDirection,
  BridgeDirectionStats,
  BridgeOptions,
  BridgeRunOptions,
  BridgeSideOptions,
  BridgeVerdict,
} from './bridge'
export { compileFilter, FilterProgram, libpcapAvailable } from './filter'
export { NetringError } from './errors'
export { PcapWriter } from './pcap-writer'
export type { FileFormat, FileStats, PcapWriterOptions } from './pcap-writer'
export { readCaptureFile } from './pcap-reader'
export type { CaptureFileInterface } from './pcap-reader'
export { Injector, TxSlot, TxSlotBatch, TxSlotRun } from './injector'
export type { InjectorInfo, InjectorStats, OffloadList, SendListOptions, SendOptions } from './injector'
export type { NetringErrorFields } from './errors'
export type { BpfInstruction, CaptureOptions, FanoutFlag, FanoutMode, FanoutOptions, InjectorOptions, Profile, TimestampSource } from './options'
export { OwnedPacket, Packet, PacketBatch } from './packet'
export type { AsyncPacketIterator, PacketIterator } from './packet-iterators'
export type { Direction, PacketInfo, PacketStatus } from './packet'
export { FanoutPool, type FanoutContext, type FanoutHandler, type FanoutPoolOptions, type FanoutPoolStats, type FanoutWorkerInfo, type FanoutWorkerStats } from './fanout-pool'
export { OwnedXdpPacket, XdpBatch, XdpPacket, XdpSocket, type XdpAttachMode, type XdpInfo, type XdpMode, type XdpOptions, type XdpPacketInfo, type XdpStats } from './xdp'
export { interfaces } from './interfaces'
export type { InterfaceCounters, InterfaceInfo } from './interfaces'
export type { GsoType, PacketOffload } from './offload'
