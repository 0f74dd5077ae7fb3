// OnnxGraphBuilder: assemble an ONNX graph (inputs, initializers, nodes, outputs) in topological
// order and serialize it to ModelProto bytes that onnxruntime (or any ONNX consumer) loads.
import {
  OnnxAttributeType,
  OnnxDataType,
  encodeModelProto,
  type OnnxAttributeProto,
  type OnnxDimension,
  type OnnxModelProto,
  type OnnxNodeProto,
  type OnnxTensorProto,
  type OnnxValueInfoProto,
} from './proto.js';

export type OnnxElementType = 'float32' | 'float16' | 'float64' | 'int8' | 'uint8' | 'int32' | 'int64' | 'bool';

/** A dimension: a fixed size, or a symbolic name such as 'N' for a dynamic batch. */
export type OnnxDim = number | string;

/** fp16 data as raw binary16 bit patterns (see float32ToHalf in float16.ts). */
export interface Float16Data {
  float16: Uint16Array;
}

export type OnnxInitializerData = Float32Array | Float64Array | Float16Data | Int8Array | Uint8Array | Int32Array | BigInt64Array;

/** An attribute whose ONNX type is stated explicitly (needed when a JS number is ambiguous, e.g. alpha = 1.0). */
export type OnnxTypedAttribute =
  | { kind: 'float'; value: number }
  | { kind: 'int'; value: number }
  | { kind: 'string'; value: string }
  | { kind: 'floats'; value: number[] }
  | { kind: 'ints'; value: number[] }
  | { kind: 'strings'; value: string[] }
  | { kind: 'tensor'; value: OnnxInitializerData; dims: number[] };

/**
 * An attribute value. Plain numbers are INT when integral and FLOAT otherwise; number arrays are INTS
 * when every element is integral. Use `onnxAttr.float(1)` etc. to force a type.
 */
export type OnnxAttributeValue = number | string | number[] | string[] | OnnxTypedAttribute;

export const onnxAttr = {
  float: (value: number): OnnxTypedAttribute => ({ kind: 'float', value }),
  int: (value: number): OnnxTypedAttribute => ({ kind: 'int', value }),
  string: (value: string): OnnxTypedAttribute => ({ kind: 'string', value }),
  floats: (value: number[]): OnnxTypedAttribute => ({ kind: 'floats', value }),
  ints: (value: number[]): OnnxTypedAttribute => ({ kind: 'ints', value }),
  strings: (value: string[]): OnnxTypedAttribute => ({ kind: 'strings', value }),
  tensor: (value: OnnxInitializerData, dims: number[]): OnnxTypedAttribute => ({ kind: 'tensor', value, dims }),
};

export interface OnnxNodeOptions {
  /** Node name (defaults to a fresh `<OpType>_<n>`). */
  name?: string;
  /** Operator domain; '' (the default ONNX domain) when omitted. */
  domain?: string;
}

export interface OnnxSerializeOptions {
  /** Default-domain opset version (13..21 supported; default 17). */
  opset?: number;
  /** ModelProto.ir_version; derived from the opset when omitted. */
  irVersion?: number;
  producerName?: string;
  producerVersion?: string;
  docString?: string;
  /** Stored in ModelProto.metadata_props. */
  metadata?: Record<string, string>;
}

const ELEMENT_TYPES: Record<OnnxElementType, number> = {
  float32: OnnxDataType.FLOAT,
  float16: OnnxDataType.FLOAT16,
  float64: OnnxDataType.DOUBLE,
  int8: OnnxDataType.INT8,
  uint8: OnnxDataType.UINT8,
  int32: OnnxDataType.INT32,
  int64: OnnxDataType.INT64,
  bool: OnnxDataType.BOOL,
};

/** Lowest and highest default-domain opsets this builder writes (the layer emitters use ops stable over this range). */
export const MIN_OPSET = 13;
export const MAX_OPSET = 21;

/** ONNX IR version that first shipped with each opset (onnx/helper.py VERSION_TABLE). */
function irVersionForOpset(opset: number): number {
  if (opset <= 14) return 7;
  if (opset <= 18) return 8;
  if (opset <= 20) return 9;
  return 10;
}

function elementCount(dims: readonly number[]): number {
  return dims.reduce((product, dim) => product * dim, 1);
}

function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

/** Convert initializer data to a TensorProto (raw little-endian bytes). */
export function makeTensorProto(name: string, data: OnnxInitializerData, dims: readonly number[]): OnnxTensorProto {
  for (const dim of dims) {
    if (!Number.isInteger(dim) || dim < 0) throw new Error(`tensor '${name}': dims must be non-negative integers, got [${dims.join(', ')}]`);
  }
  let dataType: number;
  let raw: Uint8Array;
  let length: number;
  if (data instanceof Float32Array) [dataType, raw, length] = [OnnxDataType.FLOAT, bytesOf(data), data.length];
  else if (data instanceof Float64Array) [dataType, raw, length] = [OnnxDataType.DOUBLE, bytesOf(data), data.length];
  else if (data instanceof Int8Array) [dataType, raw, length] = [OnnxDataType.INT8, bytesOf(data), data.length];
  else if (data instanceof Uint8Array) [dataType, raw, length] = [OnnxDataType.UINT8, bytesOf(data), data.length];
  else if (data instanceof Int32Array) [dataType, raw, length] = [OnnxDataType.INT32, bytesOf(data), data.length];
  else if (data instanceof BigInt64Array) [dataType, raw, length] = [OnnxDataType.INT64, bytesOf(data), data.length];
  else if (data.float16 instanceof Uint16Array) [dataType, raw, length] = [OnnxDataType.FLOAT16, bytesOf(data.float16), data.float16.length];
  else throw new Error(`tensor '${name}': unsupported data (expected a typed array or { float16: Uint16Array })`);
  const expected = elementCount(dims);
  if (length !== expected) {
    throw new Error(`tensor '${name}': dims [${dims.join(', ')}] hold ${expected} elements but the data has ${length}`);
  }
  return { name, dims: [...dims], dataType, rawData: raw };
}

function isIntegral(values: readonly number[]): boolean {
  return values.every((value) => Number.isInteger(value));
}

function makeAttribute(name: string, value: OnnxAttributeValue): OnnxAttributeProto {
  if (typeof value === 'number') {
    return Number.isInteger(value) ? { name, type: OnnxAttributeType.INT, i: value } : { name, type: OnnxAttributeType.FLOAT, f: value };
  }
  if (typeof value === 'string') return { name, type: OnnxAttributeType.STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) {
    if (value.every((item): item is string => typeof item === 'string')) {
      return { name, type: OnnxAttributeType.STRINGS, strings: value.map((item) => new TextEncoder().encode(item)) };
    }
    const numbers = value as number[];
    if (!numbers.every((item) => typeof item === 'number' && Number.isFinite(item))) {
      throw new Error(`attribute '${name}': arrays must hold only finite numbers or only strings`);
    }
    return isIntegral(numbers) ? { name, type: OnnxAttributeType.INTS, ints: numbers } : { name, type: OnnxAttributeType.FLOATS, floats: numbers };
  }
  switch (value.kind) {
    case 'float':
      return { name, type: OnnxAttributeType.FLOAT, f: value.value };
    case 'int':
      if (!Number.isInteger(value.value)) throw new Error(`attribute '${name}': int attribute got ${value.value}`);
      return { name, type: OnnxAttributeType.INT, i: value.value };
    case 'string':
      return { name, type: OnnxAttributeType.STRING, s: new TextEncoder().encode(value.value) };
    case 'floats':
      return { name, type: OnnxAttributeType.FLOATS, floats: value.value };
    case 'ints':
      if (!isIntegral(value.value)) throw new Error(`attribute '${name}': ints attribute got [${value.value.join(', ')}]`);
      return { name, type: OnnxAttributeType.INTS, ints: value.value };
    case 'strings':
      return { name, type: OnnxAttributeType.STRINGS, strings: value.value.map((item) => new TextEncoder().encode(item)) };
    case 'tensor':
      return { name, type: OnnxAttributeType.TENSOR, t: makeTensorProto(name, value.value, value.dims) };
  }
}

function makeValueInfo(name: string, dtype: OnnxElementType, shape: readonly OnnxDim[]): OnnxValueInfoProto {
  const elemType = ELEMENT_TYPES[dtype];
  if (elemType === undefined) throw new Error(`value '${name}': unknown element type '${String(dtype)}'`);
  const dim: OnnxDimension[] = shape.map((size, axis) => {
    if (typeof size === 'string') {
      if (size.length === 0) throw new Error(`value '${name}': symbolic dimension ${axis} has an empty name`);
      return { dimParam: size };
    }
    if (!Number.isInteger(size) || size < 0) throw new Error(`value '${name}': dimension ${axis} must be a non-negative integer or a name, got ${size}`);
    return { dimValue: size };
  });
  return { name, type: { tensorType: { elemType, shape: { dim } } } };
}

/**
 * Builds one ONNX graph. Values are single-assignment: every input, initializer and node output
 * has a unique name, and a node may only consume values defined before it (ONNX requires the node
 * list in topological order).
 */
export class OnnxGraphBuilder {
  readonly graphName: string;
  private readonly inputs: OnnxValueInfoProto[] = [];
  private readonly outputs: OnnxValueInfoProto[] = [];
  private readonly initializers: OnnxTensorProto[] = [];
  private readonly nodes: OnnxNodeProto[] = [];
  private readonly defined = new Set<string>();
  private readonly nameCounters = new Map<string, number>();

  constructor(graphName = 'plsc') {
    this.graphName = graphName;
  }

  /** A value name not used yet, derived from `prefix` (`prefix`, then `prefix_1`, `prefix_2`, ...). */
  freshName(prefix: string): string {
    if (!this.defined.has(prefix) && !this.nameCounters.has(prefix)) {
      this.nameCounters.set(prefix, 0);
      return prefix;
    }
    let counter = this.nameCounters.get(prefix) ?? 0;
    let candidate: string;
    do {
      counter += 1;
      candidate = `${prefix}_${counter}`;
    } while (this.defined.has(candidate) || this.nameCounters.has(candidate));
    this.nameCounters.set(prefix, counter);
    this.nameCounters.set(candidate, 0);
    return candidate;
  }

  /** True when a value (input, initializer or node output) with this name exists. */
  has(name: string): boolean {
    return this.defined.has(name);
  }

  private define(name: string, what: string): void {
    if (typeof name !== 'string' || name.length === 0) throw new Error(`${what}: value names must be non-empty strings`);
    if (this.defined.has(name)) throw new Error(`${what}: a value named '${name}' already exists`);
    this.defined.add(name);
    if (!this.nameCounters.has(name)) this.nameCounters.set(name, 0);
  }

  /** Declare a graph input, e.g. `input('input', 'float32', ['N', 3, 112, 112])`. */
  input(name: string, dtype: OnnxElementType, shape: readonly OnnxDim[]): string {
    const info = makeValueInfo(name, dtype, shape);
    this.define(name, `input '${name}'`);
    this.inputs.push(info);
    return name;
  }

  /** Add a constant tensor (weights). Float32 data is stored as raw little-endian bytes. */
  initializer(name: string, data: OnnxInitializerData, dims: readonly number[]): string {
    const tensor = makeTensorProto(name, data, dims);
    this.define(name, `initializer '${name}'`);
    this.initializers.push(tensor);
    return name;
  }

  /** Add an int64 constant, the type ONNX wants for shapes and axes. */
  int64Initializer(name: string, values: readonly number[]): string {
    return this.initializer(name, BigInt64Array.from(values, (value) => BigInt(value)), [values.length]);
  }

  /**
   * Append a node. `inputs` must name existing values ('' marks an omitted optional input);
   * `outputs` must be new names. Returns `outputs`.
   */
  node(opType: string, inputs: readonly string[], outputs: readonly string[], attributes: Record<string, OnnxAttributeValue> = {}, options: OnnxNodeOptions = {}): string[] {
    const nodeName = options.name ?? this.freshNodeName(opType);
    for (const [index, input] of inputs.entries()) {
      if (input !== '' && !this.defined.has(input)) {
        throw new Error(`node '${nodeName}' (${opType}): input ${index} '${input}' is not defined yet (add inputs, initializers and producing nodes first)`);
      }
    }
    if (outputs.length === 0) throw new Error(`node '${nodeName}' (${opType}): needs at least one output`);
    const attribute = Object.entries(attributes).map(([key, value]) => {
      try {
        return makeAttribute(key, value);
      } catch (error) {
        throw new Error(`node '${nodeName}' (${opType}): ${(error as Error).message}`);
      }
    });
    for (const output of outputs) this.define(output, `node '${nodeName}' (${opType}) output`);
    this.nodes.push({ name: nodeName, opType, domain: options.domain ?? '', input: [...inputs], output: [...outputs], attribute });
    return [...outputs];
  }

  private nodeCounter = 0;
  private freshNodeName(opType: string): string {
    this.nodeCounter += 1;
    return `${opType}_${this.nodeCounter}`;
  }

  /** Declare an existing value as a graph output. */
  output(name: string, dtype: OnnxElementType, shape: readonly OnnxDim[]): string {
    if (!this.defined.has(name)) throw new Error(`output '${name}': no value with that name exists`);
    if (this.outputs.some((info) => info.name === name)) throw new Error(`output '${name}': declared twice`);
    this.outputs.push(makeValueInfo(name, dtype, shape));
    return name;
  }

  get nodeCount(): number {
    return this.nodes.length;
  }

  /** The ModelProto as a plain object (what toBytes serializes). */
  toModelProto(options: OnnxSerializeOptions = {}): OnnxModelProto {
    const opset = options.opset ?? 17;
    if (!Number.isInteger(opset) || opset < MIN_OPSET || opset > MAX_OPSET) {
      throw new Error(`opset ${opset} is not supported (use ${MIN_OPSET}..${MAX_OPSET})`);
    }
    if (this.inputs.length === 0) throw new Error(`graph '${this.graphName}' has no inputs`);
    if (this.outputs.length === 0) throw new Error(`graph '${this.graphName}' has no outputs`);
    const metadataProps = Object.entries(options.metadata ?? {}).map(([key, value]) => ({ key, value }));
    return {
      irVersion: options.irVersion ?? irVersionForOpset(opset),
      opsetImport: [{ domain: '', version: opset }],
      producerName: options.producerName ?? 'plsc',
      producerVersion: options.producerVersion ?? '0.1.0',
      ...(options.docString !== undefined ? { docString: options.docString } : {}),
      graph: {
        name: this.graphName,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
      ...(metadataProps.length > 0 ? { metadataProps } : {}),
    };
  }

  /** Serialize to ONNX ModelProto bytes (write them to a .onnx file or hand them to onnxruntime). */
  toBytes(options: OnnxSerializeOptions = {}): Uint8Array {
    return encodeModelProto(this.toModelProto(options));
  }
}
