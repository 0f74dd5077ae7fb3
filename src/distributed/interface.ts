// Which network interface gloo's connections use across hosts. A named interface (`plsc launch
// --iface`, GLOO_SOCKET_IFNAME) is checked against the interfaces this machine has, so a typo fails
// at once with a list of the real ones instead of inside gloo. Without a name, gloo binds to the
// local address of the route to the master: torch's default (the address this machine's hostname
// resolves to, else loopback) is wrong wherever the hostname does not resolve to the job's network.
// Pure Node: the launcher uses it without loading libtorch.
import { createSocket } from 'node:dgram';
import { readFileSync, readdirSync } from 'node:fs';
import { networkInterfaces } from 'node:os';

export interface NetworkInterfaceInfo {
  name: string;
  /** IPv4 and IPv6 addresses, as os.networkInterfaces() lists them. */
  addresses: string[];
  /** Administratively up (IFF_UP); null where /sys/class/net does not say. */
  up: boolean | null;
}

const SYS_CLASS_NET = '/sys/class/net';
const IFF_UP = 0x1;

function readUp(name: string): boolean | null {
  try {
    return (Number.parseInt(readFileSync(`${SYS_CLASS_NET}/${name}/flags`, 'utf8').trim(), 16) & IFF_UP) !== 0;
  } catch {
    return null;
  }
}

/** This machine's (this network namespace's) interfaces: those in /sys/class/net and those with addresses. */
export function listNetworkInterfaces(): NetworkInterfaceInfo[] {
  const withAddresses = networkInterfaces();
  const names = new Set(Object.keys(withAddresses));
  try {
    for (const name of readdirSync(SYS_CLASS_NET)) names.add(name);
  } catch {
    // no sysfs (not Linux): os.networkInterfaces() is all there is
  }
  return [...names].sort().map((name) => ({
    name,
    addresses: (withAddresses[name] ?? []).map((a) => a.address),
    up: readUp(name),
  }));
}

/** "lo 127.0.0.1, eth0 10.0.0.5 (down), veth1 (no address)". */
export function describeNetworkInterfaces(interfaces: readonly NetworkInterfaceInfo[] = listNetworkInterfaces()): string {
  if (interfaces.length === 0) return 'none';
  return interfaces
    .map((i) => `${i.name} ${i.addresses.length > 0 ? i.addresses.join(' ') : '(no address)'}${i.up === false ? ' (down)' : ''}`)
    .join(', ');
}

/**
 * Checks that gloo can use interface `name`: it exists, is up and has an address. `source` names
 * where the name came from (`--iface`, `GLOO_SOCKET_IFNAME`) and starts the error message, which
 * lists the interfaces this machine has.
 */
export function checkNetworkInterface(name: string, source: string, interfaces: readonly NetworkInterfaceInfo[] = listNetworkInterfaces()): void {
  const here = `interfaces here: ${describeNetworkInterfaces(interfaces)}`;
  if (name.includes(',')) {
    throw new Error(`${source}=${name}: plsc binds gloo to one interface; name one (${here})`);
  }
  const found = interfaces.find((i) => i.name === name);
  if (found === undefined) throw new Error(`${source}=${name}: no network interface named '${name}' on this machine (${here})`);
  if (found.up === false) throw new Error(`${source}=${name}: network interface '${name}' is down (${here})`);
  if (found.addresses.length === 0) throw new Error(`${source}=${name}: network interface '${name}' has no address (${here})`);
}

/**
 * The local address this machine sends from to reach `host` (the kernel's route choice; no packet is
 * sent), or null when there is no route or the name does not resolve.
 */
export function routeSourceAddress(host: string): Promise<string | null> {
  return new Promise((resolve) => {
    const family = host.includes(':') ? 'udp6' : 'udp4';
    const socket = createSocket(family);
    let settled = false;
    const finish = (address: string | null): void => {
      if (settled) return;
      settled = true;
      socket.close();
      resolve(address);
    };
    socket.once('error', () => finish(null));
    // The port does not matter: connecting a UDP socket only picks the route. A failed lookup or
    // an unreachable network comes back as the callback's argument.
    socket.connect(9, host, (...args: unknown[]) => {
      if (args[0] instanceof Error) return finish(null);
      try {
        finish(socket.address().address);
      } catch {
        finish(null);
      }
    });
  });
}

export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

/**
 * How the native side creates gloo's device (for a named interface, for a local address, or its
 * default when neither is set), and the address it will bind to when known (the other ranks use it
 * to name this rank in errors that give only a peer's address).
 */
export interface GlooDeviceChoice {
  glooInterface?: string;
  glooHostname?: string;
  hostAddress?: string;
}

/** The address gloo binds to on interface `name`: its first IPv4 address, else its first one. */
function interfaceAddress(name: string): string | undefined {
  const addresses = networkInterfaces()[name] ?? [];
  return (addresses.find((a) => a.family === 'IPv4') ?? addresses[0])?.address;
}

/**
 * The gloo device for a job whose store is at `masterAddr`: the named interface (checked), else, for
 * a master on another host, the address of the route to it; a loopback master is left to the native
 * side (it binds gloo to loopback).
 */
export async function chooseGlooDevice(masterAddr: string, glooInterface: string | undefined, source: string): Promise<GlooDeviceChoice> {
  if (glooInterface !== undefined && glooInterface !== '') {
    checkNetworkInterface(glooInterface, source);
    const hostAddress = interfaceAddress(glooInterface);
    return { glooInterface, ...(hostAddress !== undefined ? { hostAddress } : {}) };
  }
  if (isLoopbackHost(masterAddr)) return {};
  const address = await routeSourceAddress(masterAddr);
  return address === null ? {} : { glooHostname: address, hostAddress: address };
}
