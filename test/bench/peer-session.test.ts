// bench/peer-session.ts: the PyTorch peer of `plsc bench engine` kept running and asked one
// measurement at a time. Skipped where no python has torch (the benchmark then reports no peer).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { findTorchPython } from '../../bench/peer.js';
import { TorchPeerSession } from '../../bench/peer-session.js';

const noTorch = findTorchPython() === null ? 'no python with torch here' : false;

test('TorchPeerSession: hello, a measurement per request, an error answer names the problem, close ends it', { skip: noTorch }, async () => {
  const started = await TorchPeerSession.start('torch_engine.py', ['1', '50']);
  assert.ok(started !== null);
  const { session, hello } = started;
  try {
    assert.equal(hello.threads, 1);
    assert.match(hello.version, /^\d+\.\d+/);
    const first = await session.request<{ value: number }>({ measure: 'op_overhead', repeats: 1 });
    assert.ok(Number.isFinite(first.value) && first.value > 0, JSON.stringify(first));
    await assert.rejects(session.request({ measure: 'no_such_measure', repeats: 1 }), /torch_engine\.py: KeyError: 'no_such_measure'/);
    const again = await session.request<{ value: number }>({ measure: 'op_overhead', repeats: 1 });
    assert.ok(again.value > 0, 'the peer still answers after an error');
  } finally {
    session.close();
  }
  await assert.rejects(session.request({ measure: 'op_overhead', repeats: 1 }), /ended|already ended/);
});
