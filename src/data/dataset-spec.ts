// A training dataset named by its kind and path (or a synthetic one), and opening it.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { SampleSource } from './source.js';
import { SyntheticFaces } from './synthetic.js';
import { openDataset } from './convert.js';

/** Where training images come from. */
export type DatasetSpec =
  | { type: 'synthetic'; numClasses: number; imagesPerClass: number; seed?: number; noise?: number }
  | { type: 'list'; path: string }
  | { type: 'rec'; path: string }
  | { type: 'folder'; path: string }
  | { type: 'base64'; path: string }
  | { type: 'auto'; path: string };

/** Opens the configured dataset (auto-detects a PLSC dataset directory). */
export async function openTrainingData(spec: DatasetSpec, imageSize: number): Promise<SampleSource> {
  switch (spec.type) {
    case 'synthetic':
      return new SyntheticFaces({ numClasses: spec.numClasses, imagesPerClass: spec.imagesPerClass, size: imageSize, seed: spec.seed ?? 0, ...(spec.noise === undefined ? {} : { noise: spec.noise }) });
    case 'list':
    case 'rec':
    case 'folder':
    case 'base64':
      return openDataset(spec.type, spec.path);
    case 'auto': {
      const dir = spec.path;
      if (!existsSync(dir)) throw new Error(`dataset: ${resolve(dir)} does not exist`);
      if (statSync(dir).isFile()) {
        if (dir.endsWith('.rec')) return openDataset('rec', dir);
        return openDataset('list', dir);
      }
      if (existsSync(join(dir, 'train.rec'))) return openDataset('rec', join(dir, 'train.rec'));
      if (existsSync(join(dir, 'label.txt'))) return openDataset('list', join(dir, 'label.txt'));
      if (existsSync(join(dir, 'file_list.txt'))) return openDataset('base64', join(dir, 'file_list.txt'));
      const subdirs = readdirSync(dir).filter((n) => statSync(join(dir, n)).isDirectory());
      if (subdirs.length > 0) return openDataset('folder', dir);
      throw new Error(`dataset: ${resolve(dir)} holds none of train.rec, label.txt, file_list.txt or class folders`);
    }
  }
}
