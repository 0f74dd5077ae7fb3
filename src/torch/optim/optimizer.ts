// The Optimizer base: parameter groups with hyperparameters, per-parameter state, save/restore.
import type { DType } from '../native.js';
import { Tensor } from '../tensor.js';
import * as F from '../ops.js';
import '../tensor-methods.js';
import { keep } from '../scope.js';
import { noGrad } from '../autograd.js';

const ELEMENT_BYTES: Partial<Record<DType, number>> = { float64: 8, float32: 4, float16: 2, bfloat16: 2 };

/**
 * Scratch memory kept between steps up to this size. Steps reuse it instead of allocating
 * parameter-sized temporaries (allocator churn fragments the heap); larger needs are allocated
 * per use, where the engine's allocator caches blocks by size.
 */
const WORKSPACE_LIMIT_BYTES = 64 << 20;

/** A hyperparameter value: what fits in a JSON checkpoint. */
export type HyperValue = number | boolean | string | null | readonly number[];

/** Hyperparameters of a group (values are HyperValues); every optimizer has at least a learning rate. */
export interface Hyperparameters {
  lr: number;
}

/** A parameter group as the optimizer holds it. */
export type ParamGroup<H extends Hyperparameters> = H & { params: Tensor[] };

/** A parameter group as given to the constructor: hyperparameters left out take the defaults. */
export type ParamGroupInput<H extends Hyperparameters> = Partial<H> & { params: readonly Tensor[] };

/** Per-parameter state: tensors (moments, buffers) and numbers (step counts). */
export type ParamState = Record<string, Tensor | number>;

/**
 * A saved optimizer, as torch's state_dict(): state by parameter index (counted across groups in
 * order) and each group's hyperparameters with the indices of its parameters.
 */
export interface OptimizerStateDict<H extends Hyperparameters = Hyperparameters> {
  state: Record<number, ParamState>;
  paramGroups: (H & { params: number[] })[];
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export abstract class Optimizer<H extends Hyperparameters> {
  readonly paramGroups: ParamGroup<H>[] = [];
  readonly defaults: H;
  /** State of each parameter, keyed by the parameter tensor. */
  protected readonly state = new Map<Tensor, ParamState>();
  private readonly workspaces = new Map<string, Tensor>();

  constructor(params: readonly Tensor[] | readonly ParamGroupInput<H>[], defaults: H) {
    this.defaults = defaults;
    this.validateHyperparameters(defaults, 'defaults');
    if (params.length === 0) throw new Error(`${this.constructor.name}: got an empty parameter list`);
    const groups: readonly ParamGroupInput<H>[] = params[0] instanceof Tensor ? [{ params: params as readonly Tensor[] } as ParamGroupInput<H>] : (params as readonly ParamGroupInput<H>[]);
    for (const group of groups) this.addParamGroup(group);
  }

  /** Checks hyperparameter values; throws naming the bad one. */
  protected abstract validateHyperparameters(hyper: H, where: string): void;

  /** Applies one update to every parameter that has a gradient. */
  abstract step(): void;

  /** Adds a group of parameters (hyperparameters missing from it take the defaults). */
  addParamGroup(input: ParamGroupInput<H>): void {
    const name = this.constructor.name;
    const params = [...input.params];
    const taken = new Set(this.paramGroups.flatMap((g) => g.params));
    const inGroup = new Set<Tensor>();
    params.forEach((p, i) => {
      if (!(p instanceof Tensor)) throw new Error(`${name}: parameter ${i} of group ${this.paramGroups.length} is not a Tensor`);
      if (!p.isLeaf) throw new Error(`${name}: cannot optimize a non-leaf tensor (parameter ${i} of group ${this.paramGroups.length})`);
      if (taken.has(p) || inGroup.has(p)) throw new Error(`${name}: parameter ${i} of group ${this.paramGroups.length} appears in more than one place`);
      inGroup.add(p);
    });
    const group = { ...this.defaults, ...input, params } as ParamGroup<H>;
    this.validateHyperparameters(group, `param group ${this.paramGroups.length}`);
    this.paramGroups.push(group);
  }

  /** The state of parameter `param` (created empty on first use). */
  protected stateOf(param: Tensor): ParamState {
    let found = this.state.get(param);
    if (found === undefined) {
      found = {};
      this.state.set(param, found);
    }
    return found;
  }

  /** Stores a state tensor (kept alive across scopes), disposing what it replaces. */
  protected setStateTensor(state: ParamState, key: string, value: Tensor): Tensor {
    const previous = state[key];
    if (previous instanceof Tensor && previous !== value) previous.dispose();
    state[key] = keep(value);
    return value;
  }

  /**
   * A scratch tensor with the shape, dtype and device of `param`, for temporaries inside step().
   * Its contents are undefined, and it is shared: it stays valid until the next call. Dispose the
   * returned handle when done (the memory behind it is kept for the next step).
   */
  protected workspaceLike(param: Tensor): Tensor {
    const dtype = param.dtype;
    const numel = param.numel;
    if (numel * (ELEMENT_BYTES[dtype] ?? 8) > WORKSPACE_LIMIT_BYTES) return F.empty(param.shape, { dtype, device: param.device });
    const key = `${dtype}@${param.device}`;
    let flat = this.workspaces.get(key);
    if (flat === undefined || flat.numel < numel) {
      flat?.dispose();
      flat = keep(F.empty([numel], { dtype, device: param.device }));
      this.workspaces.set(key, flat);
    }
    const prefix = flat.narrow(0, 0, numel);
    try {
      return prefix.view(param.shape);
    } finally {
      prefix.dispose();
    }
  }

  /** Clears the gradients of all optimized parameters (setToNone drops them, else zeros them). */
  zeroGrad(setToNone = true): void {
    for (const group of this.paramGroups) {
      for (const p of group.params) {
        if (setToNone) {
          p.grad = null;
          continue;
        }
        const g = p.grad;
        if (g !== null) {
          noGrad(() => g.zero_());
          g.dispose();
        }
      }
    }
  }

  /**
   * The optimizer's state: state tensors are copies that the caller owns (dispose them, or call
   * inside tidy()); hyperparameters are copied by value.
   */
  stateDict(): OptimizerStateDict<H> {
    const state: Record<number, ParamState> = {};
    const paramGroups: (H & { params: number[] })[] = [];
    let index = 0;
    for (const group of this.paramGroups) {
      const indices: number[] = [];
      for (const p of group.params) {
        const own = this.state.get(p);
        if (own !== undefined && Object.keys(own).length > 0) {
          const saved: ParamState = {};
          for (const [key, value] of Object.entries(own)) saved[key] = value instanceof Tensor ? noGrad(() => value.clone()) : value;
          state[index] = saved;
        }
        indices.push(index++);
      }
      const { params: _params, ...hyper } = group;
      paramGroups.push({ ...(cloneHyper(hyper) as unknown as H), params: indices });
    }
    return { state, paramGroups };
  }

  /**
   * Restores a state saved by stateDict() (of an optimizer over parameters of the same shapes,
   * grouped the same way). Hyperparameters are taken from the saved groups; state tensors are
   * copied, so the caller keeps ownership of `saved`. Nothing changes when it throws.
   */
  loadStateDict(saved: OptimizerStateDict<H>): void {
    const name = this.constructor.name;
    if (!Array.isArray(saved.paramGroups) || saved.paramGroups.length !== this.paramGroups.length) {
      throw new Error(`${name}.loadStateDict: saved state has ${saved.paramGroups?.length ?? 0} param groups, optimizer has ${this.paramGroups.length}`);
    }
    const byIndex = new Map<number, Tensor>();
    saved.paramGroups.forEach((savedGroup, g) => {
      const group = this.paramGroups[g] as ParamGroup<H>;
      if (savedGroup.params.length !== group.params.length) {
        throw new Error(`${name}.loadStateDict: param group ${g} has ${savedGroup.params.length} parameters saved, ${group.params.length} in the optimizer`);
      }
      savedGroup.params.forEach((index, i) => byIndex.set(index, group.params[i] as Tensor));
    });
    const restored = new Map<Tensor, [string, Tensor | number][]>();
    for (const [key, entries] of Object.entries(saved.state)) {
      const param = byIndex.get(Number(key));
      if (param === undefined) throw new Error(`${name}.loadStateDict: state for parameter index ${key}, which no param group lists`);
      const list: [string, Tensor | number][] = [];
      for (const [field, value] of Object.entries(entries)) {
        if (value instanceof Tensor) {
          if (value.isDisposed) throw new Error(`${name}.loadStateDict: state '${field}' of parameter ${key} was already disposed`);
          if (!sameShape(value.shape, param.shape) && value.numel !== 1) {
            throw new Error(`${name}.loadStateDict: state '${field}' of parameter ${key} has shape [${value.shape.join(', ')}], parameter has [${param.shape.join(', ')}]`);
          }
        } else if (typeof value !== 'number') {
          throw new Error(`${name}.loadStateDict: state '${field}' of parameter ${key} is neither a tensor nor a number`);
        }
        list.push([field, value]);
      }
      restored.set(param, list);
    }
    saved.paramGroups.forEach((savedGroup, g) => {
      const { params: _params, ...hyper } = savedGroup;
      this.validateHyperparameters({ ...this.defaults, ...(hyper as unknown as H) }, `saved param group ${g}`);
    });
    // Validated: now replace.
    this.replaceState(restored);
    saved.paramGroups.forEach((savedGroup, g) => {
      const group = this.paramGroups[g] as ParamGroup<H>;
      const { params: _params, ...hyper } = savedGroup;
      Object.assign(group, cloneHyper(hyper));
    });
  }

  /**
   * Replaces the state with validated saved entries (tensors are the caller's: copy them). Subclasses
   * whose state tensors are shared with their owner override it to restore in place.
   */
  protected replaceState(restored: ReadonlyMap<Tensor, readonly [string, Tensor | number][]>): void {
    this.disposeState();
    for (const [param, list] of restored) {
      const state = this.stateOf(param);
      for (const [field, value] of list) {
        if (value instanceof Tensor) this.setStateTensor(state, field, noGrad(() => (value.dtype === param.dtype ? value.clone() : value.to(param.dtype))));
        else state[field] = value;
      }
    }
  }

  private disposeState(): void {
    for (const state of this.state.values()) for (const value of Object.values(state)) if (value instanceof Tensor) value.dispose();
    this.state.clear();
  }

  /** Frees the state tensors and scratch memory (the parameters belong to their owner and are left alone). */
  dispose(): void {
    this.disposeState();
    for (const flat of this.workspaces.values()) flat.dispose();
    this.workspaces.clear();
  }
}

function cloneHyper<T extends object>(hyper: T): T {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(hyper)) out[key] = Array.isArray(value) ? [...(value as unknown[])] : value;
  return out as T;
}

/** Checks that a hyperparameter is a finite number within [min, max]. */
export function checkRange(optimizer: string, where: string, name: string, value: unknown, min: number, max = Infinity, maxInclusive = true): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || (maxInclusive ? value > max : value >= max)) {
    const upper = max === Infinity ? '' : `, ${max}${maxInclusive ? ']' : ')'}`;
    throw new Error(`${optimizer}: ${where}: invalid ${name} ${String(value)} (expected a number in [${min}${upper || ', inf)'})`);
  }
}
