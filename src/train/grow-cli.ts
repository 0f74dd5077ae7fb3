// `plsc grow`: append classes to a checkpoint (libtorch is loaded only once the arguments are valid).
import { shellQuote, shown } from '../cli-kit/format.js';
import { integerFlag, required, runCommand } from '../cli-kit/args.js';

export const GROW_USAGE = `usage: plsc grow --checkpoint DIR --add N [--images DIR_OR_LIST] --out DIR

  --checkpoint DIR   a step-XXXXXXXX checkpoint, or a checkpoint directory (its newest step)  (required)
  --add N            classes to append; they get the ids numClasses..numClasses+N-1          (required)
  --images PATH      images of the new classes: a folder with one sub-folder per new class
                     (sorted names = new classes in order), or a list file 'path<TAB>label' with
                     labels 0..N-1 or numClasses..numClasses+N-1 (a directory holding label.txt too)
  --out DIR          where the grown checkpoint goes (must differ from --checkpoint)       (required)
  --seed S           seed of the random centres (default: the checkpoint's seed)
  --batch-size N     images per backbone forward when imprinting (default 64)

With --images each new class centre is the normalized mean embedding of its images under the
checkpoint's backbone (weight imprinting), scaled to the mean norm of the existing centres: the new
classes are recognized at once, before any training. Without it they are random like a fresh
head's. The FC shards keep the checkpoint's shard count, re-split evenly; momentum of the new rows
is zero. Continue training with the new class count:

  plsc grow --checkpoint output/checkpoints --add 100 --images new-ids/ --out output/grown
  plsc train --config CONFIG.yaml --set classNum=<old+100> --set resume=output/grown`;

/** `plsc grow`. 0: written; 1: failed (bad checkpoint, images); 2: usage error. */
export async function growCommand(argv: string[]): Promise<number> {
  const options = {
    checkpoint: { type: 'string' },
    add: { type: 'string' },
    images: { type: 'string' },
    out: { type: 'string' },
    seed: { type: 'string' },
    'batch-size': { type: 'string' },
  } as const;
  return runCommand({ name: 'grow', usage: GROW_USAGE, options }, argv, async ({ values }) => {
    const checkpoint = required(values.checkpoint, 'checkpoint');
    const out = required(values.out, 'out');
    const add = required(integerFlag(values.add, 'add', 1), 'add');
    const seed = integerFlag(values.seed, 'seed', 0);
    const batchSize = integerFlag(values['batch-size'], 'batch-size', 1);
    const { growCheckpoint } = await import('./grow.js');
    const result = await growCheckpoint({
      checkpoint,
      add,
      out,
      ...(values.images !== undefined ? { images: values.images } : {}),
      ...(seed !== undefined ? { seed } : {}),
      ...(batchSize !== undefined ? { batchSize } : {}),
    });
    const how = result.init === 'imprinted' ? `imprinted from ${result.images} images` : 'random like a fresh head';
    console.log(`plsc grow: ${shown(result.source)} (step ${result.meta.step}, ${result.previousClasses} classes) -> ${shown(result.out)}: ${result.numClasses} classes`);
    console.log(`  new classes ${result.previousClasses}..${result.numClasses - 1}, centres ${how} (existing centres' mean norm ${result.meanCentreNorm.toPrecision(4)})`);
    console.log(`  shards      ${result.shardRows.length} of ${result.shardRows.join(', ')} classes`);
    console.log(`continue: plsc train --config CONFIG.yaml --set classNum=${result.numClasses} --set resume=${shellQuote(shown(result.out))}`);
    return 0;
  });
}
