// The rendezvous store listens on the address it is told: loopback for MASTER_ADDR=127.0.0.1, not on
// every interface (read from /proc/net/tcp*, what `ss -ltn` shows).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { findFreePort } from '../../src/distributed/launcher.js';
import { initProcessGroup } from '../../src/distributed/process-group.js';

/** Local addresses (hex, as /proc/net/tcp writes them) of the sockets listening on `port`. */
function listeners(port: number): string[] {
  const found: string[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      const [address, portHex] = (fields[1] ?? '').split(':');
      // State 0A is LISTEN.
      if (fields[3] === '0A' && portHex !== undefined && parseInt(portHex, 16) === port) found.push(address as string);
    }
  }
  return found;
}

test('rank 0 with MASTER_ADDR 127.0.0.1 hosts the store on 127.0.0.1 only', async () => {
  const port = await findFreePort('127.0.0.1');
  // Rank 1 never comes: the store stays up until the rendezvous times out.
  const joining = initProcessGroup({ rank: 0, worldSize: 2, masterAddr: '127.0.0.1', masterPort: port, rendezvousTimeoutMs: 4000, setDefault: false });
  const failure = assert.rejects(joining, /only 1 of 2 processes joined/);
  let seen: string[] = [];
  for (let tries = 0; tries < 60 && seen.length === 0; tries++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    seen = listeners(port);
  }
  assert.deepEqual(seen, ['0100007F'], `listening on ${seen.join(', ') || 'nothing'} (0100007F = 127.0.0.1; all zeros = every interface)`);
  await failure;
});
