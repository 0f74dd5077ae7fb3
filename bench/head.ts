// `plsc bench head`: one step (forward + backward + sparse-momentum update) of the sharded head, the
// step's three GEMMs alone, peak RSS and bytes per class, and (with --peer pytorch) the same
// workload written insightface-style in PyTorch. Prints measurements; asserts nothing.
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ops as F, tidy, manualSeed, getNumThreads, emptyCache, profileOps, PartialFC, CombinedMarginLoss, sampledClassCount, type OpProfileEntry, type Tensor } from '../src/index.js';
import { initProcessGroup } from '../src/distributed/process-group.js';
import { readDistributedEnv } from '../src/distributed/env.js';
import { launch } from '../src/distributed/launcher.js';
import { median, runTorchPeer } from './peer.js';
import { CLASS_STORAGES, loadRows, rowUpdate, type ClassStorage, type RowSelection } from '../src/torch/fused.js';

export interface HeadBenchResult {
  classes: number;
  emb: number;
  batch: number;
  sample_rate: number;
  /** dtype of the class centres and their momentum (PartialFC classStorage). */
  storage: ClassStorage;
  nproc: number;
  threads: number;
  /** Classes per tile (PartialFC updateBlockRows) and the recompute chunk (null: logits kept). */
  tile_rows: number;
  chunk_size: number | null;
  step_ms: number;
  /** The step's three GEMMs (four with chunk_size: the logits are recomputed) alone, shaped and tiled as the step runs them. */
  gemm_ms: number;
  /** Median over alternating (step, GEMMs) pairs of step / GEMMs. */
  step_over_gemm: number;
  /** The step's row kernels alone over its rows (gather with norms, then the in-place update): its memory traffic over the class store. */
  row_kernels_ms: number;
  /** The same three GEMMs as one call each ([B, C] logits at once), measured once, for reference (float32 storage only, else null). */
  gemm_single_call_ms: number | null;
  peak_rss_bytes: number;
  bytes_per_class: number;
  weight_and_momentum_bytes_per_class: number;
  rss_per_class_ratio: number;
  torch_step_ms: number | null;
  torch_peak_rss_bytes: number | null;
  ours_over_torch: number | null;
  /** Why the PyTorch peer gave no numbers (it was asked for but failed), else null. */
  torch_error: string | null;
  /** With --profile: one more step's wall time and its aten operators, slowest first (rank 0). */
  profile: { step_ms: number; ops: OpProfileEntry[] } | null;
}

function timeMs(fn: () => void): number {
  const start = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/** Measures one rank's head; returns this rank's numbers (rank 0's are reported). */
interface MeasureOptions {
  classes: number;
  emb: number;
  batch: number;
  sampleRate: number;
  warmup: number;
  repeats: number;
  tileRows: number | undefined;
  chunkSize: number | undefined;
  storage: ClassStorage;
  profile: boolean;
}

async function measureRank(options: MeasureOptions) {
  const group = readDistributedEnv() === null ? undefined : await initProcessGroup();
  manualSeed(0);
  const baselineRss = process.memoryUsage().rss;
  const head = new PartialFC({
    embeddingSize: options.emb,
    numClasses: options.classes,
    sampleRate: options.sampleRate,
    margin: CombinedMarginLoss.arcface(),
    update: 'fused',
    classStorage: options.storage,
    fusedSgd: { lr: 0.1, momentum: 0.9, weightDecay: 5e-4 },
    ...(options.tileRows !== undefined ? { updateBlockRows: options.tileRows } : {}),
    ...(options.chunkSize !== undefined ? { chunkSize: options.chunkSize } : {}),
    ...(group ? { group } : {}),
  });
  const embeddings = F.randn([options.batch, options.emb]).requiresGrad_();
  const labels = F.randint(0, options.classes, [options.batch]);
  const step = (): void =>
    tidy(() => {
      head.forward(embeddings, labels).loss.backward();
      embeddings.grad = null;
    });
  for (let i = 0; i < options.warmup; i++) step();
  const firstStepMs = timeMs(step);
  // The high-water mark of the step alone, before the GEMM-only loop's buffers exist.
  const peakRss = process.resourceUsage().maxRSS * 1024;
  let profile: { step_ms: number; ops: OpProfileEntry[] } | null = null;
  if (options.profile) {
    const profiled = profileOps(step);
    profile = { step_ms: profiled.totalMs, ops: profiled.ops };
  }
  const numLocal = head.numLocalClasses;
  const active = sampledClassCount(numLocal, options.sampleRate);
  const globalBatch = options.batch * (group?.worldSize ?? 1);

  // The step's GEMMs per tile of `tile` classes (class-major logits) as the step runs them:
  // L = W_t Xn^T, dXn += G_t^T W_t, dW_t = G_t Xn. They read the shard's rows (float32, every class)
  // or, as the step does for sampled rows and 16-bit stores, a float32 tile buffer; the logits go to
  // a buffer of every active row (kept for backward), or to one tile's buffer when recomputed.
  const tile = Math.min(head.updateBlockRows, active);
  const recomputes = head.chunkSize < active;
  const readsShard = options.storage === 'float32' && active === numLocal;
  const x = F.randn([globalBatch, options.emb]);
  const xt = F.contiguous(x.t());
  const weightTile = readsShard ? null : F.randn([tile, options.emb]);
  // The buffers are taken per call, as the step takes its own: the two alternate on the same
  // cached blocks (at 10M classes there is no room for both sets at once).
  // The active rows in tiles, as the step walks them; each tile in its own scope.
  const forEachTile = (body: (start: number, rows: number) => void): void => {
    for (let start = 0; start < active; start += tile) tidy(() => body(start, Math.min(tile, active - start)));
  };
  const gemms = (): void =>
    tidy(() => {
      const logits = F.empty([recomputes ? tile : active, globalBatch]);
      const weightGrad = F.empty([tile, options.emb]);
      const featureGrad = F.zeros([globalBatch, options.emb]);
      forEachTile((start, rows) => {
        const w = weightTile === null ? F.narrow(head.weight, 0, start, rows) : F.narrow(weightTile, 0, 0, rows);
        const out = F.narrow(logits, 0, recomputes ? 0 : start, rows);
        F.mmOut(w, xt, out);
        if (recomputes) F.mmOut(w, xt, out);
        F.addmm_(featureGrad, out.t(), w);
        F.mmOut(out, x, F.narrow(weightGrad, 0, 0, rows));
      });
    });
  gemms();

  // The row kernels alone on rows like the step's (the shard's, or `active` random sorted rows),
  // tile by tile: widen into the tile buffer with norms (norms only where the GEMMs read the shard),
  // then the SGD update with a zero gradient, lr 0 and momentum 1 (values unchanged). It is the
  // step's memory traffic over the class store.
  const momentum = head.namedBuffers().find(([name]) => name === 'weight_momentum')?.[1];
  if (momentum === undefined) throw new Error('bench head: the fused head has no weight_momentum buffer to time the row update on');
  const sampledRows = active === numLocal ? null : F.sort(F.narrow(F.randperm(numLocal), 0, 0, active))[0];
  const rowBuffer = F.empty([tile, options.emb]);
  const previousRows = F.empty([tile, options.emb]);
  const zeroGrad = F.zeros([tile, options.emb]);
  const norms = F.empty([tile]);
  const squaredNorms = F.empty([tile]);
  const rowKernels = (): void =>
    forEachTile((start, rows) => {
      const selection: RowSelection = sampledRows === null ? { first: start, count: rows } : { index: F.narrow(sampledRows, 0, start, rows) };
      const part = (t: Tensor): Tensor => F.narrow(t, 0, 0, rows);
      // Rows the GEMMs read from the shard itself are not widened into a buffer (norms only).
      loadRows(head.weight, selection, readsShard ? null : part(rowBuffer), part(norms), part(squaredNorms), 1e-12);
      rowUpdate(head.weight, momentum, selection, part(zeroGrad), part(squaredNorms), { lr: 0, momentum: 1, weightDecay: 0 }, [0, 0], readsShard ? null : part(previousRows));
    });
  rowKernels();
  // This machine's speed drifts by tens of percent within a minute: the step and its GEMMs are
  // timed in alternation, and the ratio is the median of the pairs' ratios.
  const stepSamples: number[] = [];
  const gemmSamples: number[] = [];
  const pairRatios: number[] = [];
  const rowSamples: number[] = [];
  for (let r = 0; r < options.repeats; r++) {
    const stepMs = r === 0 ? firstStepMs : timeMs(step);
    const gemmMs = timeMs(gemms);
    rowSamples.push(timeMs(rowKernels));
    stepSamples.push(stepMs);
    gemmSamples.push(gemmMs);
    pairRatios.push(stepMs / gemmMs);
  }
  // A 16-bit store would need a shard-sized float32 copy for it: not measured there.
  const singleCallMs =
    options.storage !== 'float32'
      ? null
      : timeMs(() =>
          tidy(() => {
            const w = F.narrow(head.weight, 0, 0, active);
            const g = F.mm(x, w.t());
            void [F.mm(g, w), F.mm(g.t(), x)];
          }),
        );
  for (const t of [x, xt, weightTile, sampledRows, rowBuffer, previousRows, zeroGrad, norms, squaredNorms]) t?.dispose();
  const result = {
    step_ms: median(stepSamples),
    gemm_ms: median(gemmSamples),
    step_over_gemm: median(pairRatios),
    row_kernels_ms: median(rowSamples),
    gemm_single_call_ms: singleCallMs,
    tile_rows: tile,
    chunk_size: recomputes ? head.chunkSize : null,
    peak_rss_bytes: peakRss,
    bytes_per_class: (peakRss - baselineRss) / numLocal,
    num_local: numLocal,
    profile,
  };
  head.dispose();
  embeddings.dispose();
  labels.dispose();
  emptyCache();
  group?.destroy();
  return result;
}

const USAGE = 'usage: plsc bench head [--classes N] [--emb 512] [--batch 256] [--sample-rate 1.0] [--storage float32|bfloat16|float16] [--nproc W] [--tile-rows R] [--chunk-size K] [--peer pytorch] [--profile] [--warmup 1] [--repeats 5] [--json]';

export async function benchHead(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      classes: { type: 'string', default: '1000000' },
      emb: { type: 'string', default: '512' },
      batch: { type: 'string', default: '256' },
      'sample-rate': { type: 'string', default: '1.0' },
      storage: { type: 'string', default: 'float32' },
      nproc: { type: 'string', default: '1' },
      'tile-rows': { type: 'string' },
      'chunk-size': { type: 'string' },
      peer: { type: 'string' },
      warmup: { type: 'string', default: '1' },
      repeats: { type: 'string', default: '5' },
      json: { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      'worker-out': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const num = (name: string, value: string | undefined): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got ${value}\n${USAGE}`);
    return n;
  };
  const storage = values.storage as ClassStorage;
  if (!CLASS_STORAGES.includes(storage)) throw new Error(`--storage takes ${CLASS_STORAGES.join(', ')}, got ${values.storage}\n${USAGE}`);
  const options = {
    storage,
    classes: num('classes', values.classes),
    emb: num('emb', values.emb),
    batch: num('batch', values.batch),
    sampleRate: num('sample-rate', values['sample-rate']),
    warmup: Number(values.warmup),
    repeats: num('repeats', values.repeats),
    tileRows: values['tile-rows'] === undefined ? undefined : num('tile-rows', values['tile-rows']),
    chunkSize: values['chunk-size'] === undefined ? undefined : num('chunk-size', values['chunk-size']),
    profile: values.profile === true,
  };
  const nproc = num('nproc', values.nproc);
  if (values.peer !== undefined && values.peer !== 'pytorch') throw new Error(`--peer takes 'pytorch', got ${values.peer}`);

  // A worker started by the multi-process form below: measure and (rank 0) write the numbers.
  if (values['worker-out'] !== undefined) {
    const measured = await measureRank(options);
    if (process.env.RANK === '0') (await import('node:fs')).writeFileSync(values['worker-out'], JSON.stringify(measured));
    return 0;
  }

  let measured: Awaited<ReturnType<typeof measureRank>>;
  if (nproc === 1) {
    measured = await measureRank(options);
  } else {
    const dir = mkdtempSync(join(tmpdir(), 'plsc-bench-head-'));
    const out = join(dir, 'rank0.json');
    const script = fileURLToPath(new URL('../bin/plsc.js', new URL('../', import.meta.url)));
    const threads = String(Math.max(1, Math.floor(getNumThreads() / nproc)));
    const result = await launch({
      nprocPerNode: nproc,
      command: script,
      args: ['bench', 'head', ...argv.filter((a) => a !== '--json'), '--worker-out', out],
      env: { PLSC_NUM_THREADS: threads },
    });
    if (result.exitCode !== 0) throw new Error(`bench head workers failed (exit ${result.exitCode})`);
    measured = JSON.parse(readFileSync(out, 'utf8')) as typeof measured;
    rmSync(dir, { recursive: true, force: true });
  }
  let peer: { step_ms: number; peak_rss_bytes: number } | null = null;
  let peerError: string | null = null;
  if (values.peer === 'pytorch') {
    try {
      peer = runTorchPeer<{ step_ms: number; peak_rss_bytes: number }>(
        'torch_head.py',
        [String(options.classes), String(options.emb), String(options.batch * nproc), String(options.sampleRate), String(getNumThreads()), String(options.warmup), String(options.repeats)],
        3_600_000,
      );
    } catch (err) {
      peerError = (err as Error).message;
    }
  }
  const weightAndMomentum = 2 * options.emb * (storage === 'float32' ? 4 : 2);
  const report: HeadBenchResult = {
    classes: options.classes,
    emb: options.emb,
    batch: options.batch,
    sample_rate: options.sampleRate,
    storage,
    nproc,
    threads: getNumThreads(),
    tile_rows: measured.tile_rows,
    chunk_size: measured.chunk_size,
    step_ms: measured.step_ms,
    gemm_ms: measured.gemm_ms,
    step_over_gemm: measured.step_over_gemm,
    row_kernels_ms: measured.row_kernels_ms,
    gemm_single_call_ms: measured.gemm_single_call_ms,
    peak_rss_bytes: measured.peak_rss_bytes,
    bytes_per_class: measured.bytes_per_class,
    weight_and_momentum_bytes_per_class: weightAndMomentum,
    rss_per_class_ratio: measured.bytes_per_class / weightAndMomentum,
    torch_step_ms: peer?.step_ms ?? null,
    torch_peak_rss_bytes: peer?.peak_rss_bytes ?? null,
    ours_over_torch: peer ? measured.step_ms / peer.step_ms : null,
    torch_error: peerError,
    profile: measured.profile,
  };
  if (values.json) {
    console.log(JSON.stringify(report));
    return 0;
  }
  const fmt = (v: number | null, digits = 1): string => (v === null ? 'n/a' : v.toFixed(digits));
  console.log(`sharded head: ${options.classes} classes x ${options.emb} (${storage}), batch ${options.batch}/worker, sample rate ${options.sampleRate}, ${nproc} worker(s)`);
  console.log(`  step (fwd+bwd+update)  ${fmt(report.step_ms)} ms   its ${report.chunk_size === null ? 3 : 4} GEMMs alone ${fmt(report.gemm_ms)} ms   ratio ${fmt(report.step_over_gemm, 2)}   (tiles of ${report.tile_rows} classes${report.chunk_size === null ? '' : ', logits recomputed'})`);
  console.log(`  its row kernels alone (gather + update of the ${report.sample_rate < 1 ? 'sampled rows' : 'rows'}): ${fmt(report.row_kernels_ms)} ms`);
  console.log(`  the 3 GEMMs as one call each (reference): ${fmt(report.gemm_single_call_ms)} ms`);
  console.log(`  peak RSS ${fmt(report.peak_rss_bytes / 2 ** 20, 0)} MiB   ${fmt(report.bytes_per_class, 0)} bytes/class   (${fmt(report.rss_per_class_ratio, 2)}x weight+momentum)`);
  console.log(`  PyTorch (insightface-style) ${fmt(report.torch_step_ms)} ms   ours/PyTorch ${fmt(report.ours_over_torch, 2)}${peerError ? `   (peer failed: ${peerError})` : ''}`);
  if (report.profile !== null) {
    const { step_ms: profiledMs, ops } = report.profile;
    const inOps = ops.reduce((sum, entry) => sum + entry.totalMs, 0);
    console.log(`  one more step, by aten operator (${fmt(profiledMs)} ms; ${fmt(profiledMs - inOps)} ms outside operators):`);
    for (const entry of ops.slice(0, 16)) {
      console.log(`    ${entry.op.padEnd(36)} ${String(entry.calls).padStart(6)} calls ${fmt(entry.totalMs).padStart(9)} ms ${fmt((100 * entry.totalMs) / profiledMs).padStart(5)}%`);
    }
  }
  return 0;
}
