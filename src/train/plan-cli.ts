// `plsc plan`: memory per worker of a run before starting it; `--measure-activations` measures the
// built-in backbones' activation memory that the plan uses (and with --write records it).
import { writeFileSync } from 'node:fs';
import { formatBytes } from '../cli-kit/format.js';
import { UsageError, integerFlag, numberFlag, oneOf, required, runCommand } from '../cli-kit/args.js';
import type { MemoryPlan } from './plan.js';

export const PLAN_USAGE = `usage: plsc plan --classes N --emb D --batch B --sample-rate R [options] [--json]

  --classes N          classes of the run                                         (required)
  --emb D              embedding width                                            (required)
  --batch B            images per worker per step                                 (required)
  --sample-rate R      Partial FC sample rate, (0, 1]                             (required)
  --storage S          class weight and momentum storage: float32 (default), bfloat16, float16
  --workers W          workers of the job (class shards; default 1)
  --nproc-per-node K   of them, on this machine (default W): what must fit here
  --model M            backbone (default iresnet50; a name or file.js#factory)
  --image-size S       input side (default 112)
  --activation-bytes A backbone activation bytes per sample, if you measured them yourself
  --json               one JSON object (bytes_per_class, per_worker_bytes, parts, fits, ...)

Prints the bytes one worker of a dist_* run (sharded classes, sparse momentum update) needs: class
weights and momentum, the kept logits and the head's working set, backbone parameters, gradients,
optimizer state and data-parallel buckets, and activations, and whether K workers fit in this
machine's memory. The activations per sample of the built-in backbones were measured with
  plsc plan --measure-activations --write src/train/measured-activations.ts
(other models are measured when planned).

  plsc plan --classes 10000000 --emb 512 --batch 128 --sample-rate 0.1 --workers 8 --nproc-per-node 8`;

function planLines(plan: MemoryPlan): string[] {
  const p = plan.parts;
  const row = (label: string, bytes: number, note = ''): string => `  ${label.padEnd(22)} ${formatBytes(bytes).padStart(11)}${note === '' ? '' : `   ${note}`}`;
  return [
    `plsc plan: ${plan.classes} classes x ${plan.emb} over ${plan.workers} worker(s): ${plan.classes_per_worker} classes per worker, ${plan.active_classes_per_worker} used per step (sample rate ${plan.sample_rate}); ` +
      `${plan.model} ${plan.image_size}x${plan.image_size}, batch ${plan.batch} per worker`,
    row('class weights', p.class_weights, plan.storage),
    row('class momentum', p.class_momentum, plan.storage),
    row('logits', p.logits, `${plan.active_classes_per_worker} classes x ${plan.batch * plan.workers} samples (global batch), float32`),
    row('class bookkeeping', p.class_bookkeeping, 'norms, sampled indices'),
    row('head tile', p.head_tile),
    row('backbone parameters', p.backbone_parameters, `${plan.backbone_parameter_count} parameters`),
    row('backbone gradients', p.backbone_gradients),
    row('backbone optimizer', p.backbone_optimizer, 'SGD momentum'),
    row('gradient buckets', p.gradient_buckets, plan.workers > 1 ? 'data parallel' : 'one worker: none'),
    row('activations', p.activations, `${formatBytes(plan.activation_bytes_per_sample)} per sample, ${plan.activation_source}`),
    row('per worker', plan.per_worker_bytes, `head ${plan.bytes_per_class.toFixed(0)} bytes per class`),
    row(`this machine (${plan.workers_here})`, plan.machine_bytes, `of ${formatBytes(plan.total_memory_bytes)}: ${plan.fits ? 'fits' : 'does NOT fit'}`),
  ];
}

/** `plsc plan`. 0: planned (fits or not); 1: failed; 2: usage error. */
export async function planCommand(argv: string[]): Promise<number> {
  const options = {
    classes: { type: 'string' },
    emb: { type: 'string' },
    batch: { type: 'string' },
    'sample-rate': { type: 'string' },
    storage: { type: 'string' },
    workers: { type: 'string' },
    'nproc-per-node': { type: 'string' },
    model: { type: 'string' },
    'image-size': { type: 'string' },
    'activation-bytes': { type: 'string' },
    json: { type: 'boolean' },
    'measure-activations': { type: 'boolean' },
    models: { type: 'string' },
    write: { type: 'string' },
    batches: { type: 'string' },
    'in-process': { type: 'boolean' },
  } as const;
  return runCommand({ name: 'plan', usage: PLAN_USAGE, options }, argv, async ({ values }) => {
    if (values['measure-activations']) {
      const { measureActivationBytesPerSample, measureActivationInThisProcess, measuredActivationsSource } = await import('./activation-memory.js');
      const models = (values.models ?? 'mobilefacenet,iresnet18,iresnet34,iresnet50,iresnet100').split(',').map((m) => m.trim()).filter((m) => m !== '');
      const imageSize = integerFlag(values['image-size'], 'image-size', 8) ?? 112;
      const emb = integerFlag(values.emb, 'emb', 1) ?? 512;
      const batches = (values.batches ?? '1,3').split(',').map((b) => Number(b));
      if (batches.length !== 2 || !batches.every((b) => Number.isInteger(b) && b >= 1) || (batches[0] as number) >= (batches[1] as number)) {
        throw new UsageError(`--batches must be two batch sizes a,b with 1 <= a < b, got '${values.batches}'`);
      }
      const spec = { imageSize, embeddingSize: emb, batches: batches as [number, number] };
      const measured = [];
      for (const model of models) {
        // Each model in a fresh process: peak RSS only grows.
        const m = values['in-process'] ? await measureActivationInThisProcess({ model, ...spec }) : measureActivationBytesPerSample({ model, ...spec });
        measured.push(m);
        console.log(values.json ? JSON.stringify(m) : `${model.padEnd(14)} ${imageSize}x${imageSize}  ${formatBytes(m.bytesPerSample)} per sample (batches ${m.batches.join(' and ')})`);
      }
      if (values.write !== undefined) {
        const command = ['plsc plan --measure-activations', ...(values.models ? [`--models ${values.models}`] : []), ...(values['image-size'] ? [`--image-size ${imageSize}`] : []), ...(values.emb ? [`--emb ${emb}`] : []), ...(values.batches ? [`--batches ${values.batches}`] : []), `--write ${values.write}`].join(' ');
        writeFileSync(values.write, measuredActivationsSource(measured, command));
        if (!values.json) console.log(`written: ${values.write}`);
      }
      return 0;
    }
    const storage = oneOf(values.storage, 'storage', ['float32', 'bfloat16', 'float16'] as const, 'float32');
    const workers = integerFlag(values.workers, 'workers', 1) ?? 1;
    const workersHere = integerFlag(values['nproc-per-node'], 'nproc-per-node', 1);
    if (workersHere !== undefined && workersHere > workers) throw new UsageError(`--nproc-per-node (${workersHere}) cannot exceed --workers (${workers})`);
    const planOptions = {
      classes: required(integerFlag(values.classes, 'classes', 1), 'classes'),
      emb: required(integerFlag(values.emb, 'emb', 1), 'emb'),
      batch: required(integerFlag(values.batch, 'batch', 1), 'batch'),
      sampleRate: required(numberFlag(values['sample-rate'], 'sample-rate', { greaterThan: 0 }), 'sample-rate'),
      storage,
      workers,
      ...(workersHere !== undefined ? { workersHere } : {}),
      ...(values.model !== undefined ? { model: values.model } : {}),
      ...(values['activation-bytes'] !== undefined ? { activationBytesPerSample: required(numberFlag(values['activation-bytes'], 'activation-bytes', { atLeast: 0 }), 'activation-bytes') } : {}),
      ...(values['image-size'] !== undefined ? { imageSize: required(integerFlag(values['image-size'], 'image-size', 8), 'image-size') } : {}),
    };
    if (planOptions.sampleRate > 1) throw new UsageError(`--sample-rate must be in (0, 1], got '${values['sample-rate']}'`);
    if (planOptions.classes < workers) throw new UsageError(`--classes (${planOptions.classes}) must be at least --workers (${workers})`);
    const { planMemory } = await import('./plan.js');
    const plan = await planMemory(planOptions);
    if (values.json) console.log(JSON.stringify(plan));
    else for (const line of planLines(plan)) console.log(line);
    return 0;
  });
}
