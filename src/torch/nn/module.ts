// The nn.Module base: owns parameters, buffers and child modules under PyTorch's dotted names.
import type { DType } from '../native.js';
import { Tensor } from '../tensor.js';
import { keep } from '../scope.js';
import { noGrad } from '../autograd.js';
import { contiguous, set_, type MemoryFormat } from '../ops.js';
import '../tensor-methods.js';

/** Any module, whatever its forward signature. */
export type AnyModule = Module<never, unknown>;

/** A state dict: parameters and persistent buffers by dotted name (PyTorch key naming). */
export type StateDict = Record<string, Tensor>;

export interface LoadStateDictOptions {
  /** Reject missing and unexpected keys (default true). Shape and dtype mismatches always throw. */
  strict?: boolean;
}

export interface LoadStateDictResult {
  missingKeys: string[];
  unexpectedKeys: string[];
}

interface TensorSlot {
  kind: 'parameter' | 'buffer';
  tensor: Tensor;
  persistent: boolean;
}

function checkName(owner: string, name: string, kind: string): void {
  if (name.length === 0) throw new Error(`${owner}: ${kind} name must not be empty`);
  if (name.includes('.')) throw new Error(`${owner}: ${kind} name '${name}' must not contain '.'`);
}

function shapeText(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function listKeys(label: string, keys: readonly string[]): string {
  return `${keys.length} ${label}${keys.length === 1 ? '' : 's'}: ${keys.join(', ')}`;
}

/**
 * Base class of layers and models. Subclasses register their tensors with registerParameter /
 * registerBuffer and their sub-layers with registerModule (in the order PyTorch would define them,
 * since that order is the order of parameters() and of stateDict()). Registered tensors are kept
 * alive across tidy() scopes and are freed by dispose().
 */
export abstract class Module<Args extends unknown[] = [Tensor], Output = Tensor> {
  /** Training mode (true) or evaluation mode (false); set with train() / eval(). */
  training = true;
  private readonly slots = new Map<string, TensorSlot>();
  private readonly childModules = new Map<string, AnyModule>();

  abstract forward(...args: Args): Output;

  /** Runs forward (the equivalent of calling a PyTorch module). */
  call(...args: Args): Output {
    return this.forward(...args);
  }

  /** The class name, used in error messages. */
  get typeName(): string {
    return this.constructor.name;
  }

  // ---- registration -----------------------------------------------------------------------
  private checkFree(name: string, kind: string): void {
    checkName(this.typeName, name, kind);
    if (this.slots.has(name) || this.childModules.has(name)) {
      throw new Error(`${this.typeName}: '${name}' is already registered`);
    }
  }

  /**
   * Registers a trainable tensor under `name`: it becomes a leaf with requiresGrad (unless
   * `requiresGrad` is false) and is kept alive across scopes. Returns the tensor.
   */
  registerParameter(name: string, tensor: Tensor, requiresGrad = true): Tensor {
    this.checkFree(name, 'parameter');
    if (!tensor.isLeaf) throw new Error(`${this.typeName}: parameter '${name}' must be a leaf tensor (detach it first)`);
    keep(tensor);
    tensor.requiresGrad_(requiresGrad);
    this.slots.set(name, { kind: 'parameter', tensor, persistent: true });
    return tensor;
  }

  /** Registers a non-trainable tensor (running statistics...); non-persistent ones stay out of stateDict(). */
  registerBuffer(name: string, tensor: Tensor, options: { persistent?: boolean } = {}): Tensor {
    this.checkFree(name, 'buffer');
    keep(tensor);
    this.slots.set(name, { kind: 'buffer', tensor, persistent: options.persistent ?? true });
    return tensor;
  }

  /** Registers a child module under `name` (its tensors get the prefix `name.`). Returns it. */
  registerModule<M extends AnyModule>(name: string, module: M): M {
    this.checkFree(name, 'module');
    if ((module as AnyModule) === (this as unknown as AnyModule)) throw new Error(`${this.typeName}: a module cannot be its own child`);
    this.childModules.set(name, module);
    return module;
  }

  /** This module's own parameter `name`. */
  protected parameter(name: string): Tensor {
    const slot = this.slots.get(name);
    if (slot === undefined || slot.kind !== 'parameter') throw new Error(`${this.typeName}: no parameter named '${name}'`);
    return slot.tensor;
  }

  /** This module's own buffer `name`. */
  protected buffer(name: string): Tensor {
    const slot = this.slots.get(name);
    if (slot === undefined || slot.kind !== 'buffer') throw new Error(`${this.typeName}: no buffer named '${name}'`);
    return slot.tensor;
  }

  protected hasTensor(name: string): boolean {
    return this.slots.has(name);
  }

  /** The registered child `name`. */
  child(name: string): AnyModule {
    const found = this.childModules.get(name);
    if (found === undefined) throw new Error(`${this.typeName}: no child module named '${name}'`);
    return found;
  }

  // ---- traversal ----------------------------------------------------------------------------
  /** Direct children with their names, in registration order. */
  namedChildren(): [string, AnyModule][] {
    return [...this.childModules.entries()];
  }

  children(): AnyModule[] {
    return [...this.childModules.values()];
  }

  /** This module (named '') and every descendant, depth first, each once. */
  namedModules(prefix = ''): [string, AnyModule][] {
    const out: [string, AnyModule][] = [];
    const seen = new Set<AnyModule>();
    const visit = (module: AnyModule, name: string): void => {
      if (seen.has(module)) return;
      seen.add(module);
      out.push([name, module]);
      for (const [childName, childModule] of module.childModules) visit(childModule, name === '' ? childName : `${name}.${childName}`);
    };
    visit(this as unknown as AnyModule, prefix);
    return out;
  }

  modules(): AnyModule[] {
    return this.namedModules().map(([, m]) => m);
  }

  private namedSlots(kind: TensorSlot['kind'], recurse: boolean, onlyPersistent: boolean, dedupe: boolean): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    const seen = new Set<Tensor>();
    const modules: [string, AnyModule][] = recurse ? this.namedModules() : [['', this as unknown as AnyModule]];
    for (const [prefix, module] of modules) {
      for (const [name, slot] of module.slots) {
        if (slot.kind !== kind || (onlyPersistent && !slot.persistent)) continue;
        if (dedupe) {
          if (seen.has(slot.tensor)) continue;
          seen.add(slot.tensor);
        }
        out.push([prefix === '' ? name : `${prefix}.${name}`, slot.tensor]);
      }
    }
    return out;
  }

  /** Parameters with dotted names (e.g. `layer1.0.conv1.weight`); a shared tensor appears once. */
  namedParameters(options: { recurse?: boolean } = {}): [string, Tensor][] {
    return this.namedSlots('parameter', options.recurse ?? true, false, true);
  }

  /** The parameter tensors themselves (owned by the module: do not dispose them). */
  parameters(options: { recurse?: boolean } = {}): Tensor[] {
    return this.namedParameters(options).map(([, t]) => t);
  }

  namedBuffers(options: { recurse?: boolean } = {}): [string, Tensor][] {
    return this.namedSlots('buffer', options.recurse ?? true, false, true);
  }

  buffers(options: { recurse?: boolean } = {}): Tensor[] {
    return this.namedBuffers(options).map(([, t]) => t);
  }

  /** Calls fn on every module (children first, then this one, as torch's Module.apply). */
  apply(fn: (module: AnyModule) => void): this {
    for (const child of this.childModules.values()) child.apply(fn);
    fn(this as unknown as AnyModule);
    return this;
  }

  // ---- modes and gradients ----------------------------------------------------------------
  /** Sets training mode on this module and all descendants. */
  train(mode = true): this {
    for (const module of this.modules()) module.training = mode;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /**
   * Re-lays out every 4-D parameter and buffer in place (the tensors keep their identity, so
   * optimizers and hooks still see them). 'channels_last' is what libtorch's oneDNN convolutions,
   * batch norm and PReLU run fastest on for CPU; a channels-last weight makes a convolution's
   * output channels-last too, so the input needs no conversion.
   */
  toMemoryFormat(memoryFormat: MemoryFormat): this {
    noGrad(() => {
      for (const t of [...this.parameters(), ...this.buffers()]) {
        if (t.ndim !== 4) continue;
        const relaid = contiguous(t, memoryFormat);
        try {
          set_(t, relaid);
        } finally {
          relaid.dispose();
        }
      }
    });
    return this;
  }

  /** Sets requiresGrad on every parameter (false freezes the module). */
  requiresGrad_(requires = true): this {
    for (const p of this.parameters()) p.requiresGrad_(requires);
    return this;
  }

  /** Clears the gradients of all parameters (setToNone: drop them; otherwise fill with zeros). */
  zeroGrad(setToNone = true): void {
    for (const p of this.parameters()) {
      if (setToNone) {
        p.grad = null;
        continue;
      }
      const g = p.grad;
      if (g !== null) {
        g.zero_();
        g.dispose();
      }
    }
  }

  /** Number of parameter elements (each shared tensor counted once). */
  numParameters(options: { trainableOnly?: boolean } = {}): number {
    let total = 0;
    for (const p of this.parameters()) if (!options.trainableOnly || p.requiresGrad) total += p.numel;
    return total;
  }

  // ---- state dict ---------------------------------------------------------------------------
  /** Every entry of the state dict in PyTorch order: each module's parameters, then its persistent buffers, then its children. */
  private stateEntries(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [prefix, module] of this.namedModules()) {
      const own = [...module.slots.entries()];
      for (const kind of ['parameter', 'buffer'] as const) {
        for (const [name, slot] of own) {
          if (slot.kind !== kind || !slot.persistent) continue;
          out.push([prefix === '' ? name : `${prefix}.${name}`, slot.tensor]);
        }
      }
    }
    return out;
  }

  /**
   * Parameters and persistent buffers by dotted name, as torch's state_dict(): each value is a new
   * detached handle sharing memory with the module's tensor. The caller owns these handles
   * (dispose them, or call inside tidy()); disposing them leaves the module intact.
   */
  stateDict(): StateDict {
    const out: StateDict = {};
    for (const [name, tensor] of this.stateEntries()) out[name] = tensor.detach();
    return out;
  }

  /** The state dict's keys with their shapes and dtypes, without creating tensors. */
  stateDictSpec(): { name: string; shape: number[]; dtype: DType }[] {
    return this.stateEntries().map(([name, t]) => ({ name, shape: t.shape, dtype: t.dtype }));
  }

  /**
   * Copies values from `dict` into the module's tensors, in place. Validates everything first and
   * changes nothing when it throws: missing and unexpected keys (when strict), shape mismatches and
   * dtype mismatches are all listed in one error. The caller keeps ownership of `dict`.
   */
  loadStateDict(dict: Record<string, Tensor>, options: LoadStateDictOptions = {}): LoadStateDictResult {
    const strict = options.strict ?? true;
    const entries = this.stateEntries();
    const expected = new Set(entries.map(([name]) => name));
    const missingKeys = entries.map(([name]) => name).filter((name) => !Object.prototype.hasOwnProperty.call(dict, name));
    const unexpectedKeys = Object.keys(dict).filter((name) => !expected.has(name));
    const problems: string[] = [];
    if (strict && missingKeys.length > 0) problems.push(listKeys('missing key', missingKeys));
    if (strict && unexpectedKeys.length > 0) problems.push(listKeys('unexpected key', unexpectedKeys));
    const copies: [Tensor, Tensor][] = [];
    for (const [name, target] of entries) {
      if (!Object.prototype.hasOwnProperty.call(dict, name)) continue;
      const source = dict[name];
      if (!(source instanceof Tensor)) {
        problems.push(`'${name}' is not a Tensor`);
        continue;
      }
      if (source.isDisposed) {
        problems.push(`'${name}' was already disposed`);
        continue;
      }
      if (!sameShape(source.shape, target.shape)) {
        problems.push(`size mismatch for ${name}: checkpoint has ${shapeText(source.shape)}, model has ${shapeText(target.shape)}`);
        continue;
      }
      if (source.dtype !== target.dtype) {
        problems.push(`dtype mismatch for ${name}: checkpoint has ${source.dtype}, model has ${target.dtype}`);
        continue;
      }
      copies.push([target, source]);
    }
    if (problems.length > 0) {
      throw new Error(`loadStateDict(${this.typeName}): ${problems.join('; ')}`);
    }
    noGrad(() => {
      for (const [target, source] of copies) if (target !== source) target.copy_(source);
    });
    return { missingKeys, unexpectedKeys };
  }

  // ---- lifetime -----------------------------------------------------------------------------
  /** Frees every parameter and buffer of this module and its descendants. */
  dispose(): void {
    for (const [, module] of this.namedModules()) {
      for (const slot of module.slots.values()) slot.tensor.dispose();
    }
  }
}
