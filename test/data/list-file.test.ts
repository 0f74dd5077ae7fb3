import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ListFileSource } from '../../src/data/list-file.js';
import { BadSampleError, DataFormatError } from '../../src/data/source.js';
import { makeTempDir, solidImage } from './helpers.js';

test('list file: spaces, tabs, comments, blank lines, CRLF, BOM, paths with spaces, absolute paths', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    await mkdir(join(dir, 'images'));
    const a = await solidImage([255, 0, 0], 8, 'jpeg');
    const b = await solidImage([0, 255, 0], 8, 'png');
    await writeFile(join(dir, 'images', 'a.jpg'), a);
    await writeFile(join(dir, 'images', 'b b.png'), b);
    const list =
      '\uFEFF# PLSC list\r\n' +
      'images/a.jpg 0\r\n' +
      '\r\n' +
      '   \n' +
      'images/b b.png\t2\n' +
      `${join(dir, 'images', 'a.jpg')}    1\n` +
      '# trailing comment';
    await writeFile(join(dir, 'label.txt'), list);
    const source = await ListFileSource.open(join(dir, 'label.txt'));
    assert.equal(source.length, 3);
    assert.equal(source.numClasses, 3);
    assert.deepEqual([0, 1, 2].map((i) => source.label(i)), [0, 2, 1]);
    assert.equal(source.relativePath(1), 'images/b b.png');
    assert.equal(source.lineNumber(0), 2);
    assert.equal(source.lineNumber(1), 5);
    assert.match(source.describe(1), /label\.txt line 5 \(.*b b\.png\)/);
    const payload = await source.read(1);
    assert.equal(payload.kind, 'encoded');
    assert.deepEqual(payload.kind === 'encoded' ? Buffer.from(payload.bytes) : undefined, b);
    assert.deepEqual((await source.read(2)).kind === 'encoded' ? 'ok' : 'no', 'ok');
  } finally {
    await cleanup();
  }
});

test('list file: malformed lines and bad labels name the file and line', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    const cases: Array<[string, RegExp, number]> = [
      ['a.jpg 0\nb.jpg -1\n', /not a non-negative integer/, 2],
      ['a.jpg 0\n\nb.jpg 1.5\n', /"1\.5" is not a non-negative integer/, 3],
      ['a.jpg 0\nb.jpg cat\n', /not a non-negative integer/, 2],
      ['a.jpg 0\njust-a-path\n', /expected "<image path> <label>"/, 2],
      ['a.jpg 0\nb.jpg 99999999999\n', /too large/, 2],
    ];
    for (const [text, message, line] of cases) {
      const path = join(dir, 'bad.txt');
      await writeFile(path, text);
      await assert.rejects(ListFileSource.open(path), (error: unknown) => {
        assert.ok(error instanceof DataFormatError);
        assert.equal(error.line, line);
        assert.equal(error.file, path);
        assert.match(error.message, new RegExp(`bad\\.txt line ${line}: `));
        assert.match(error.message, message);
        return true;
      });
    }
  } finally {
    await cleanup();
  }
});

test('list file: label >= numClasses names the line; empty list and missing file are errors', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    const path = join(dir, 'label.txt');
    await writeFile(path, 'a.jpg 0\nb.jpg 1\nc.jpg 5\n');
    await assert.rejects(ListFileSource.open(path, { numClasses: 5 }), /label\.txt line 3: label 5 out of range \[0, 5\)/);
    const ok = await ListFileSource.open(path, { numClasses: 10 });
    assert.equal(ok.numClasses, 10);
    await writeFile(path, '# nothing\n\n');
    await assert.rejects(ListFileSource.open(path), /no samples/);
    await assert.rejects(ListFileSource.open(join(dir, 'missing.txt')), DataFormatError);
  } finally {
    await cleanup();
  }
});

test('list file: a missing image is a BadSampleError naming the list line and path', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    await writeFile(join(dir, 'label.txt'), 'images/gone.jpg 0\n');
    const source = await ListFileSource.open(join(dir, 'label.txt'), { imageRoot: dir });
    await assert.rejects(source.read(0), (error: unknown) => {
      assert.ok(error instanceof BadSampleError);
      assert.equal(error.index, 0);
      assert.match(error.message, /label\.txt line 1/);
      assert.match(error.message, /image file missing: .*gone\.jpg/);
      return true;
    });
  } finally {
    await cleanup();
  }
});
