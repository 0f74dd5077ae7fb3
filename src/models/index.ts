// Backbones by name: the built-in registry (iresnet18/34/50/100, mobilefacenet(-s1), feature-mlp), a way
// to register more, and the public exports of src/models.
import type { MemoryFormat } from '../torch/index.js';
import type { Backbone } from './backbone.js';
import { IRESNET_LAYERS, IResNet } from './iresnet.js';
import { MobileFaceNet } from './mobilefacenet.js';
import { FeatureMLP } from './feature-mlp.js';

export * from './backbone.js';
export * from './iresnet.js';
export * from './mobilefacenet.js';
export * from './feature-mlp.js';
export * from './export-onnx.js';
export * from './export-centers.js';
export * from './folded-modules.js';
export * from './fold-batch-norm.js';

export type BuiltinBackboneName = 'iresnet18' | 'iresnet34' | 'iresnet50' | 'iresnet100' | 'mobilefacenet' | 'mobilefacenet-s1' | 'feature-mlp';

export interface BackboneOptions {
  /** Embedding width D (default 512). */
  embeddingSize?: number;
  /** Image side or [height, width] (default 112); image backbones only (feature-mlp ignores it). */
  inputSize?: number | readonly [number, number];
  /** Dropout before the FC layer (default 0); iresnet and feature-mlp only. */
  dropout?: number;
  /** Feature vector length; feature-mlp only (required there). */
  inputDim?: number;
  /** Hidden widths; feature-mlp only (default [1024]). */
  hiddenDims?: readonly number[];
  /**
   * Layout of the 4-D weights (default 'channels_last': libtorch's CPU convolutions, batch norm
   * and PReLU run 10-40% faster on it; inputs need no conversion). Checkpoints and ONNX exports
   * are the same either way.
   */
  memoryFormat?: MemoryFormat;
}

export type BackboneBuilder = (options: BackboneOptions) => Backbone;

function noFeatureOptions(name: string, options: BackboneOptions): void {
  if (options.inputDim !== undefined || options.hiddenDims !== undefined) {
    throw new Error(`backbone '${name}': inputDim / hiddenDims apply to 'feature-mlp' only`);
  }
}

function iresnetFactory(name: keyof typeof IRESNET_LAYERS): BackboneBuilder {
  return (options) => {
    noFeatureOptions(name, options);
    return new IResNet({
      layers: IRESNET_LAYERS[name],
      ...(options.embeddingSize !== undefined ? { embeddingSize: options.embeddingSize } : {}),
      ...(options.inputSize !== undefined ? { inputSize: options.inputSize } : {}),
      ...(options.dropout !== undefined ? { dropout: options.dropout } : {}),
    });
  };
}

function mobileFaceNetFactory(name: string, stemStride: 1 | 2): BackboneBuilder {
  return (options) => {
    noFeatureOptions(name, options);
    if (options.dropout !== undefined && options.dropout !== 0) {
      throw new Error(`backbone '${name}': dropout is not part of the architecture (got ${options.dropout}); leave it at 0`);
    }
    return new MobileFaceNet({
      stemStride,
      ...(options.embeddingSize !== undefined ? { embeddingSize: options.embeddingSize } : {}),
      ...(options.inputSize !== undefined ? { inputSize: options.inputSize } : {}),
    });
  };
}

const registry = new Map<string, BackboneBuilder>([
  ['iresnet18', iresnetFactory('iresnet18')],
  ['iresnet34', iresnetFactory('iresnet34')],
  ['iresnet50', iresnetFactory('iresnet50')],
  ['iresnet100', iresnetFactory('iresnet100')],
  ['mobilefacenet', mobileFaceNetFactory('mobilefacenet', 2)],
  ['mobilefacenet-s1', mobileFaceNetFactory('mobilefacenet-s1', 1)],
  [
    'feature-mlp',
    (options) => {
      if (options.inputDim === undefined) throw new Error(`backbone 'feature-mlp': inputDim (the feature vector length) is required`);
      return new FeatureMLP({
        inputDim: options.inputDim,
        ...(options.hiddenDims !== undefined ? { hiddenDims: options.hiddenDims } : {}),
        ...(options.embeddingSize !== undefined ? { embeddingSize: options.embeddingSize } : {}),
        ...(options.dropout !== undefined ? { dropout: options.dropout } : {}),
      });
    },
  ],
]);

const BUILTIN = new Set<string>(registry.keys());

/** Names createBackbone accepts (built-ins first, then registered ones). */
export function backboneNames(): string[] {
  return [...registry.keys()];
}

/**
 * Makes `name` available to createBackbone (and so to configs' `model:` key). Built-in names cannot
 * be replaced; registering an existing custom name replaces it.
 */
export function registerBackbone(name: string, factory: BackboneBuilder): void {
  if (typeof name !== 'string' || name.trim() === '') throw new Error('registerBackbone: name must be a non-empty string');
  if (BUILTIN.has(name)) throw new Error(`registerBackbone: '${name}' is a built-in backbone and cannot be replaced`);
  if (typeof factory !== 'function') throw new Error(`registerBackbone('${name}'): factory must be a function`);
  registry.set(name, factory);
}

/**
 * Builds a backbone by name with randomly initialized weights (initialization as arcface_torch).
 * `createBackbone('iresnet50')` is IR-50 with a 512-d embedding for 112x112 input.
 */
export function createBackbone(name: BuiltinBackboneName | (string & {}), options: BackboneOptions = {}): Backbone {
  const factory = registry.get(name);
  if (factory === undefined) throw new Error(`unknown backbone '${name}' (available: ${backboneNames().join(', ')})`);
  const backbone = factory(options);
  if (typeof backbone?.embeddingSize !== 'number' || !Array.isArray(backbone.inputShape)) {
    throw new Error(`backbone '${name}': the factory did not return a Backbone (a Module with embeddingSize and inputShape)`);
  }
  return backbone.toMemoryFormat(options.memoryFormat ?? 'channels_last');
}
