// The torchrun environment contract, launch argument parsing and the bandwidth formulas.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readDistributedEnv, distributedEnvVars } from '../../src/distributed/env.js';
import { parseLaunchArgs, validateLaunchOptions } from '../../src/distributed/launcher.js';
import { benchSizes, busBandwidth, parseBytes } from '../../bench/comm.js';

const full = { RANK: '5', WORLD_SIZE: '8', LOCAL_RANK: '1', LOCAL_WORLD_SIZE: '4', GROUP_RANK: '1', MASTER_ADDR: 'node0', MASTER_PORT: '29400' };

test('reads the torchrun variables, and null when none are set', () => {
  assert.equal(readDistributedEnv({}), null);
  const place = readDistributedEnv(full);
  assert.deepEqual(place, { rank: 5, worldSize: 8, localRank: 1, localWorldSize: 4, groupRank: 1, masterAddr: 'node0', masterPort: 29400 });
  assert.deepEqual(distributedEnvVars(place!), full);
  // World size 1 needs no master; local values default from the global ones.
  assert.deepEqual(readDistributedEnv({ RANK: '0', WORLD_SIZE: '1' }), {
    rank: 0, worldSize: 1, localRank: 0, localWorldSize: 1, groupRank: 0, masterAddr: '127.0.0.1', masterPort: 29500,
  });
  // Slurm-style scripts that only export the global variables.
  const slurm = readDistributedEnv({ RANK: '3', WORLD_SIZE: '4', MASTER_ADDR: 'n1', MASTER_PORT: '1234' });
  assert.equal(slurm?.localRank, 3);
});

test('inconsistent variables are errors that name the variable', () => {
  assert.throws(() => readDistributedEnv({ RANK: '1' }), /RANK=1 is set but WORLD_SIZE is not/);
  assert.throws(() => readDistributedEnv({ WORLD_SIZE: '2' }), /WORLD_SIZE=2 is set but RANK is not/);
  assert.throws(() => readDistributedEnv({ ...full, RANK: '8' }), /RANK=8 must be smaller than WORLD_SIZE=8/);
  assert.throws(() => readDistributedEnv({ ...full, RANK: 'one' }), /invalid environment variable RANK="one": expected a non-negative integer/);
  assert.throws(() => readDistributedEnv({ ...full, WORLD_SIZE: '0' }), /WORLD_SIZE=0: must be between 1/);
  assert.throws(() => readDistributedEnv({ ...full, LOCAL_RANK: '4' }), /LOCAL_RANK=4 must be smaller than LOCAL_WORLD_SIZE=4/);
  assert.throws(() => readDistributedEnv({ ...full, MASTER_ADDR: '' }), /WORLD_SIZE=8 needs MASTER_ADDR/);
  assert.throws(() => readDistributedEnv({ ...full, MASTER_PORT: undefined }), /WORLD_SIZE=8 needs MASTER_PORT/);
  assert.throws(() => readDistributedEnv({ ...full, MASTER_PORT: '70000' }), /MASTER_PORT=70000: must be between 1 and 65535/);
});

test('launch arguments: flags, --flag=value, the command after --', () => {
  const parsed = parseLaunchArgs(['--nproc-per-node', '4', '--nnodes=2', '--node-rank', '1', '--master-addr', '10.0.0.1', '--master-port=29555', '--', 'train.js', '--epochs', '3']);
  assert.equal(parsed.nprocPerNode, 4);
  assert.equal(parsed.nnodes, 2);
  assert.equal(parsed.nodeRank, 1);
  assert.equal(parsed.masterAddr, '10.0.0.1');
  assert.equal(parsed.masterPort, 29555);
  assert.equal(parsed.command, 'train.js');
  assert.deepEqual(parsed.args, ['--epochs', '3']);
  assert.equal(parseLaunchArgs(['--nproc_per_node=2', 'x.js']).command, 'x.js', 'torchrun spelling and no -- work too');
  assert.throws(() => parseLaunchArgs(['--nproc-per-node', 'two', '--', 'x']), /--nproc-per-node needs a non-negative integer, got "two"/);
  assert.throws(() => parseLaunchArgs(['--nproc-per-node', '2', '--bogus', '1', '--', 'x']), /unknown option --bogus/);
  assert.throws(() => validateLaunchOptions({ nprocPerNode: 0, command: 'x' }), /--nproc-per-node must be a positive integer/);
  assert.throws(() => validateLaunchOptions({ nprocPerNode: 1, masterPort: 0, command: 'x' }), /--master-port: port 0/);
});

test('bench sizes, byte units and nccl-tests bus bandwidth', () => {
  assert.deepEqual(benchSizes(1024, 64 * 1024 * 1024, 4), [1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]);
  assert.equal(parseBytes('64M'), 64 * 1024 * 1024);
  assert.equal(parseBytes('1KiB'), 1024);
  assert.equal(parseBytes('512'), 512);
  assert.throws(() => parseBytes('lots'), /not a byte size/);
  assert.equal(busBandwidth('allreduce', 1, 4), 1.5);
  assert.equal(busBandwidth('allgather', 1, 4), 0.75);
  assert.equal(busBandwidth('allreduce', 2, 2), 2);
});
