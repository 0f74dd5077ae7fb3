import { positiveInteger } from '../util/validate.js';
// Dynamic batching: images from concurrent requests are queued and run through the model together,
// up to maxBatch per run, waiting at most maxWaitMs for a batch to fill. Admission is bounded:
// a request whose images would push the number of admitted-but-not-yet-running images past
// maxQueue is refused (the server answers 503) instead of growing an unbounded queue.

export class OverloadedError extends Error {
  readonly statusCode = 503;
  constructor(message: string) {
    super(message);
    this.name = 'OverloadedError';
  }
}

export interface BatcherOptions {
  /** Most items per model run. */
  maxBatch: number;
  /** Longest time the first queued item waits for the batch to fill. */
  maxWaitMs: number;
  /** Most items admitted (decoding or queued) and not yet handed to the model. */
  maxQueue: number;
  /** Model runs allowed at the same time (default 1). */
  maxConcurrentRuns?: number;
  /** Called with each batch's size and run time in seconds after it completes. */
  onBatch?: (size: number, seconds: number) => void;
}

/** Runs a batch; must return one output per input, in order. */
export type BatchRunner<In, Out> = (inputs: In[]) => Promise<Out[]>;

interface Pending<In, Out> {
  input: In;
  enqueuedAt: number;
  resolve: (output: Out) => void;
  reject: (error: unknown) => void;
}

/** A slot reservation for `size` items; submit them once they are ready, or release it. */
export interface Admission<In, Out> {
  readonly size: number;
  submit(inputs: In[]): Promise<Out[]>;
  release(): void;
}

export class DynamicBatcher<In, Out> {
  private readonly pending: Pending<In, Out>[] = [];
  private reserved = 0;
  private running = 0;
  private timer: NodeJS.Timeout | undefined;
  private idleWaiters: (() => void)[] = [];
  private readonly maxConcurrentRuns: number;

  constructor(
    private readonly runner: BatchRunner<In, Out>,
    private readonly options: BatcherOptions,
  ) {
    for (const key of ['maxBatch', 'maxQueue'] as const) {
      positiveInteger(options[key], `batcher: ${key}`);
    }
    if (!(options.maxWaitMs >= 0)) throw new Error(`batcher: maxWaitMs must be >= 0, got ${options.maxWaitMs}`);
    this.maxConcurrentRuns = options.maxConcurrentRuns ?? 1;
  }

  /** Items admitted but not yet handed to the model (reserved + queued). */
  get queueDepth(): number {
    return this.reserved + this.pending.length;
  }

  /** Batches currently running. */
  get activeRuns(): number {
    return this.running;
  }

  /** Reserve room for `size` items or throw OverloadedError. */
  admit(size: number): Admission<In, Out> {
    if (this.queueDepth + size > this.options.maxQueue) {
      throw new OverloadedError(`server overloaded: ${this.queueDepth} images queued, limit ${this.options.maxQueue}; retry later`);
    }
    this.reserved += size;
    let open = true;
    const close = () => {
      if (!open) return false;
      open = false;
      this.reserved -= size;
      return true;
    };
    return {
      size,
      submit: (inputs: In[]) => {
        if (!close()) return Promise.reject(new Error('admission already used'));
        if (inputs.length !== size) return Promise.reject(new Error(`admission for ${size} items got ${inputs.length}`));
        return this.enqueue(inputs);
      },
      release: () => {
        if (close()) this.notifyIdle();
      },
    };
  }

  /** Admit and enqueue in one step. */
  run(inputs: In[]): Promise<Out[]> {
    return this.admit(inputs.length).submit(inputs);
  }

  private enqueue(inputs: In[]): Promise<Out[]> {
    const now = performance.now();
    const promises = inputs.map(
      (input) => new Promise<Out>((resolve, reject) => this.pending.push({ input, enqueuedAt: now, resolve, reject })),
    );
    this.schedule();
    return Promise.all(promises);
  }

  private schedule(): void {
    while (this.pending.length > 0 && this.running < this.maxConcurrentRuns) {
      const waited = performance.now() - this.pending[0]!.enqueuedAt;
      if (this.pending.length < this.options.maxBatch && waited < this.options.maxWaitMs) {
        if (!this.timer) {
          this.timer = setTimeout(() => {
            this.timer = undefined;
            this.schedule();
          }, Math.max(0, this.options.maxWaitMs - waited));
        }
        return;
      }
      if (this.timer) {
        clearTimeout(this.timer);
        this.timer = undefined;
      }
      this.dispatch(this.pending.splice(0, this.options.maxBatch));
    }
  }

  private dispatch(batch: Pending<In, Out>[]): void {
    this.running += 1;
    const started = performance.now();
    let settled: Promise<Out[]>;
    try {
      settled = this.runner(batch.map((item) => item.input));
    } catch (error) {
      settled = Promise.reject(error);
    }
    settled
      .then(
        (outputs) => {
          if (outputs.length !== batch.length) throw new Error(`model returned ${outputs.length} outputs for a batch of ${batch.length}`);
          batch.forEach((item, i) => item.resolve(outputs[i]!));
        },
      )
      .catch((error: unknown) => batch.forEach((item) => item.reject(error)))
      .finally(() => {
        this.running -= 1;
        this.options.onBatch?.(batch.length, (performance.now() - started) / 1000);
        this.schedule();
        this.notifyIdle();
      });
  }

  private notifyIdle(): void {
    if (this.queueDepth === 0 && this.running === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const waiter of waiters) waiter();
    }
  }

  /** Resolves once nothing is queued, reserved or running. */
  idle(): Promise<void> {
    if (this.queueDepth === 0 && this.running === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }
}
