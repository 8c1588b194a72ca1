// netring: zero-copy packet capture for Node.js on Linux. This is the public API.

export { Capture } from './capture'
export type { BatchesOptions, CaptureInfo, CaptureStats, IterateOptions, PacketsOptions, StreamOptions } from './capture'
export { NetringError } from './errors'
export type { NetringErrorFields } from './errors'
export type { BpfInstruction, CaptureOptions, FanoutFlag, FanoutMode, FanoutOptions, Profile } from './options'
export { OwnedPacket, Packet, PacketBatch } from './packet'
export type { Direction, PacketInfo, PacketStatus } from './packet'
