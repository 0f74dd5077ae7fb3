import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ImageFolderSource } from '../../src/data/image-folder.js';
import { encodeBmp } from '../../src/data/bmp.js';
import { DataFormatError } from '../../src/data/source.js';
import { gradientPixels, makeTempDir, solidImage } from './helpers.js';

test('image folder: classes sorted by name get labels 0..C-1; extensions filtered; nested files found', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    for (const name of ['zebra', 'Apple', 'mango', '.hidden']) await mkdir(join(dir, name));
    await mkdir(join(dir, 'mango', 'more'));
    const png = await solidImage([1, 2, 3], 8, 'png');
    await writeFile(join(dir, 'zebra', 'b.jpg'), await solidImage([9, 9, 9], 8, 'jpeg'));
    await writeFile(join(dir, 'zebra', 'a.PNG'), png);
    await writeFile(join(dir, 'zebra', 'notes.txt'), 'not an image');
    await writeFile(join(dir, 'Apple', 'x.bmp'), encodeBmp(gradientPixels(8, 8), 8, 8));
    await writeFile(join(dir, 'mango', 'more', 'deep.webp'), png);
    await writeFile(join(dir, 'mango', 'top.jpeg'), png);
    await writeFile(join(dir, '.hidden', 'h.jpg'), png);
    await writeFile(join(dir, 'stray.jpg'), png);
    await symlink(join(dir, 'zebra', 'b.jpg'), join(dir, 'mango', 'link.jpg'));
    const source = await ImageFolderSource.open(dir);
    assert.deepEqual(source.classNames, ['Apple', 'mango', 'zebra']);
    assert.equal(source.numClasses, 3);
    const entries = Array.from({ length: source.length }, (_, i) => [source.relativePath(i).split('\\').join('/'), source.label(i)]);
    assert.deepEqual(entries, [
      ['Apple/x.bmp', 0],
      ['mango/link.jpg', 1],
      ['mango/more/deep.webp', 1],
      ['mango/top.jpeg', 1],
      ['zebra/a.PNG', 2],
      ['zebra/b.jpg', 2],
    ]);
    const payload = await source.read(4);
    assert.deepEqual(payload.kind === 'encoded' ? Buffer.from(payload.bytes) : undefined, png);
    assert.match(source.describe(4), /zebra[\\/]a\.PNG$/);
  } finally {
    await cleanup();
  }
});

test('image folder: missing root or no classes is a DataFormatError', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    await assert.rejects(ImageFolderSource.open(join(dir, 'nope')), DataFormatError);
    await assert.rejects(ImageFolderSource.open(dir), /no class subfolders/);
    await mkdir(join(dir, 'empty'));
    await assert.rejects(ImageFolderSource.open(dir), /no images/);
  } finally {
    await cleanup();
  }
});
