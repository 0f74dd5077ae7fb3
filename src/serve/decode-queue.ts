import { positiveInteger } from '../util/validate.js';
// Fair scheduling of image decodes across requests. Decoding runs on a few threads; started in
// arrival order, one request with many large images would hold every thread and a one-image request
// arriving after it would wait for all of them. Here each request is a group, at most `concurrency`
// decodes run at a time, and a free slot goes to the groups in turn (round robin), so a small
// request waits for at most the decodes already running plus one turn of each other request.

interface QueuedTask {
  start: () => void;
  cancel: (reason: Error) => void;
}

/** The decodes of one request. */
export interface DecodeGroup {
  /** Queue `task`; it starts when this group's turn comes and a slot is free. */
  run<T>(task: () => Promise<T>): Promise<T>;
  /** Drop this group's tasks that have not started (their promises reject with `reason`). */
  cancel(reason: Error): void;
}

export class FairDecodeQueue {
  private running = 0;
  /** Groups with queued tasks, in turn order: the head's next task starts first. */
  private readonly turns: QueuedTask[][] = [];

  constructor(readonly concurrency: number) {
    positiveInteger(concurrency, 'decode queue: concurrency');
  }

  /** Decodes running now. */
  get active(): number {
    return this.running;
  }

  /** Decodes waiting for a slot, over all groups. */
  get waiting(): number {
    return this.turns.reduce((sum, tasks) => sum + tasks.length, 0);
  }

  group(): DecodeGroup {
    const tasks: QueuedTask[] = [];
    return {
      run: <T>(task: () => Promise<T>): Promise<T> =>
        new Promise<T>((resolve, reject) => {
          tasks.push({
            start: () => {
              Promise.resolve()
                .then(task)
                .then(resolve, reject)
                .finally(() => {
                  this.running -= 1;
                  this.pump();
                });
            },
            cancel: reject,
          });
          if (tasks.length === 1) this.turns.push(tasks);
          this.pump();
        }),
      cancel: (reason: Error) => {
        const dropped = tasks.splice(0);
        const at = this.turns.indexOf(tasks);
        if (at >= 0) this.turns.splice(at, 1);
        for (const task of dropped) task.cancel(reason);
      },
    };
  }

  private pump(): void {
    while (this.running < this.concurrency && this.turns.length > 0) {
      const tasks = this.turns.shift()!;
      const next = tasks.shift()!;
      if (tasks.length > 0) this.turns.push(tasks);
      this.running += 1;
      next.start();
    }
  }
}
