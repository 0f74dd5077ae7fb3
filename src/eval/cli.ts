// `plsc eval`: LFW-protocol verification of a trained backbone on insightface .bin files, and 1:N
// identification (rank-1 / rank-5) of probe images against a gallery.
import { basename } from 'node:path';
import { UsageError, integerFlag, runCommand, type CommandIO } from '../cli-kit/args.js';
import type { ListFileSource } from '../data/list-file.js';
import type { LoadedBackbone } from './load-backbone.js';
import type { IdentificationResult } from './identification.js';
import type { TargetResult } from './backbone-verification.js';
import { collapsedEmbeddingsWarning, embeddingsCollapsed } from './collapse.js';

/** Where the command writes (process.stdout / process.stderr unless a test passes its own). */
export type EvalCommandIO = CommandIO;

const EVAL_USAGE = `usage: plsc eval (--checkpoint DIR | --model FILE.safetensors) --bin lfw.bin [--bin ...] [options]
       plsc eval (--checkpoint DIR | --model FILE.safetensors) --identify --gallery LIST --probe LIST [options]
       plsc eval --checkpoint DIR --classify --data DATASET [--format FORMAT] [options]

Verification (LFW protocol, as insightface/PLSC): every image and its horizontal flip are embedded,
summed and L2-normalized; 10 folds, thresholds 0..4 step 0.01; accuracy ± std over the folds, XNorm,
VAL@FAR=1e-3. Identification: cosine similarity of flip-fused embeddings, rank-1 and rank-5 over the
probes whose label occurs in the gallery. Classification: every image is ranked against the
checkpoint's class centres exactly as plsc serve's /v1/classify does (cosine to the normalized
centres, streamed from the FC shard files); top-1, top-5, per-class accuracy, confusion matrix.

model (one of):
  --checkpoint DIR      a checkpoint step directory (step-00001200/) or a checkpoint root
                        (the newest complete step-XXXXXXXX/ in it is used)
  --model FILE          a backbone .safetensors (the trainer's <modelSaveDir>/backbone.safetensors)
  --backbone NAME       backbone name or file.js#factory (default: from the checkpoint / file metadata)
  --emb-size D          embedding size (default: from the checkpoint / file metadata)
  --image-size S        input side (default: from the checkpoint / file metadata, else 112)

verification:
  --bin PATH            insightface validation .bin (repeatable); a bare name such as lfw is
                        looked up as DIR/lfw.bin with --dataset-dir DIR
  --dataset-dir DIR     where names given to --bin are looked up

identification:
  --identify            run 1:N identification instead of verification
  --gallery LIST        list file of gallery images ("path label" lines, paths relative to the list)
  --probe LIST          list file of probe images (same format; labels shared with the gallery)
  --gallery-chunk N     gallery rows per similarity block (default 4096)

classification:
  --classify            top-1/top-5 accuracy of a labelled dataset with the checkpoint's class centres
  --data PATH           the dataset: a list file, a .rec, a folder of class folders, a base64
                        file list, or a PLSC dataset folder (detected as plsc train does)
  --format FORMAT       list | rec | folder | base64 (default: detected from PATH)

  --batch-size N        images per forward pass (default 64)
  --json                one JSON object per line instead of a table`;

const fixed = (value: number, digits: number): string => (Number.isFinite(value) ? value.toFixed(digits) : String(value));

function describeModel(model: LoadedBackbone): string {
  const [height, width] = model.imageSize;
  const origin = model.checkpointDir !== null ? `checkpoint ${model.checkpointDir} (step ${model.step})` : model.weightsPath;
  return `model: ${origin}: ${model.modelName}, ${model.embeddingSize}-d, ${height}x${width} input`;
}

function verificationJson(result: TargetResult): Record<string, unknown> {
  const tarAtFar: Record<string, number | null> = {};
  for (const point of result.detail.tarAtFar) tarAtFar[point.far.toExponential()] = point.tar;
  return {
    target: result.target,
    path: result.path,
    pairs: result.pairs,
    accuracy: result.accuracy,
    std: result.std,
    xnorm: result.xnorm,
    'val_at_far_1e-3': result.valAtFar1e3,
    val_std: result.detail.valStd,
    far: result.detail.far,
    tar_at_far: tarAtFar,
    embeddings_collapsed: embeddingsCollapsed(result.detail),
  };
}

async function runVerification(
  io: EvalCommandIO,
  json: boolean,
  model: LoadedBackbone,
  paths: { target: string; path: string }[],
  batchSize: number | undefined,
): Promise<void> {
  const { verifyBin } = await import('./backbone-verification.js');
  const header = ['target', 'pairs', 'accuracy', 'XNorm', 'VAL@FAR=1e-3'];
  const nameWidth = Math.max(header[0]!.length, ...paths.map((p) => basename(p.path).replace(/\.bin$/, '').length));
  const row = (cells: string[]) => `${cells[0]!.padEnd(nameWidth)}  ${cells[1]!.padStart(7)}  ${cells[2]!.padEnd(17)}  ${cells[3]!.padStart(9)}  ${cells[4]!.padStart(12)}\n`;
  if (!json) io.stdout.write(`${describeModel(model)}\n${row(header)}`);
  for (const { path } of paths) {
    const result = await verifyBin(model.backbone, path, { ...(batchSize !== undefined ? { batchSize } : {}) });
    if (json) io.stdout.write(`${JSON.stringify(verificationJson(result))}\n`);
    else io.stdout.write(row([result.target, String(result.pairs), `${fixed(result.accuracy, 5)} ± ${fixed(result.std, 5)}`, fixed(result.xnorm, 4), fixed(result.valAtFar1e3, 5)]));
    const warning = collapsedEmbeddingsWarning(result.detail, result.target);
    if (warning) io.stderr.write(`plsc eval: ${warning}\n`);
  }
}

/** Flip-fused embeddings (original + flipped; searchTopK normalizes) of every image of a list. */
async function embedList(source: ListFileSource, model: LoadedBackbone, batchSize: number | undefined): Promise<Float32Array[]> {
  const { embedLoadedImages, samplePayloadToRgb } = await import('./embed-loaded.js');
  const { backboneEmbedFunction } = await import('./backbone-verification.js');
  const { withFoldedBatchNorm } = await import('../models/fold-batch-norm.js');
  const { BadSampleError } = await import('../data/source.js');
  const [height, width] = model.imageSize;
  const load = async (index: number): Promise<Uint8Array> => {
    try {
      return await samplePayloadToRgb(await source.read(index), width, height);
    } catch (err) {
      if (err instanceof BadSampleError) throw err;
      throw new Error(`${source.describe(index)}: cannot be decoded (${(err as Error).message})`);
    }
  };
  const { original, flipped } = await withFoldedBatchNorm(model.backbone, (folded) =>
    embedLoadedImages(source.length, load, backboneEmbedFunction(folded), {
      height,
      width,
      ...(batchSize !== undefined ? { batchSize } : {}),
    }),
  );
  const dim = original.dim;
  return Array.from({ length: source.length }, (_, i) => {
    const row = original.data.slice(i * dim, (i + 1) * dim);
    if (flipped !== null) for (let j = 0; j < dim; j++) row[j]! += flipped.data[i * dim + j]!;
    return row;
  });
}

function labelsOf(source: ListFileSource): Int32Array {
  return Int32Array.from({ length: source.length }, (_, i) => source.label(i));
}

async function runIdentification(
  io: EvalCommandIO,
  json: boolean,
  model: LoadedBackbone,
  gallery: ListFileSource,
  probes: ListFileSource,
  options: { batchSize: number | undefined; galleryChunk: number | undefined },
): Promise<void> {
  const { evaluateIdentification } = await import('./identification.js');
  const { torchMatmul } = await import('./torch-matmul.js');
  const galleryEmbeddings = await embedList(gallery, model, options.batchSize);
  const probeEmbeddings = await embedList(probes, model, options.batchSize);
  const result: IdentificationResult = await evaluateIdentification(galleryEmbeddings, labelsOf(gallery), probeEmbeddings, labelsOf(probes), {
    ranks: [1, 5],
    matmul: torchMatmul,
    ...(options.galleryChunk !== undefined ? { galleryChunkSize: options.galleryChunk } : {}),
  });
  if (result.evaluatedProbes === 0) {
    throw new Error(`no probe in ${probes.listPath} has a label that occurs in the gallery ${gallery.listPath}; rank accuracies are undefined`);
  }
  if (json) {
    io.stdout.write(
      `${JSON.stringify({
        target: 'identification',
        gallery: gallery.listPath,
        probe: probes.listPath,
        gallery_size: result.galleryRows,
        probes: result.probes,
        evaluated_probes: result.evaluatedProbes,
        probes_without_mate: result.probesWithoutMate,
        rank1: result.rank1,
        rank5: result.rank5,
      })}\n`,
    );
    return;
  }
  const cells = [
    ['gallery', 'probes', 'evaluated', 'rank-1', 'rank-5'],
    [String(result.galleryRows), String(result.probes), String(result.evaluatedProbes), fixed(result.rank1 ?? NaN, 5), fixed(result.rank5 ?? NaN, 5)],
  ];
  io.stdout.write(`${describeModel(model)}\ngallery ${gallery.listPath}, probes ${probes.listPath}\n`);
  for (const line of cells) io.stdout.write(`${line.map((c) => c.padStart(10)).join('  ')}\n`);
  if (result.probesWithoutMate > 0) io.stdout.write(`(${result.probesWithoutMate} probes have no gallery image of their identity and are not counted)\n`);
}

const DATASET_FORMATS = ['list', 'rec', 'folder', 'base64'] as const;

async function runClassification(io: EvalCommandIO, json: boolean, model: LoadedBackbone, data: string, format: string | undefined, batchSize: number | undefined): Promise<void> {
  if (format !== undefined && !(DATASET_FORMATS as readonly string[]).includes(format)) throw new UsageError(`--format must be one of ${DATASET_FORMATS.join(', ')}, got ${JSON.stringify(format)}`);
  const [{ openTrainingData }, { readMeta }, { checkpointCenterRows }, { centerRanker, classifyDataset }, { classificationJson, formatClassification }, { backboneEmbedFunction }, { withFoldedBatchNorm }] = await Promise.all([
    import('../data/dataset-spec.js'),
    import('../checkpoint/format.js'),
    import('../checkpoint/centers.js'),
    import('./classify.js'),
    import('./classify-report.js'),
    import('./backbone-verification.js'),
    import('../models/fold-batch-norm.js'),
  ]);
  const checkpointDir = model.checkpointDir as string;
  const meta = readMeta(checkpointDir);
  const source = await openTrainingData(format === undefined ? { type: 'auto', path: data } : { type: format as (typeof DATASET_FORMATS)[number], path: data }, model.imageSize[0]);
  try {
    const ranker = centerRanker(() => checkpointCenterRows(checkpointDir, meta), { dim: meta.embeddingSize, classes: meta.numClasses });
    const result = await withFoldedBatchNorm(model.backbone, (folded) =>
      classifyDataset(source, backboneEmbedFunction(folded), ranker, {
        classes: meta.numClasses,
        dim: meta.embeddingSize,
        imageSize: model.imageSize,
        datasetName: data,
        ...(batchSize !== undefined ? { batchSize } : {}),
      }),
    );
    if (json) io.stdout.write(`${JSON.stringify(classificationJson(result, data))}\n`);
    else io.stdout.write(`${describeModel(model)}\n${formatClassification(result, data)}`);
  } finally {
    await source.close?.();
  }
}

/** `plsc eval`. Returns 0 on success, 1 when evaluation fails, 2 on a usage error. */
export async function evalCommand(argv: string[], io: EvalCommandIO = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const options = {
    checkpoint: { type: 'string' },
    model: { type: 'string' },
    backbone: { type: 'string' },
    'emb-size': { type: 'string' },
    'image-size': { type: 'string' },
    bin: { type: 'string', multiple: true },
    'dataset-dir': { type: 'string' },
    identify: { type: 'boolean' },
    gallery: { type: 'string' },
    probe: { type: 'string' },
    'gallery-chunk': { type: 'string' },
    classify: { type: 'boolean' },
    data: { type: 'string' },
    format: { type: 'string' },
    'batch-size': { type: 'string' },
    json: { type: 'boolean' },
  } as const;
  return runCommand({ name: 'eval', usage: EVAL_USAGE, options, io }, argv, async ({ values }) => {
    if ((values.checkpoint === undefined) === (values.model === undefined)) throw new UsageError('give exactly one of --checkpoint DIR and --model FILE');
    const bins = values.bin ?? [];
    if (!values.classify && (values.data !== undefined || values.format !== undefined)) throw new UsageError('--data/--format need --classify');
    if (values.classify) {
      if (values.checkpoint === undefined) throw new UsageError('--classify needs --checkpoint DIR (the class centres live in its FC shards)');
      if (values.data === undefined) throw new UsageError('--classify needs --data DATASET');
      if (bins.length > 0 || values.identify) throw new UsageError('--classify runs alone: not with --bin or --identify');
    } else if (values.identify) {
      if (values.gallery === undefined || values.probe === undefined) throw new UsageError('--identify needs --gallery LIST and --probe LIST');
      if (bins.length > 0) throw new UsageError('--bin is for verification; run it separately from --identify');
    } else {
      if (values.gallery !== undefined || values.probe !== undefined) throw new UsageError('--gallery/--probe need --identify');
      if (bins.length === 0) throw new UsageError('give at least one --bin FILE (or --identify)');
    }
    const settings = {
      bins,
      embeddingSize: integerFlag(values['emb-size'], 'emb-size'),
      imageSize: integerFlag(values['image-size'], 'image-size'),
      batchSize: integerFlag(values['batch-size'], 'batch-size'),
      galleryChunk: integerFlag(values['gallery-chunk'], 'gallery-chunk'),
    };

    let model: LoadedBackbone | null = null;
    try {
      const json = values.json ?? false;
      // Inputs are checked before the model is built, so a typo fails at once.
      const { resolveTarget } = await import('./backbone-verification.js');
      const targets = settings.bins.map((target) => ({ target, path: resolveTarget(target, values['dataset-dir']) }));
      let lists: [ListFileSource, ListFileSource] | null = null;
      if (values.identify) {
        const { ListFileSource } = await import('../data/list-file.js');
        lists = [await ListFileSource.open(values.gallery as string), await ListFileSource.open(values.probe as string)];
      }
      const { loadBackboneForEval } = await import('./load-backbone.js');
      model = await loadBackboneForEval({
        ...(values.checkpoint !== undefined ? { checkpoint: values.checkpoint } : { model: values.model as string }),
        ...(values.backbone !== undefined ? { backbone: values.backbone } : {}),
        ...(settings.embeddingSize !== undefined ? { embeddingSize: settings.embeddingSize } : {}),
        ...(settings.imageSize !== undefined ? { imageSize: settings.imageSize } : {}),
      });
      if (model.imageSizeAssumed) {
        io.stderr.write(`plsc eval: warning: ${model.weightsPath} records no input size; evaluating at ${model.imageSize.join('x')} (pass --image-size if the model was trained at another size)\n`);
      }
      if (values.classify) await runClassification(io, json, model, values.data as string, values.format, settings.batchSize);
      else if (lists !== null) await runIdentification(io, json, model, lists[0], lists[1], settings);
      else await runVerification(io, json, model, targets, settings.batchSize);
      return 0;
    } finally {
      model?.backbone.dispose();
    }
  });
}
