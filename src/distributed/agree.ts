// "Every rank agrees on a bad input before any collective that depends on it": each rank checks its
// own input, then one small AllGather tells every rank every rank's verdict, and all of them raise
// the same error (naming the rank) or all go on. No rank is left waiting in a large collective for a
// peer that gave up.
import * as F from '../torch/ops.js';
import '../torch/tensor-methods.js';
import { tidy } from '../torch/scope.js';
import type { ProcessGroup } from './process-group.js';

// Longest problem text carried (UTF-8 bytes); longer ones are cut.
const MESSAGE_BYTES = 480;

/**
 * Collective: every rank calls it with its own `problem` (null when its input is fine). Throws a
 * RangeError `${context} on rank r: ${problem}` (lowest such rank; "on rank r" only when there are
 * several ranks) on every rank if any rank has a problem.
 */
export function agreeOnInput(group: ProcessGroup, problem: string | null, context: string): void {
  if (group.worldSize === 1) {
    if (problem !== null) throw new RangeError(`${context}: ${problem}`);
    return;
  }
  const local = new Uint8Array(MESSAGE_BYTES + 1);
  if (problem !== null) {
    local[0] = 1;
    const encoded = new TextEncoder().encode(problem);
    local.set(encoded.subarray(0, MESSAGE_BYTES), 1);
  }
  const gathered = tidy(() => new Uint8Array(group.allGather(F.tensor(local, { dtype: 'uint8' })).wait().toArray()));
  for (let rank = 0; rank < group.worldSize; rank++) {
    const record = gathered.subarray(rank * local.length, (rank + 1) * local.length);
    if (record[0] !== 1) continue;
    const text = record.subarray(1);
    const end = text.indexOf(0);
    const message = new TextDecoder().decode(end === -1 ? text : text.subarray(0, end));
    throw new RangeError(`${context} on rank ${rank}: ${message}`);
  }
}
