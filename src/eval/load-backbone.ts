/**
 * A trained backbone for evaluation, from a training checkpoint (`step-XXXXXXXX/` with meta.json and
 * backbone.safetensors, or the checkpoint root holding them: its newest step) or from a
 * `backbone.safetensors` file (the trainer writes one into modelSaveDir with the metadata
 * `{model, embeddingSize}`). Architecture, embedding width and input size come from the checkpoint's
 * config or the file's metadata; explicit values must agree with them.
 */
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Backbone } from '../models/backbone.js';
import { loadSafetensors, readSafetensorsMetadata } from '../torch/safetensors.js';
import { backboneFromSpec } from '../checkpoint/backbone-spec.js';
import { readMeta, resolveCheckpointDir, type CheckpointMeta } from '../checkpoint/format.js';
import { assertFiniteTensors, loadVerifiedCheckpointFile, type RecordedDigests } from '../checkpoint/integrity.js';
import { DEFAULT_CONFIG, type TrainConfig } from '../config/train-config.js';
import { backboneImageSize } from './backbone-verification.js';

export interface EvalModelSpec {
  /** A checkpoint step directory, or a checkpoint root (its newest complete step is used). */
  checkpoint?: string;
  /** A backbone .safetensors file. */
  model?: string;
  /** Backbone name or `file.js#factory`; default: what the checkpoint / file metadata names. */
  backbone?: string;
  /** Embedding width; must agree with the checkpoint / metadata when they record one. */
  embeddingSize?: number;
  /** Input side; must agree with the checkpoint / metadata when they record one (else default 112). */
  imageSize?: number;
}

export interface LoadedBackbone {
  /** In eval mode, weights loaded. */
  backbone: Backbone;
  /** The safetensors file the weights came from. */
  weightsPath: string;
  /** The checkpoint step directory, or null for a plain safetensors file. */
  checkpointDir: string | null;
  /** Optimizer steps of the checkpoint, or null. */
  step: number | null;
  /** Backbone name or `file.js#factory`. */
  modelName: string;
  embeddingSize: number;
  /** [height, width] of the backbone's input. */
  imageSize: [number, number];
  /** True when neither the model nor the caller gave an input size and the default 112 was used. */
  imageSizeAssumed: boolean;
}


function positiveIntegerMetadata(value: string | undefined, file: string, key: string): number | undefined {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isInteger(parsed) || parsed < 1) {
    throw new Error(`${file}: metadata '${key}' must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return parsed;
}

function agree(recorded: number | undefined, requested: number | undefined, what: string, source: string, flag: string): number | undefined {
  if (recorded !== undefined && requested !== undefined && recorded !== requested) {
    throw new Error(`${source} records ${what} ${recorded}, but ${flag} ${requested} was given (mismatched ${what})`);
  }
  return requested ?? recorded;
}

interface ModelDescription {
  weightsPath: string;
  checkpointDir: string | null;
  step: number | null;
  modelName: string;
  embeddingSize: number;
  /** Recorded or requested input side; undefined when neither says. */
  imageSize: number | undefined;
  /** The checkpoint's training config (custom factories may read any field), else {}. */
  config: Record<string, unknown>;
  /** Appended to weight-loading errors. */
  hint: string;
  /** The checkpoint's recorded file digests (checked before the weights load), or null for a plain file. */
  digests: RecordedDigests | null;
}

function describeCheckpoint(spec: EvalModelSpec & { checkpoint: string }): ModelDescription {
  const dir = resolveCheckpointDir(spec.checkpoint);
  const meta: CheckpointMeta = readMeta(dir, { requireShards: false });
  const weightsPath = join(dir, 'backbone.safetensors');
  if (!existsSync(weightsPath)) throw new Error(`checkpoint ${dir}: missing backbone.safetensors`);
  const config = (meta.config ?? {}) as Record<string, unknown>;
  const source = `checkpoint ${dir}`;
  const recordedImageSize = typeof config.imageSize === 'number' ? config.imageSize : undefined;
  const modelName = spec.backbone ?? (typeof meta.backbone === 'string' ? meta.backbone : typeof config.model === 'string' ? config.model : undefined);
  if (modelName === undefined) throw new Error(`${source}: meta.json names no backbone; pass --backbone`);
  if (!Number.isInteger(meta.embeddingSize) || meta.embeddingSize < 1) {
    throw new Error(`${source}: meta.json has no valid embeddingSize (got ${JSON.stringify(meta.embeddingSize)})`);
  }
  return {
    weightsPath,
    checkpointDir: dir,
    step: meta.step,
    modelName,
    embeddingSize: agree(meta.embeddingSize, spec.embeddingSize, 'embedding size', source, '--emb-size') as number,
    imageSize: agree(recordedImageSize, spec.imageSize, 'image size', source, '--image-size'),
    config,
    hint: '',
    digests: meta,
  };
}

function describeModelFile(spec: EvalModelSpec & { model: string }): ModelDescription {
  const file = spec.model;
  if (!existsSync(file)) throw new Error(`model ${file} does not exist`);
  if (statSync(file).isDirectory()) throw new Error(`model ${file} is a directory (checkpoint directories are loaded with --checkpoint)`);
  const metadata = readSafetensorsMetadata(file);
  const modelName = spec.backbone ?? metadata.model;
  if (modelName === undefined || modelName === '') {
    throw new Error(`${file} carries no 'model' metadata; pass --backbone NAME (and --emb-size D, --image-size S)`);
  }
  const embeddingSize = agree(positiveIntegerMetadata(metadata.embeddingSize, file, 'embeddingSize'), spec.embeddingSize, 'embedding size', file, '--emb-size');
  if (embeddingSize === undefined) throw new Error(`${file} carries no 'embeddingSize' metadata; pass --emb-size D`);
  const imageSize = agree(positiveIntegerMetadata(metadata.imageSize, file, 'imageSize'), spec.imageSize, 'image size', file, '--image-size');
  return {
    weightsPath: file,
    checkpointDir: null,
    step: null,
    modelName,
    embeddingSize,
    imageSize,
    config: {},
    hint: imageSize === undefined ? ` (the file records no input size, so ${DEFAULT_CONFIG.imageSize} was assumed: pass --image-size if it was trained at another size)` : '',
    digests: null,
  };
}

/** Builds the backbone a checkpoint or safetensors file describes and loads its weights. */
export async function loadBackboneForEval(spec: EvalModelSpec): Promise<LoadedBackbone> {
  if ((spec.checkpoint === undefined) === (spec.model === undefined)) throw new Error('give exactly one of checkpoint and model');
  const described = spec.checkpoint !== undefined ? describeCheckpoint({ ...spec, checkpoint: spec.checkpoint }) : describeModelFile({ ...spec, model: spec.model as string });
  const source = described.checkpointDir !== null ? `checkpoint ${described.checkpointDir}` : described.weightsPath;
  const config = {
    ...DEFAULT_CONFIG,
    ...described.config,
    model: described.modelName,
    embSize: described.embeddingSize,
    imageSize: described.imageSize ?? DEFAULT_CONFIG.imageSize,
  } as TrainConfig;
  let backbone: Backbone;
  try {
    backbone = await backboneFromSpec(config);
  } catch (err) {
    throw new Error(`${source}: cannot build backbone '${described.modelName}': ${(err as Error).message}`);
  }
  try {
    if (backbone.embeddingSize !== described.embeddingSize) {
      throw new Error(`${source}: backbone '${described.modelName}' produces ${backbone.embeddingSize}-d embeddings, but the model records ${described.embeddingSize} (mismatched embedding size)`);
    }
    const [height, width] = backboneImageSize(backbone);
    if (described.imageSize !== undefined && (height !== described.imageSize || width !== described.imageSize)) {
      throw new Error(`${source}: backbone '${described.modelName}' takes ${height}x${width} input, but image size ${described.imageSize} was recorded or requested`);
    }
    let tensors: ReturnType<typeof loadSafetensors>;
    if (described.digests !== null && described.checkpointDir !== null) {
      tensors = loadVerifiedCheckpointFile(described.checkpointDir, described.digests, 'backbone.safetensors');
    } else {
      tensors = loadSafetensors(described.weightsPath);
      try {
        assertFiniteTensors(described.weightsPath, tensors);
      } catch (error) {
        for (const tensor of Object.values(tensors)) tensor.dispose();
        throw error;
      }
    }
    try {
      backbone.loadStateDict(tensors);
    } catch (err) {
      throw new Error(`${described.weightsPath}: the weights do not fit backbone '${described.modelName}' (${described.embeddingSize}-d, ${height}x${width} input): ${(err as Error).message}${described.hint}`);
    } finally {
      for (const tensor of Object.values(tensors)) tensor.dispose();
    }
  } catch (err) {
    backbone.dispose();
    throw err;
  }
  backbone.eval();
  return {
    backbone,
    weightsPath: resolve(described.weightsPath),
    checkpointDir: described.checkpointDir === null ? null : resolve(described.checkpointDir),
    step: described.step,
    modelName: described.modelName,
    embeddingSize: described.embeddingSize,
    imageSize: backboneImageSize(backbone),
    imageSizeAssumed: described.imageSize === undefined,
  };
}
