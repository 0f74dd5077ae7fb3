// The backbone a config names: a registry name, or `path/to/module.js#exportedFactory`.
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createBackbone, type Backbone } from '../models/index.js';
import { ConfigError, type TrainConfig } from '../config/train-config.js';

export type ConfigBackboneFactory = (config: TrainConfig) => Backbone;

export async function backboneFromSpec(config: TrainConfig): Promise<Backbone> {
  const hash = config.model.lastIndexOf('#');
  if (hash < 0) return createBackbone(config.model, { embeddingSize: config.embSize, inputSize: config.imageSize });
  const file = resolve(config.model.slice(0, hash));
  const name = config.model.slice(hash + 1);
  let module: Record<string, unknown>;
  try {
    module = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError('model', `cannot import ${file}: ${(err as Error).message}`);
  }
  const factory = module[name];
  if (typeof factory !== 'function') throw new ConfigError('model', `${file} has no exported function '${name}'`);
  return (factory as ConfigBackboneFactory)(config);
}
