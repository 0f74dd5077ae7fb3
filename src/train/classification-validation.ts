// Classification accuracy on labelled held-out datasets (`valDatasets`) during training, with the
// head's live class centres and the search `plsc eval --classify` and /v1/classify use. Rank 0
// embeds the held-out images (its backbone, batch-norm statistics included, is the one saved) and
// broadcasts the embeddings; every worker ranks them against its own FC shard; the per-shard top-k
// lists are all-gathered and merged, so no worker ever holds the other shards.
import * as F from '../torch/ops.js';
import { tidy } from '../torch/scope.js';
import { noGrad } from '../torch/autograd.js';
import type { Tensor } from '../torch/tensor.js';
import type { ProcessGroup } from '../distributed/process-group.js';
import { RunningTopK } from '../centers/centers.js';
import { classifyDataset, rankClassesByCenters, type ClassRanker, type CenterRows, type ClassificationResult } from '../eval/classify.js';
import type { Backbone } from '../models/index.js';
import { withFoldedBatchNorm } from '../models/fold-batch-norm.js';
import type { SampleSource } from '../data/source.js';
import type { EmbedFunction } from '../eval/embed.js';
import { openDataset } from '../data/convert.js';
import { backboneEmbedFunction, backboneImageSize } from '../eval/backbone-verification.js';
import type { ValDatasetSpec } from '../config/train-config.js';

export interface ClassificationTargetResult {
  target: string;
  path: string;
  images: number;
  top1: number;
  top5: number;
  detail: ClassificationResult;
}

export interface LocalCenters {
  /** This worker's rows of the class centres [rows, dim] (any scale; the search normalizes). */
  weight: Tensor;
  /** Global class id of the first row. */
  firstClass: number;
  /** Classes of the whole head. */
  classes: number;
}

const CHUNK_BYTES = 16 << 20;

function* shardRows(centers: LocalCenters): Generator<CenterRows> {
  const [rows, dim] = centers.weight.shape as [number, number];
  const chunk = Math.max(1, Math.floor(CHUNK_BYTES / (dim * 4)));
  for (let start = 0; start < rows; start += chunk) {
    const count = Math.min(chunk, rows - start);
    const values = noGrad(() => tidy(() => F.narrow(centers.weight, 0, start, count).float().dataSync() as Float32Array));
    yield { first: centers.firstClass + start, count, rows: values };
  }
}

/**
 * Ranks against this worker's shard, then merges every worker's candidates (score, class) into the
 * global k best with the same tie rule as the search (higher score, then lower class).
 */
export function shardedRanker(centers: LocalCenters, group: ProcessGroup): ClassRanker {
  const [rows, dim] = centers.weight.shape as [number, number];
  return async (ownQueries, k) => {
    const queries = group.worldSize === 1 ? ownQueries : broadcastQueries(ownQueries, dim, group);
    const local = await rankClassesByCenters(queries, shardRows(centers), { dim, k: Math.min(k, rows), classes: rows, firstClass: centers.firstClass });
    if (group.worldSize === 1) return local.map((matches) => matches.map((match) => match.index));
    // [queries, k, (score, class)] in float64 (class ids are exact); -1 marks an empty slot.
    const packed = new Float64Array(queries.length * k * 2).fill(-1);
    local.forEach((matches, q) =>
      matches.forEach((match, j) => {
        packed[(q * k + j) * 2] = match.score;
        packed[(q * k + j) * 2 + 1] = match.index;
      }),
    );
    const gathered = tidy(() => {
      const mine = F.fromTypedArray(packed, [packed.length], 'float64');
      return group.allGatherList(mine).wait().map((part) => part.dataSync() as Float64Array);
    });
    return queries.map((_, q) => {
      const best = new RunningTopK(k);
      for (const part of gathered) {
        for (let j = 0; j < k; j++) {
          const index = part[(q * k + j) * 2 + 1]!;
          if (index >= 0) best.push(part[(q * k + j) * 2]!, index);
        }
      }
      return best.result().map((match) => match.index);
    });
  };
}

/** Rank 0's queries on every rank. */
function broadcastQueries(queries: readonly Float32Array[], dim: number, group: ProcessGroup): Float32Array[] {
  const packed = new Float32Array(queries.length * dim);
  if (group.rank === 0) queries.forEach((query, q) => packed.set(query, q * dim));
  const received = tidy(() => group.broadcast(F.fromTypedArray(packed, [queries.length, dim]), 0).wait().dataSync() as Float32Array);
  return queries.map((_, q) => received.subarray(q * dim, (q + 1) * dim));
}

/** Opens a held-out dataset (format 'auto' is detected as for training data). */
export async function openValDataset(spec: ValDatasetSpec, openAuto: (path: string) => Promise<SampleSource>): Promise<SampleSource> {
  return spec.format === 'auto' ? openAuto(spec.path) : openDataset(spec.format, spec.path);
}

/** Top-1 / top-5 of one held-out dataset (every worker calls it; all get the same result). */
export async function classifyValDataset(
  backbone: Backbone,
  source: SampleSource,
  spec: ValDatasetSpec,
  centers: LocalCenters,
  group: ProcessGroup,
  options: { batchSize?: number } = {},
): Promise<ClassificationTargetResult> {
  const dim = centers.weight.shape[1] as number;
  const wasTraining = backbone.training;
  backbone.eval();
  try {
    const classify = (embed: EmbedFunction): Promise<ClassificationResult> =>
      classifyDataset(source, embed, shardedRanker(centers, group), {
        classes: centers.classes,
        dim,
        imageSize: backboneImageSize(backbone),
        datasetName: `valDatasets '${spec.name}' (${spec.path})`,
        ...(options.batchSize !== undefined ? { batchSize: options.batchSize } : {}),
      });
    // Only rank 0's embeddings are used (shardedRanker broadcasts them): the others skip the forward
    // pass. Rank 0 embeds with the BN-folded inference form.
    const detail =
      group.rank === 0
        ? await withFoldedBatchNorm(backbone, (folded) => classify(backboneEmbedFunction(folded)))
        : await classify((_batch, count) => new Float32Array(count * dim));
    return { target: spec.name, path: spec.path, images: detail.images, top1: detail.top1, top5: detail.top5, detail };
  } finally {
    backbone.train(wasTraining);
  }
}
