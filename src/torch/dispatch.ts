// Calls aten:: operators through the native boxed-dispatcher bridge, translating Tensor <-> handle.
import { isNativeTensor, native, type NativeArg, type NativeValue } from './native.js';
import { Tensor } from './tensor.js';

/** A value an operator accepts: tensors, numbers, booleans, strings (dtypes, devices), lists, null. */
export type OpArg = Tensor | number | boolean | string | null | undefined | readonly OpArg[];
/** A value an operator returns. */
export type OpResult = Tensor | number | boolean | string | null | OpResult[];

function toNative(arg: OpArg): NativeArg {
  if (typeof arg !== 'object' || arg === null) return arg;
  if (arg instanceof Tensor) return arg.handle;
  if (Array.isArray(arg)) return (arg as readonly OpArg[]).map(toNative);
  return arg as NativeArg;
}

// One array per call, filled in a plain loop (this runs for every operator call).
function packArgs(args: readonly OpArg[]): NativeArg[] {
  const packed: NativeArg[] = new Array(args.length);
  for (let i = 0; i < args.length; i++) packed[i] = toNative(args[i]);
  return packed;
}

function fromNative(value: NativeValue): OpResult {
  if (isNativeTensor(value)) return Tensor.fromHandle(value);
  if (Array.isArray(value)) return value.map(fromNative);
  return value;
}

/** Calls and wall time of one operator (name.overload) inside a profileOps() region. */
export interface OpProfileEntry {
  op: string;
  calls: number;
  totalMs: number;
}

// The open profileOps() region, if any: per-operator call counts and nanoseconds.
let activeProfile: Map<string, { calls: number; ns: bigint }> | null = null;

function record(key: string, start: bigint): void {
  const profile = activeProfile as Map<string, { calls: number; ns: bigint }>;
  const elapsed = process.hrtime.bigint() - start;
  const entry = profile.get(key);
  if (entry === undefined) profile.set(key, { calls: 1, ns: elapsed });
  else {
    entry.calls++;
    entry.ns += elapsed;
  }
}

/**
 * Runs `fn` and returns, with its result, the calls and wall time spent in each aten operator it
 * dispatched (the time inside libtorch for that call, as torch.profiler's self time on CPU),
 * slowest first. Regions do not nest.
 */
export function profileOps<T>(fn: () => T): { result: T; ops: OpProfileEntry[]; totalMs: number } {
  if (activeProfile !== null) throw new Error('profileOps: a profiling region is already open');
  const profile = new Map<string, { calls: number; ns: bigint }>();
  activeProfile = profile;
  const start = process.hrtime.bigint();
  let result: T;
  try {
    result = fn();
  } finally {
    activeProfile = null;
  }
  const totalMs = Number(process.hrtime.bigint() - start) / 1e6;
  const ops = [...profile.entries()]
    .map(([op, { calls, ns }]) => ({ op, calls, totalMs: Number(ns) / 1e6 }))
    .sort((a, b) => b.totalMs - a.totalMs);
  return { result, ops, totalMs };
}

/** An operator resolved once by schema name and overload; its dispatcher handle is cached. */
export class Op {
  private id = -1;
  constructor(
    readonly name: string,
    readonly overload: string = '',
  ) {}

  private resolve(): number {
    if (this.id < 0) this.id = native.opLookup(this.name, this.overload);
    return this.id;
  }

  /** The operator's schema as libtorch prints it. */
  schema(): string {
    return native.opSchema(this.resolve());
  }

  private get key(): string {
    return this.overload === '' ? this.name : `${this.name}.${this.overload}`;
  }

  call(args: readonly OpArg[]): OpResult {
    return fromNative(this.invoke(packArgs(args)));
  }

  // Runs the operator on arguments already in native form (an array this call may keep).
  private invoke(nativeArgs: NativeArg[]): NativeValue {
    const id = this.id >= 0 ? this.id : this.resolve();
    if (activeProfile === null) return native.opCall(id, ...nativeArgs);
    const start = process.hrtime.bigint();
    const out = native.opCall(id, ...nativeArgs);
    record(this.key, start);
    return out;
  }

  /** Calls an operator that returns one tensor. */
  tensor(...args: OpArg[]): Tensor {
    // The rest array is this call's own: convert it in place rather than allocate another.
    const nativeArgs = args as NativeArg[];
    for (let i = 0; i < args.length; i++) nativeArgs[i] = toNative(args[i]);
    const out = this.invoke(nativeArgs);
    return (isNativeTensor(out) ? Tensor.fromHandle(out) : fromNative(out)) as Tensor;
  }

  /** Calls an operator that returns a tuple or list of tensors. */
  tensors(...args: OpArg[]): Tensor[] {
    return this.call(args) as Tensor[];
  }

  /** Calls an in-place operator on `self` (args[0]); returns `self` and drops the aliasing handle. */
  inPlace(self: Tensor, ...rest: OpArg[]): Tensor {
    const nativeArgs: NativeArg[] = new Array(rest.length + 1);
    nativeArgs[0] = self.handle;
    for (let i = 0; i < rest.length; i++) nativeArgs[i + 1] = toNative(rest[i]);
    const out = this.invoke(nativeArgs);
    if (isNativeTensor(out)) native.tensorRelease(out);
    return self;
  }
}

// Keyed by name, then overload: looking up two literals hashes no new string (this runs per call).
const opCache = new Map<string, Map<string, Op>>();

/** The operator `name` (e.g. 'aten::add') with `overload` (e.g. 'Tensor'), cached. */
export function op(name: string, overload = ''): Op {
  let overloads = opCache.get(name);
  if (overloads === undefined) {
    overloads = new Map();
    opCache.set(name, overloads);
  }
  let found = overloads.get(overload);
  if (found === undefined) {
    found = new Op(name, overload);
    overloads.set(overload, found);
  }
  return found;
}

/** Calls any registered operator by name, e.g. callOp('aten::add', 'Tensor', [a, b]). */
export function callOp(name: string, overload: string, args: readonly OpArg[]): OpResult {
  return op(name, overload).call(args);
}
