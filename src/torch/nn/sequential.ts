// Sequential: children named 0, 1, 2... applied in order.
import { Tensor } from '../tensor.js';
import { Module } from './module.js';

export type TensorModule = Module<[Tensor], Tensor>;

export class Sequential extends Module implements Iterable<TensorModule> {
  private readonly layers: TensorModule[] = [];

  constructor(...modules: TensorModule[]) {
    super();
    for (const module of modules) this.append(module);
  }

  /** Adds a module at the end, named by its index. */
  append(module: TensorModule): this {
    this.registerModule(String(this.layers.length), module);
    this.layers.push(module);
    return this;
  }

  /** The child at `index` (negative counts from the end). */
  at(index: number): TensorModule {
    const resolved = index < 0 ? this.layers.length + index : index;
    const found = this.layers[resolved];
    if (found === undefined) throw new RangeError(`Sequential: index ${index} out of range for ${this.layers.length} modules`);
    return found;
  }

  get length(): number {
    return this.layers.length;
  }

  [Symbol.iterator](): Iterator<TensorModule> {
    return this.layers[Symbol.iterator]();
  }

  forward(input: Tensor): Tensor {
    let x = input;
    for (const layer of this.layers) {
      const next = layer.call(x);
      // Intermediate handles can go now: autograd holds its own references to what it saved.
      if (x !== input && next !== x) x.dispose();
      x = next;
    }
    return x;
  }
}
