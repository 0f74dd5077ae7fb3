// Choosing gloo's network interface: --iface / GLOO_SOCKET_IFNAME are checked against the interfaces
// this machine has (the error lists them), and without one the route to the master decides.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { networkInterfaces } from 'node:os';
import {
  checkNetworkInterface,
  chooseGlooDevice,
  describeNetworkInterfaces,
  listNetworkInterfaces,
  routeSourceAddress,
  type NetworkInterfaceInfo,
} from '../../src/distributed/interface.js';
import { parseLaunchArgs, validateLaunchOptions } from '../../src/distributed/launcher.js';
import { runPlsc } from './helpers.js';

const machine: NetworkInterfaceInfo[] = [
  { name: 'eth0', addresses: ['10.0.0.5', 'fe80::1'], up: true },
  { name: 'eth1', addresses: [], up: true },
  { name: 'eth2', addresses: ['10.1.0.5'], up: false },
  { name: 'lo', addresses: ['127.0.0.1', '::1'], up: true },
];

test('checkNetworkInterface accepts an interface that is up with an address; refuses others naming the source and listing what exists', () => {
  checkNetworkInterface('eth0', '--iface', machine);
  const listing = 'interfaces here: eth0 10.0.0.5 fe80::1, eth1 (no address), eth2 10.1.0.5 (down), lo 127.0.0.1 ::1';
  assert.throws(() => checkNetworkInterface('eth9', '--iface', machine), { message: `--iface=eth9: no network interface named 'eth9' on this machine (${listing})` });
  assert.throws(() => checkNetworkInterface('eth1', 'GLOO_SOCKET_IFNAME', machine), { message: `GLOO_SOCKET_IFNAME=eth1: network interface 'eth1' has no address (${listing})` });
  assert.throws(() => checkNetworkInterface('eth2', '--iface', machine), { message: `--iface=eth2: network interface 'eth2' is down (${listing})` });
  assert.throws(() => checkNetworkInterface('eth0,eth1', 'GLOO_SOCKET_IFNAME', machine), /GLOO_SOCKET_IFNAME=eth0,eth1: plsc binds gloo to one interface; name one/);
  assert.equal(describeNetworkInterfaces([]), 'none');
});

test('listNetworkInterfaces includes loopback with its address, as os.networkInterfaces() reports it', () => {
  const lo = listNetworkInterfaces().find((i) => i.name === 'lo');
  assert.ok(lo !== undefined, 'no lo');
  assert.deepEqual(lo.addresses, (networkInterfaces().lo ?? []).map((a) => a.address));
  assert.notEqual(lo.up, false);
});

test('routeSourceAddress: the local address towards a host; null for a name that does not resolve', async () => {
  assert.equal(await routeSourceAddress('127.0.0.1'), '127.0.0.1');
  assert.equal(await routeSourceAddress('no-such-host.invalid'), null);
});

test('chooseGlooDevice: a named interface is checked and its address published; a loopback master is left to the native default', async () => {
  assert.deepEqual(await chooseGlooDevice('127.0.0.1', undefined, 'GLOO_SOCKET_IFNAME'), {});
  assert.deepEqual(await chooseGlooDevice('10.0.0.1', 'lo', '--iface'), { glooInterface: 'lo', hostAddress: '127.0.0.1' });
  await assert.rejects(chooseGlooDevice('10.0.0.1', 'no-such-if0', 'GLOO_SOCKET_IFNAME'), /GLOO_SOCKET_IFNAME=no-such-if0: no network interface named 'no-such-if0' on this machine \(interfaces here: .*lo 127\.0\.0\.1/);
  // A master that does not resolve: no route, so gloo keeps its own default.
  assert.deepEqual(await chooseGlooDevice('no-such-host.invalid', undefined, 'GLOO_SOCKET_IFNAME'), {});
});

test('plsc launch --iface: parsed, checked before any worker starts, and passed on as GLOO_SOCKET_IFNAME', async () => {
  const parsed = parseLaunchArgs(['--nproc-per-node', '1', '--iface', 'lo', '--', 'x.js']);
  assert.equal(parsed.iface, 'lo');
  assert.throws(() => parseLaunchArgs(['--nproc-per-node', '1', '--iface', '', '--', 'x.js']), /--iface needs a network interface name/);
  assert.throws(() => validateLaunchOptions({ nprocPerNode: 1, command: 'x.js', iface: 'no-such-if0' }), /--iface=no-such-if0: no network interface named 'no-such-if0'/);
  assert.throws(() => validateLaunchOptions({ nprocPerNode: 1, command: 'x.js', env: { GLOO_SOCKET_IFNAME: 'no-such-if0' } }), /GLOO_SOCKET_IFNAME=no-such-if0: no network/);

  const bad = await runPlsc(['launch', '--nproc-per-node', '1', '--iface', 'no-such-if0', '--', process.execPath, '-e', 'console.log("started")']);
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /^plsc launch: --iface=no-such-if0: no network interface named 'no-such-if0' on this machine \(interfaces here: .*lo 127\.0\.0\.1/);
  assert.doesNotMatch(bad.stdout, /started/);

  const good = await runPlsc(['launch', '--nproc-per-node', '1', '--iface', 'lo', '--', process.execPath, '-e', 'console.log("IFNAME " + process.env.GLOO_SOCKET_IFNAME)']);
  assert.equal(good.code, 0, good.stderr);
  assert.match(good.stdout, /\[rank 0\] IFNAME lo/);
});
