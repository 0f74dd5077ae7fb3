// Real multi-host runs: two hosts made of Linux network namespaces on one bridge (netns.ts), each
// running its own `plsc launch` bound to its own address. Skipped, saying why, where namespaces
// cannot be made (not root, no iproute2, no permission). Every case is bounded in time, and the
// namespaces are removed whatever happens.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { plscBin } from '../distributed/helpers.js';
import { firstAndLastLoss, writeTinyConfig } from '../faults/helpers.js';
import { HostNetwork, netnsUnavailable, sweepLeftoverNamespaces, type HostRun } from './netns.js';

const trainHost = fileURLToPath(new URL('./fixtures/train-host.js', import.meta.url));
const unavailable = netnsUnavailable();
if (unavailable !== null) console.log(`# multi-host tests skipped: ${unavailable}`);

// Bounds: a collective waits at most COLLECTIVE_MS; a rank that cannot reach the rendezvous store
// takes up to 3 s more to say so; the launcher then stops its worker.
const COLLECTIVE_MS = 5000;
const EXIT_BOUND_MS = COLLECTIVE_MS + 15_000;
const RUN_MS = 90_000;
const timeouts = { PLSC_COLLECTIVE_TIMEOUT_MS: String(COLLECTIVE_MS), PLSC_RENDEZVOUS_TIMEOUT_MS: '30000' };

let port = 29600;
let dir = '';
let network: HostNetwork | null = null;

function hosts(): HostNetwork {
  if (network === null) throw new Error('no host network');
  return network;
}

/** The worker lines of a host's output, without the launcher's "[rank R] " prefix. */
function workerLines(run: HostRun, rank: number, marker: string): string[] {
  const prefix = `[rank ${rank}] ${marker} `;
  return run.output().split('\n').filter((l) => l.startsWith(prefix)).map((l) => l.slice(prefix.length));
}

/** Both hosts run train-host.js (4 steps); every rank must report the same losses and weights. */
async function trainAndAgree(launchArgs: readonly string[], env: Record<string, string>): Promise<void> {
  const net = hosts();
  const runDir = mkdtempSync(join(dir, 'agree-'));
  const runs = net.hosts.map((host) => net.startLauncher(host, launchArgs, [trainHost], { DIR: runDir, STEPS: '4', ...timeouts, ...env }, RUN_MS, port));
  port++;
  const results = await Promise.all(runs.map((r) => r.done));
  results.forEach((result, i) => assert.equal(result.code, 0, `host ${i}:\n${runs[i]?.output()}`));
  const [first, second] = runs as [HostRun, HostRun];
  assert.deepEqual(workerLines(first, 0, 'RANK'), ['0/2']);
  assert.deepEqual(workerLines(second, 1, 'RANK'), ['1/2']);
  const losses = [first, second].map((run, rank) => JSON.parse(workerLines(run, rank, 'LOSSES')[0] ?? '[]') as number[]);
  assert.equal(losses[0]?.length, 4);
  assert.ok(losses[0]?.every(Number.isFinite), `losses ${losses[0]}`);
  assert.deepEqual(losses[1], losses[0], 'both ranks saw the same loss at every step');
  const weights = [workerLines(first, 0, 'WEIGHTS'), workerLines(second, 1, 'WEIGHTS')];
  assert.equal(weights[0]?.length, 1);
  assert.deepEqual(weights[1], weights[0], 'both ranks ended with the same backbone weights');
}

/** A tiny `plsc train` across both hosts that runs until a fault stops it; steps slowed to 200 ms. */
function startTraining(): [HostRun, HostRun] {
  const net = hosts();
  const runDir = mkdtempSync(join(dir, 'fault-'));
  const config = writeTinyConfig(runDir, 'stallTimeout: 60\n');
  const command = [process.execPath, plscBin, 'train', '--config', config];
  const env = { STEP_DELAY_MS: '200', ...timeouts };
  const runs = net.hosts.map((host) => net.startLauncher(host, ['--iface', host.iface], command, env, RUN_MS, port));
  port++;
  return runs as [HostRun, HostRun];
}

/** A step in [2, 5], drawn per run (the issue asks for faults at a random step). */
function randomStep(): number {
  return 2 + Math.floor(Math.random() * 4);
}

describe('two hosts in network namespaces', { skip: unavailable ?? false }, () => {
  before(() => {
    const swept = sweepLeftoverNamespaces();
    if (swept.length > 0) console.log(`# removed namespaces left by earlier runs: ${swept.join(', ')}`);
    dir = mkdtempSync(join(tmpdir(), 'plsc-multihost-'));
    network = new HostNetwork(2, join(dir, 'logs'));
  });

  after(() => {
    network?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the sweep removes namespaces whose test process is gone, and only those', () => {
    const gone = spawnSync(process.execPath, ['-e', '']).pid;
    assert.ok(gone !== undefined);
    const leftover = `plscmh-${gone}-0-h0`;
    execFileSync('ip', ['netns', 'add', leftover]);
    try {
      assert.ok(sweepLeftoverNamespaces().includes(leftover));
      const names = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
      assert.doesNotMatch(names, new RegExp(`^${leftover}\\b`, 'm'));
      for (const host of hosts().hosts) assert.match(names, new RegExp(`^${host.namespace}\\b`, 'm'), 'a live run\'s namespaces stay');
    } finally {
      spawnSync('ip', ['netns', 'del', leftover]);
    }
  });

  test('2 hosts x 1 worker with --iface train 4 steps and agree on every loss and the final weights', { timeout: RUN_MS + 10_000 }, async () => {
    await trainAndAgree(['--iface', 'mh0'], {});
  });

  test('without --iface gloo binds to the route to the master (the hostname resolves to loopback inside the namespace)', { timeout: RUN_MS + 10_000 }, async () => {
    await trainAndAgree([], { GLOO_SOCKET_IFNAME: '' });
  });

  test('--iface naming a missing or downed interface fails before any worker starts, listing the interfaces the host has', { timeout: 60_000 }, async () => {
    const net = hosts();
    const host = net.hosts[1];
    assert.ok(host !== undefined);
    const launch = (iface: string): HostRun =>
      net.startPlsc(host, ['launch', '--nproc-per-node', '1', '--iface', iface, '--', process.execPath, '-e', 'console.log("started")'], {}, 30_000);
    const missing = launch('eth9');
    assert.equal((await missing.done).code, 2);
    assert.match(missing.output(), /^plsc launch: --iface=eth9: no network interface named 'eth9' on this machine \(interfaces here: lo 127\.0\.0\.1[^,]*, mh0 10\.77\.0\.2[^,]*\)\n$/);
    net.linkDown(host);
    try {
      const down = launch('mh0');
      assert.equal((await down.done).code, 2);
      assert.match(down.output(), /^plsc launch: --iface=mh0: network interface 'mh0' is down \(interfaces here: lo 127\.0\.0\.1[^,]*, mh0 [^,]*\(down\)\)\n$/);
      assert.doesNotMatch(down.output(), /started/);
    } finally {
      net.linkUp(host);
    }
  });

  test('one host\'s launcher killed mid-run: the other exits non-zero within the collective timeout, naming the lost rank', { timeout: RUN_MS + 10_000 }, async () => {
    const [master, worker] = startTraining();
    const step = randomStep();
    await master.waitFor(new RegExp(`\\[rank 0\\] step ${step}/`), 60_000);
    hosts().killLauncher(worker);
    const killedAt = Date.now();
    const result = await master.done;
    const took = Date.now() - killedAt;
    const output = master.output();
    assert.equal(result.code, 1, output);
    assert.ok(took < EXIT_BOUND_MS, `host 0 took ${took} ms to exit after host 1 was killed at step ${step}`);
    assert.match(output, /plsc launch: rank 1 failed first: it (dropped out \(the connection to 10\.77\.0\.2 failed\)|never arrived at \S+ #\d+|became unreachable[^;]*) \(reported by rank 0, which exited with code 1\)/);
    assert.equal((await worker.done).signal, 'SIGKILL');
  });

  test('elastic: one host\'s launcher killed mid-run: the other re-rendezvouses alone and finishes at world size 1 with a falling loss', { timeout: 240_000 }, async () => {
    const net = hosts();
    const [storeHost, otherHost] = net.hosts as [(typeof net.hosts)[number], (typeof net.hosts)[number]];
    const runDir = mkdtempSync(join(dir, 'elastic-'));
    const steps = 30;
    const config = writeTinyConfig(runDir, 'stallTimeout: 60\ncheckpointPeriod: 4\n', steps);
    const rdzvPort = port++;
    const launch = (host: typeof storeHost): HostRun =>
      net.startPlsc(
        host,
        ['launch', '--nproc-per-node', '1', '--nnodes', '1:2', '--rdzv-endpoint', `${storeHost.address}:${rdzvPort}`, '--rdzv-id', 'netns-elastic', '--rdzv-last-call', '5', '--rdzv-timeout', '60', '--max-restarts', '2', '--iface', host.iface, '--', process.execPath, plscBin, 'train', '--config', config],
        { STEP_DELAY_MS: '150', PLSC_COLLECTIVE_TIMEOUT_MS: '10000' },
        200_000,
      );
    const survivor = launch(storeHost);
    await survivor.waitFor(/hosting the store/, 60_000);
    const lost = launch(otherHost);
    await survivor.waitFor(/round 0: node rank \d of 2 nodes, ranks \d of world size 2/, 90_000);
    const step = randomStep() + 2;
    await survivor.waitFor(new RegExp(`\\[rank 0\\] step ${step}/`), 90_000);
    net.killLauncher(lost);
    const result = await survivor.done;
    const output = survivor.output();
    assert.equal(result.code, 0, output);
    assert.match(output, /round 1: node rank 0 of 1 node, ranks 0 of world size 1 \(was 2: training resumes from the last checkpoint with the FC shards re-split\)/);
    assert.match(output, /world size 2 -> 1 since the checkpoint/);
    const { first, last } = firstAndLastLoss(join(runDir, 'output'), steps);
    assert.ok(last < first, `loss ${first} (steps 1-3) -> ${last} (last 3 steps), killed at step ${step}`);
    assert.equal((await lost.done).signal, 'SIGKILL');
  });

  test('a link taken down mid-run: every rank exits within the collective timeout naming the unreachable peer, never a hang', { timeout: RUN_MS + 10_000 }, async () => {
    const [master, worker] = startTraining();
    const step = randomStep();
    await master.waitFor(new RegExp(`\\[rank 0\\] step ${step}/`), 60_000);
    const net = hosts();
    const host = net.hosts[1];
    assert.ok(host !== undefined);
    net.linkDown(host);
    const downAt = Date.now();
    const results = await Promise.all([master, worker].map((run) => run.done.then((r) => ({ ...r, took: Date.now() - downAt }))));
    net.linkUp(host);
    for (const [i, result] of results.entries()) {
      const output = [master, worker][i]?.output();
      assert.equal(result.code, 1, `host ${i}:\n${output}`);
      assert.ok(result.took < EXIT_BOUND_MS, `host ${i} took ${result.took} ms to exit after the link went down at step ${step}`);
    }
    assert.match(master.output(), /plsc launch: rank 1 failed first: it (never arrived at \S+ #\d+|became unreachable[^;]*|dropped out[^;]*) \(reported by rank 0/);
    assert.match(worker.output(), /plsc launch: rank 0 failed first: it (is not responding|became unreachable[^;]*|dropped out[^;]*) \(reported by rank 1/);
  });
});
