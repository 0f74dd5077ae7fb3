// Collectives on the default process group (or the one given), in blocking and asynchronous forms.
// The blocking form waits before returning; the *Async form returns a Work to wait on later, so
// communication overlaps whatever the caller computes in between.
import type { Tensor } from '../torch/tensor.js';
import { getProcessGroup, type AllGatherOptions, type ProcessGroup, type ReduceOp } from './process-group.js';
import type { Work } from './work.js';

export interface CollectiveOptions {
  /** The group to run on (default: the one initProcessGroup() created). */
  group?: ProcessGroup;
}

export interface ReduceOptions extends CollectiveOptions {
  /** sum (default), avg, max, min or product. */
  op?: ReduceOp;
}

export interface BroadcastOptions extends CollectiveOptions {
  /** The rank whose tensor is copied to the others (default 0). */
  src?: number;
}

export type GatherOptions = CollectiveOptions & AllGatherOptions;

function groupOf(options: CollectiveOptions): ProcessGroup {
  return options.group ?? getProcessGroup();
}

/** Reduces in place across ranks; returns the same tensor, now holding the result. */
export function allReduce(tensor: Tensor, options: ReduceOptions = {}): Tensor {
  return allReduceAsync(tensor, options).wait();
}
export function allReduceAsync(tensor: Tensor, options: ReduceOptions = {}): Work<Tensor> {
  return groupOf(options).allReduce(tensor, options.op ?? 'sum');
}

/** Every rank's tensor concatenated along dim 0 in rank order (a new tensor). */
export function allGather(tensor: Tensor, options: GatherOptions = {}): Tensor {
  return allGatherAsync(tensor, options).wait();
}
export function allGatherAsync(tensor: Tensor, options: GatherOptions = {}): Work<Tensor> {
  return groupOf(options).allGather(tensor, options);
}

/** Every rank's tensor, one per rank (new tensors). */
export function allGatherList(tensor: Tensor, options: GatherOptions = {}): Tensor[] {
  return allGatherListAsync(tensor, options).wait();
}
export function allGatherListAsync(tensor: Tensor, options: GatherOptions = {}): Work<Tensor[]> {
  return groupOf(options).allGatherList(tensor, options);
}

/** This rank's chunk of the reduction of every rank's tensor (first dim divisible by the world size). */
export function reduceScatter(tensor: Tensor, options: ReduceOptions = {}): Tensor {
  return reduceScatterAsync(tensor, options).wait();
}
export function reduceScatterAsync(tensor: Tensor, options: ReduceOptions = {}): Work<Tensor> {
  return groupOf(options).reduceScatter(tensor, options.op ?? 'sum');
}

/** Copies rank src's tensor into every rank's tensor (in place); returns the same tensor. */
export function broadcast(tensor: Tensor, options: BroadcastOptions = {}): Tensor {
  return broadcastAsync(tensor, options).wait();
}
export function broadcastAsync(tensor: Tensor, options: BroadcastOptions = {}): Work<Tensor> {
  return groupOf(options).broadcast(tensor, options.src ?? 0);
}

/** Returns once every rank has reached the barrier. */
export function barrier(options: CollectiveOptions = {}): void {
  groupOf(options).barrier().wait();
}
export function barrierAsync(options: CollectiveOptions = {}): Work<void> {
  return groupOf(options).barrier();
}

/** This process's rank in the default group. */
export function getRank(options: CollectiveOptions = {}): number {
  return groupOf(options).rank;
}

/** The number of processes in the default group. */
export function getWorldSize(options: CollectiveOptions = {}): number {
  return groupOf(options).worldSize;
}
