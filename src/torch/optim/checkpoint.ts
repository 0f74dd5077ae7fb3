// Optimizer state <-> flat tensor map + string metadata, the shape safetensors files hold.
import { Tensor } from '../tensor.js';
import type { Hyperparameters, OptimizerStateDict, ParamState } from './optimizer.js';

const METADATA_KEY = 'plsc.optimizer';

export interface PackedOptimizerState {
  /** State tensors named `state.<paramIndex>.<field>`. */
  tensors: Record<string, Tensor>;
  /** Param groups, and numeric state such as step counts, as JSON under 'plsc.optimizer'. */
  metadata: Record<string, string>;
}

/**
 * Splits an optimizer state dict into tensors and JSON metadata, e.g. to save it with
 * saveSafetensors(path, packed.tensors, packed.metadata). The tensors are those of `state` (not copies).
 */
export function packOptimizerState<H extends Hyperparameters>(state: OptimizerStateDict<H>): PackedOptimizerState {
  const tensors: Record<string, Tensor> = {};
  const numbers: Record<string, Record<string, number>> = {};
  for (const [index, fields] of Object.entries(state.state)) {
    for (const [field, value] of Object.entries(fields)) {
      if (field.includes('.')) throw new Error(`packOptimizerState: state field '${field}' of parameter ${index} contains '.'`);
      if (value instanceof Tensor) tensors[`state.${index}.${field}`] = value;
      else (numbers[index] ??= {})[field] = value;
    }
  }
  const json = JSON.stringify({ paramGroups: state.paramGroups, numbers });
  return { tensors, metadata: { [METADATA_KEY]: json } };
}

/** The inverse of packOptimizerState (the tensors are used as they are, not copied). */
export function unpackOptimizerState<H extends Hyperparameters>(tensors: Record<string, Tensor>, metadata: Record<string, string>): OptimizerStateDict<H> {
  const json = metadata[METADATA_KEY];
  if (json === undefined) throw new Error(`unpackOptimizerState: metadata has no '${METADATA_KEY}' entry (not an optimizer checkpoint?)`);
  let parsed: { paramGroups: (H & { params: number[] })[]; numbers: Record<string, Record<string, number>> };
  try {
    parsed = JSON.parse(json) as typeof parsed;
  } catch (err) {
    throw new Error(`unpackOptimizerState: '${METADATA_KEY}' is not valid JSON (${(err as Error).message})`);
  }
  if (!Array.isArray(parsed.paramGroups)) throw new Error(`unpackOptimizerState: '${METADATA_KEY}' has no paramGroups array`);
  const state: Record<number, ParamState> = {};
  for (const [index, fields] of Object.entries(parsed.numbers ?? {})) state[Number(index)] = { ...fields };
  for (const [name, tensor] of Object.entries(tensors)) {
    const match = /^state\.(\d+)\.([^.]+)$/.exec(name);
    if (match === null) throw new Error(`unpackOptimizerState: unexpected tensor '${name}' (expected state.<index>.<field>)`);
    const index = Number(match[1]);
    (state[index] ??= {})[match[2] as string] = tensor;
  }
  return { state, paramGroups: parsed.paramGroups };
}
