// The transmit API's 0.x names ("batch" now means only an RX block) stay as deprecated aliases:
// the very same functions and class, so old code keeps working unchanged.

import test from 'ava'
import * as netring from 'netring'

test('sendBatch, allocateBatch and TxSlotBatch are the same functions as sendFrames, allocateRun and TxSlotRun', (t) => {
  for (const cls of [netring.Injector, netring.XdpSocket]) {
    t.is(cls.prototype.sendBatch, cls.prototype.sendFrames, `${cls.name}.sendBatch`)
    t.is(cls.prototype.allocateBatch, cls.prototype.allocateRun, `${cls.name}.allocateBatch`)
    t.is(typeof cls.prototype.sendFrames, 'function')
    t.is(typeof cls.prototype.allocateRun, 'function')
  }
  t.is(netring.TxSlotBatch, netring.TxSlotRun)
  t.is(typeof netring.TxSlotRun, 'function')
})
