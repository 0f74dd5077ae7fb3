// Big tensor blocks ask the kernel for transparent huge pages (native/src/core.cc's allocator):
// the head's class rows are read in random order, and with 4 KiB pages every row costs a TLB miss.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, existsSync } from 'node:fs';

const THP_SETTING = '/sys/kernel/mm/transparent_hugepage/enabled';
const MiB = 1024 * 1024;
const indexUrl = new URL('../../src/index.js', import.meta.url).href;

// Allocates and fills a 64 MiB tensor in a fresh process; prints how much of the process's
// anonymous memory sits in huge pages before and after.
function hugeBytesGained(env: Record<string, string>): number {
  const script = `
    import { readFileSync } from 'node:fs';
    const { ops: F } = await import(${JSON.stringify(indexUrl)});
    const huge = () => Number(/AnonHugePages:\\s+(\\d+) kB/.exec(readFileSync('/proc/self/smaps_rollup', 'utf8'))[1]) * 1024;
    const before = huge();
    const t = F.ones([16, 1024, 1024]);
    const after = huge();
    if (t.sum().item() !== 16 * 1024 * 1024) throw new Error('wrong sum');
    console.log(after - before);`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, ...env }, encoding: 'utf8' });
  return Number(out.trim());
}

const thp = existsSync(THP_SETTING) ? readFileSync(THP_SETTING, 'utf8') : '';
const skip = thp.includes('[never]') || thp === '' || !existsSync('/proc/self/smaps_rollup') ? `transparent huge pages unavailable (${THP_SETTING}: ${thp.trim() || 'missing'})` : false;

test('a 64 MiB tensor lives mostly on huge pages; PLSC_HUGE_PAGES=0 keeps it on small ones', { skip }, () => {
  const gained = hugeBytesGained({});
  assert.ok(gained >= 32 * MiB, `only ${(gained / MiB).toFixed(1)} MiB of a 64 MiB tensor on huge pages`);
  const gainedWithout = hugeBytesGained({ PLSC_HUGE_PAGES: '0' });
  assert.ok(gainedWithout < 4 * MiB, `PLSC_HUGE_PAGES=0 still put ${(gainedWithout / MiB).toFixed(1)} MiB on huge pages`);
});
