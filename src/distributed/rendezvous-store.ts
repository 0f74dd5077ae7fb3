// The launchers' rendezvous store: a c10d TCPStore (the native binding, libtorch's own store) hosted
// by the launcher whose machine has the endpoint's address and binds its port first; every other
// launcher connects to it. Operations run off the event loop and reject when the store went away.
import { lookup } from 'node:dns/promises';
import { createServer } from 'node:net';
import { networkInterfaces } from 'node:os';
import { native } from '../torch/native.js';

interface NativeStore {
  set(key: string, value: string): Promise<string>;
  get(key: string): Promise<string>;
  add(key: string, delta: number): Promise<string>;
  compareSet(key: string, expected: string, desired: string): Promise<string>;
  close(): void;
}

interface StoreAddon {
  storeOpen(options: { host: string; port: number; isServer: boolean; timeoutMs: number }): Promise<NativeStore>;
}

const addon = native as unknown as StoreAddon;

/** What compareSet answers for a key that does not exist when asked with this expected value. */
const ABSENT = '\u0000absent';

export class RendezvousStore {
  private constructor(
    private readonly store: NativeStore,
    /** HOST:PORT */
    readonly endpoint: string,
    /** This process hosts the store (it goes away with this process). */
    readonly hosted: boolean,
  ) {}

  /**
   * Hosts the store at host:port when `host` is an address of this machine and the port is free,
   * else connects to it (retrying until timeoutMs).
   */
  static async open(host: string, port: number, timeoutMs: number): Promise<RendezvousStore> {
    const endpoint = `${host}:${port}`;
    if ((await isLocalAddress(host)) && (await portIsFree(host, port))) {
      try {
        return new RendezvousStore(await addon.storeOpen({ host, port, isServer: true, timeoutMs }), endpoint, true);
      } catch (error) {
        // Someone else on this machine hosts it already: connect to theirs.
        if (!/in use|errno: 98|EADDRINUSE/i.test((error as Error).message)) throw error;
      }
    }
    return new RendezvousStore(await addon.storeOpen({ host, port, isServer: false, timeoutMs }), endpoint, false);
  }

  async set(key: string, value: string): Promise<void> {
    await this.store.set(key, value);
  }

  /** Waits (up to the store's timeout) for the key to exist. */
  get(key: string): Promise<string> {
    return this.store.get(key);
  }

  async add(key: string, delta: number): Promise<number> {
    return Number(await this.store.add(key, delta));
  }

  /** The key's value, or null when it does not exist; never waits for it. */
  async peek(key: string): Promise<string | null> {
    const value = await this.store.compareSet(key, ABSENT, ABSENT);
    return value === ABSENT ? null : value;
  }

  /** Sets the key to `desired` unless it exists already; returns the value it holds after. */
  setIfAbsent(key: string, desired: string): Promise<string> {
    return this.store.compareSet(key, '', desired);
  }

  /** Sets the key to `desired` when it holds `expected`; returns the value it holds after. */
  compareSet(key: string, expected: string, desired: string): Promise<string> {
    return this.store.compareSet(key, expected, desired);
  }

  close(): void {
    this.store.close();
  }
}

/** Whether `host` names this machine (loopback, or an address of one of its interfaces). */
export async function isLocalAddress(host: string): Promise<boolean> {
  let addresses: string[];
  try {
    addresses = (await lookup(host, { all: true })).map((a) => a.address);
  } catch {
    return false;
  }
  const mine = new Set(Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address)));
  return addresses.some((a) => a.startsWith('127.') || a === '::1' || mine.has(a));
}

/** Whether host:port can be listened on now (checked first, so a taken port does not make c10d log bind failures). */
function portIsFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}
