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
export { NetringError } from './errors'
export { Injector, TxSlot, TxSlotBatch } from './injector'
export type { InjectorInfo, InjectorStats } from './injector'
export type { NetringErrorFields } from './errors'
export type { BpfInstruction, CaptureOptions, FanoutFlag, FanoutMode, FanoutOptions, InjectorOptions, Profile, TimestampSource } from './options'
export { OwnedPacket, Packet, PacketBatch } from './packet'
export type { AsyncPacketIterator, PacketIterator } from './packet-iterators'
export type { Direction, PacketInfo, PacketStatus } from './packet'
