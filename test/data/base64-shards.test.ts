import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Base64ShardSource } from '../../src/data/base64-shards.js';
import { BadSampleError, DataFormatError } from '../../src/data/source.js';
import { makeTempDir, solidImage } from './helpers.js';

test('base64 shards: file list of parts, positional reads decode back to the original bytes', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    const images = await Promise.all([
      solidImage([10, 20, 30], 16, 'png'),
      solidImage([200, 0, 0], 16, 'jpeg'),
      solidImage([0, 0, 200], 24, 'png'),
      solidImage([5, 5, 5], 8, 'jpeg'),
    ]);
    await mkdir(join(dir, 'parts'));
    await writeFile(join(dir, 'parts', 'part-0'), `${images[0]!.toString('base64')}\t0\n${images[1]!.toString('base64')}\t3\r\n\n`);
    await writeFile(join(dir, 'parts', 'part-1'), `${images[2]!.toString('base64')}\t1\n${images[3]!.toString('base64')}\t2`);
    await writeFile(join(dir, 'file_list.txt'), 'parts/part-0\n\n# comment\nparts/part-1\n');
    const source = await Base64ShardSource.open(join(dir, 'file_list.txt'));
    assert.equal(source.length, 4);
    assert.equal(source.numClasses, 4);
    assert.deepEqual([0, 1, 2, 3].map((i) => source.label(i)), [0, 3, 1, 2]);
    for (let i = 0; i < 4; i++) {
      const payload = await source.read(i);
      assert.equal(payload.kind, 'encoded');
      if (payload.kind === 'encoded') assert.deepEqual(Buffer.from(payload.bytes), images[i]);
    }
    assert.match(source.describe(3), /part-1 line 2$/);
    await source.close();
  } finally {
    await cleanup();
  }
});

test('base64 shards: malformed lines and labels name the part file and line', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    const good = (await solidImage([1, 2, 3], 8, 'png')).toString('base64');
    await writeFile(join(dir, 'list.txt'), 'p0\n');
    const cases: Array<[string, RegExp]> = [
      [`${good}\t0\n${good}\n`, /p0 line 2: .*no tab/],
      [`${good}\t0\n${good}\t-4\n`, /p0 line 2: label "-4" is not a non-negative integer/],
      [`${good}\t0\n${good}\t1\t7\n`, /p0 line 2: expected 2 tab-separated fields/],
      [`${good}\t0\n\t1\n`, /p0 line 2: empty base64 image field/],
    ];
    for (const [text, message] of cases) {
      await writeFile(join(dir, 'p0'), text);
      await assert.rejects(Base64ShardSource.open(join(dir, 'list.txt')), (error: unknown) => {
        assert.ok(error instanceof DataFormatError);
        assert.match(error.message, message);
        return true;
      });
    }
    await writeFile(join(dir, 'p0'), `${good}\t0\n${good}\t4\n`);
    await assert.rejects(Base64ShardSource.open(join(dir, 'list.txt'), { numClasses: 3 }), /p0 line 2: label 4 out of range \[0, 3\)/);
    await writeFile(join(dir, 'list.txt'), 'missing-part\n');
    await assert.rejects(Base64ShardSource.open(join(dir, 'list.txt')), /missing-part: cannot open part file/);
  } finally {
    await cleanup();
  }
});

test('base64 shards: lines longer than the scan chunk and invalid base64 payloads', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    const big = Buffer.alloc(5 << 20, 7).toString('base64'); // longer than one 4 MiB scan chunk
    await writeFile(join(dir, 'p0'), `${big}\t1\n@@not*base64@@\t0\n`);
    await writeFile(join(dir, 'list.txt'), 'p0\n');
    const source = await Base64ShardSource.open(join(dir, 'list.txt'));
    assert.equal(source.length, 2);
    assert.deepEqual([source.label(0), source.label(1)], [1, 0]);
    const first = await source.read(0);
    assert.equal(first.kind === 'encoded' ? first.bytes.length : -1, 5 << 20);
    await assert.rejects(source.read(1), (error: unknown) => error instanceof BadSampleError && /p0 line 2.*not valid base64/.test(error.message));
    await source.close();
  } finally {
    await cleanup();
  }
});
