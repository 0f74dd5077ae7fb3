// A worker group started again after a failure (`plsc launch --max-restarts`, torchrun, or
// `plsc train --nproc N --max-restarts R`: TORCHELASTIC_RESTART_COUNT > 0) resumes by itself from the
// newest checkpoint in checkpointDir whose files all match their recorded sha256 digests. Rank 0
// chooses; the other ranks learn its choice, so every rank loads the same step.
import { join, resolve } from 'node:path';
import * as F from '../torch/ops.js';
import { tidy } from '../torch/scope.js';
import type { ProcessGroup } from '../distributed/process-group.js';
import { checkpointName, listCheckpoints } from '../checkpoint/format.js';
import { verifyCheckpointStep } from './checkpoint-verify.js';

type Env = Readonly<Record<string, string | undefined>>;

/** TORCHELASTIC_RESTART_COUNT (0 when unset: the first start of the group). */
export function restartCountOf(env: Env = process.env): number {
  const raw = env.TORCHELASTIC_RESTART_COUNT?.trim();
  if (raw === undefined || raw === '') return 0;
  if (!/^\d+$/.test(raw)) throw new Error(`invalid environment variable TORCHELASTIC_RESTART_COUNT=${JSON.stringify(raw)}: expected a non-negative integer`);
  return Number(raw);
}

export interface RestartCheckpointChoice {
  /** The newest checkpoint whose files all verified, or null. */
  checkpoint: { step: number; path: string } | null;
  /** Newer checkpoints passed over, each with the first problem found. */
  skipped: { path: string; problem: string }[];
}

/** The newest checkpoint in `checkpointDir` that verifies completely (digests, headers, finite values). */
export function newestVerifiedCheckpoint(checkpointDir: string): RestartCheckpointChoice {
  const skipped: RestartCheckpointChoice['skipped'] = [];
  for (const candidate of listCheckpoints(checkpointDir).reverse()) {
    const check = verifyCheckpointStep(candidate.path);
    if (check.ok) return { checkpoint: candidate, skipped };
    const bad = check.files.find((f) => !f.ok);
    skipped.push({ path: candidate.path, problem: bad === undefined ? 'unreadable' : `${bad.file}: ${bad.detail}` });
  }
  return { checkpoint: null, skipped };
}

/**
 * Collective (every rank calls it). Returns the checkpoint directory a restarted group resumes from,
 * or `configured` (the config's resume setting) when this is not a restart or checkpointDir holds no
 * verified checkpoint. Rank 0 says what it chose on `log`.
 */
export function resumeAfterRestart(
  checkpointDir: string,
  configured: string | null,
  group: ProcessGroup,
  env: Env = process.env,
  log: (line: string) => void = (line) => console.error(line),
): string | null {
  const restart = restartCountOf(env);
  if (restart === 0) return configured;
  let step = -1;
  if (group.rank === 0) {
    const choice = newestVerifiedCheckpoint(checkpointDir);
    const of = env.TORCHELASTIC_MAX_RESTARTS !== undefined ? ` of ${env.TORCHELASTIC_MAX_RESTARTS}` : '';
    for (const s of choice.skipped) log(`plsc train: restart ${restart}${of}: skipping checkpoint ${s.path}: ${s.problem}`);
    if (choice.checkpoint !== null) {
      step = choice.checkpoint.step;
      log(`plsc train: restart ${restart}${of}: resuming from ${choice.checkpoint.path} (step ${step}; every file matches its recorded sha256)`);
    } else if (configured !== null) {
      log(`plsc train: restart ${restart}${of}: no verified checkpoint in ${resolve(checkpointDir)}; resuming from ${configured} as configured`);
    } else {
      log(`plsc train: restart ${restart}${of}: no verified checkpoint in ${resolve(checkpointDir)}; starting fresh from step 0`);
    }
  }
  if (group.worldSize > 1) {
    step = tidy(() => {
      const chosen = F.tensor(new Float64Array([step]));
      return (group.broadcast(chosen, 0).wait().toArray() as number[])[0] as number;
    });
  }
  return step >= 0 ? join(checkpointDir, checkpointName(step)) : configured;
}
