// `plsc export`: a training checkpoint to model.onnx (parity-checked) and optional class centres.
import { formatBytes, shellQuote, shown } from '../cli-kit/format.js';
import { UsageError, integerFlag, numberFlag, required, runCommand } from '../cli-kit/args.js';

const EXPORT_USAGE = `usage: plsc export --checkpoint DIR --out model.onnx [options]

  --checkpoint DIR      a step-XXXXXXXX checkpoint, or a checkpoint directory (its newest step)  (required)
  --out PATH            where the ONNX model goes                                                (required)
  --opset N             ONNX opset, 13..21 (default 17)
  --dynamic-batch       symbolic batch dimension N (default: fixed batch of --batch-size)
  --batch-size N        the fixed batch size without --dynamic-batch (default 1)
  --centers PATH        also write the L2-normalized class centres of every class (safetensors,
                        tensor 'centers' [C, D]) for plsc serve --centers
  --fp16                store the centres as float16 (half the size)
  --tolerance X         largest accepted max abs difference of the parity check (default 1e-4)

The model takes input [N, 3, H, W] float32 and outputs embedding [N, D] float32. Before it is written,
onnxruntime and libtorch run it on 2 random inputs in [-1, 1) and must agree to 1e-4 (max abs difference).`;

/** `plsc export`. Returns 0 on success, 1 when the export or its parity check fails, 2 on usage errors. */
export async function exportCommand(argv: string[]): Promise<number> {
  const options = {
    checkpoint: { type: 'string' },
    out: { type: 'string' },
    opset: { type: 'string' },
    'dynamic-batch': { type: 'boolean' },
    'batch-size': { type: 'string' },
    centers: { type: 'string' },
    fp16: { type: 'boolean' },
    tolerance: { type: 'string' },
  } as const;
  return runCommand({ name: 'export', usage: EXPORT_USAGE, options }, argv, async ({ values }) => {
    const checkpoint = required(values.checkpoint, 'checkpoint');
    const out = required(values.out, 'out');
    const opset = integerFlag(values.opset, 'opset', 1);
    if (opset !== undefined && (opset < 13 || opset > 21)) throw new UsageError(`--opset must be between 13 and 21, got ${opset}`);
    const batchSize = integerFlag(values['batch-size'], 'batch-size', 1);
    if (batchSize !== undefined && values['dynamic-batch']) throw new UsageError('--batch-size fixes the batch dimension; it cannot be combined with --dynamic-batch');
    const tolerance = numberFlag(values.tolerance, 'tolerance', { greaterThan: 0 });
    if (values.fp16 && !values.centers) throw new UsageError('--fp16 applies to --centers; give --centers PATH');

    // Loaded here so that usage errors and --help answer without loading libtorch and onnxruntime.
    const { exportCheckpoint, EXPORT_PARITY_TOLERANCE } = await import('../export/export-checkpoint.js');
    const result = await exportCheckpoint({
      checkpoint,
      out,
      ...(opset !== undefined ? { opset } : {}),
      dynamicBatch: values['dynamic-batch'] ?? false,
      ...(batchSize !== undefined ? { batchSize } : {}),
      ...(values.centers !== undefined ? { centers: values.centers } : {}),
      fp16: values.fp16 ?? false,
      ...(tolerance !== undefined ? { tolerance } : {}),
    });
    printExport(result, { opset, batchSize, tolerance: tolerance ?? EXPORT_PARITY_TOLERANCE });
    return 0;
  });
}

function printExport(
  result: Awaited<ReturnType<typeof import('../export/export-checkpoint.js').exportCheckpoint>>,
  { opset, batchSize, tolerance }: { opset: number | undefined; batchSize: number | undefined; tolerance: number },
): void {
  const { meta, parity, centers } = result;
  const batchDim = result.dynamicBatch ? 'N' : String(batchSize ?? 1);
  console.log(`plsc export: checkpoint ${shown(result.checkpointDir)} (step ${meta.step}, backbone ${meta.backbone}, ${meta.numClasses} classes in ${meta.worldSize} FC shard${meta.worldSize === 1 ? '' : 's'})`);
  console.log(
    `  model    ${shown(result.modelPath)} (${formatBytes(result.modelBytes)}, opset ${opset ?? 17}): input [${batchDim}, ${result.inputShape.join(', ')}] float32 -> embedding [${batchDim}, ${result.embeddingSize}]`,
  );
  console.log(
    `  parity   onnxruntime vs libtorch on ${parity.batch} random inputs: max abs diff ${parity.maxAbsDiff.toExponential(2)} (tolerance ${tolerance}; outputs up to ${parity.maxAbsOutput.toPrecision(4)})`,
  );
  if (centers !== null) {
    console.log(`  centers  ${shown(centers.path)} (${formatBytes(centers.bytes)}): 'centers' [${centers.numClasses}, ${centers.embeddingSize}] ${centers.dtype}, rows L2-normalized, class order of the shards`);
  }
  const isImageModel = result.inputShape.length === 3 && result.inputShape[0] === 3;
  if (isImageModel) {
    const serve = ['plsc', 'serve', '--model', shown(result.modelPath), ...(centers !== null ? ['--centers', shown(centers.path)] : [])];
    console.log(`\nserve it with:\n  ${serve.map(shellQuote).join(' ')}`);
    if (!result.dynamicBatch && (batchSize ?? 1) === 1) console.log('  (fixed batch 1: export with --dynamic-batch to let the server batch concurrent requests)');
  } else {
    console.log(`\nthis backbone takes [${result.inputShape.join(', ')}] inputs, not images: plsc serve (which decodes images) cannot serve it; run it with onnxruntime directly`);
  }
}
