// The one translation from PLSC's setting names (the Entry setters and YAML keys: classNum, embSize,
// lossType, sampleRatio, headChunkSize, calcAcc) to the library's option names (numClasses,
// embeddingSize, margin + sharded, sampleRate, chunkSize, computeAccuracy). Code below the Entry /
// config boundary takes these settings, never a TrainConfig field by its PLSC name.
import { marginForLossType } from '../head/margin.js';
import type { CombinedMarginLoss } from '../head/margin.js';
import type { ClassStorage } from '../config/class-storage.js';
import { resolveConfig, type TrainConfig } from '../config/train-config.js';

/** The classification head a config asks for, in the head's own option names. */
export interface HeadSettings {
  numClasses: number;
  embeddingSize: number;
  /** Partial FC sample rate (1: every class each step). */
  sampleRate: number;
  margin: CombinedMarginLoss;
  /** dist_* loss types: one class shard per worker; otherwise every worker holds every class. */
  sharded: boolean;
  /** Classes per chunk of the head's GEMMs (undefined: the whole shard at once). */
  chunkSize: number | undefined;
  classStorage: ClassStorage;
  computeAccuracy: boolean;
  seed: number;
}

/** The head settings of a resolved config (lossType, scale and margins become one margin). */
export function headSettings(config: TrainConfig): HeadSettings {
  const { margin, sharded } = marginForLossType(config.lossType, { scale: config.scale, ...(config.margins ? { margins: config.margins } : {}) });
  return {
    numClasses: config.classNum,
    embeddingSize: config.embSize,
    sampleRate: config.sampleRatio,
    margin,
    sharded,
    chunkSize: config.headChunkSize ?? undefined,
    classStorage: config.classStorage,
    computeAccuracy: config.calcAcc,
    seed: config.seed,
  };
}

/** A backbone named by the library's option names. */
export interface BackboneSettings {
  /** Registry name (iresnet50, mobilefacenet, ...) or `path/to/module.js#exportedFactory`. */
  model: string;
  embeddingSize: number;
  imageSize: number;
}

/**
 * The config (defaults otherwise) that builds this backbone: what a `module.js#factory` backbone
 * receives, since such factories take the config by its PLSC names.
 */
export function configForBackbone(settings: BackboneSettings): TrainConfig {
  return resolveConfig({ model: settings.model, embSize: settings.embeddingSize, imageSize: settings.imageSize });
}
