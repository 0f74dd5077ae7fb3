// `plsc bench comm --json` with small sizes: one well-formed record per (op, size), measured by
// real processes. Asserts the format and the formula (to 2%), never a speed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runPlsc } from '../distributed/helpers.js';

test('plsc bench comm --json prints op, bytes, nproc, busbw_gbps per line', async () => {
  const r = await runPlsc(['bench', 'comm', '--json', '--nproc', '2', '--min-bytes', '1K', '--max-bytes', '16K', '--iters', '3']);
  assert.equal(r.code, 0, r.stderr);
  const records = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, number | string>);
  assert.deepEqual(
    records.map((x) => [x.op, x.bytes, x.nproc]),
    [['allreduce', 1024, 2], ['allreduce', 4096, 2], ['allreduce', 16384, 2], ['allgather', 1024, 2], ['allgather', 4096, 2], ['allgather', 16384, 2]],
  );
  for (const x of records) {
    assert.ok(typeof x.busbw_gbps === 'number' && x.busbw_gbps > 0, JSON.stringify(x));
    const algbw = (x.bytes as number) / ((x.time_us as number) * 1e-6) / 1e9;
    const factor = x.op === 'allreduce' ? 1 : 0.5;
    assert.ok(Math.abs((x.busbw_gbps as number) - algbw * factor) <= 0.02 * algbw, JSON.stringify(x));
  }
});
