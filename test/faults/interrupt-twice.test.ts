// A second SIGINT exits at once with 130, even while a step blocks the main thread (so no JS signal
// listener could run), for plsc train and plsc launch; no worker survives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { plscBin, startPlsc, survivors } from '../distributed/helpers.js';
import { checkpointSteps, descendants, outputMatching, writeTinyConfig } from './helpers.js';

test('a second SIGINT exits at once with 130, even while a step blocks the main thread; no worker survives', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'plsc-interrupt-'));
  try {
    const config = writeTinyConfig(dir, 'stallTimeout: 0\n');
    // Step 4 blocks for 10 minutes.
    const env = { FAULT_KIND: 'block', FAULT_STEP: '3' };
    for (const args of [['train', '--config', config], ['launch', '--nproc-per-node', '2', '--', process.execPath, plscBin, 'train', '--config', config]]) {
      const running = startPlsc(args, env, 120_000);
      await outputMatching(running, /step 3\/\d+/, 90_000);
      const workers = descendants(running.child.pid as number);
      running.child.kill('SIGINT');
      await new Promise((resolve) => setTimeout(resolve, 500));
      running.child.kill('SIGINT');
      const run = await running.done;
      assert.equal(run.code, 130, `${args[0]}: ${run.stdout}\n${run.stderr}`);
      assert.ok(!checkpointSteps(join(dir, 'checkpoints')).includes(4), 'the blocked step was not checkpointed');
      assert.deepEqual(await survivors(workers, 10_000), [], `${args[0]}: workers left running`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
