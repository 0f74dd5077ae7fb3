// Noticing that the process that started us has exited. npm exec (npx) does not forward SIGTERM to
// the command it runs: `kill` of an `npx plsc serve` ends npm and leaves the server running,
// re-parented to init or a subreaper. The parent's exit shows as a change of process.ppid.

/**
 * Calls `onExit` once, with the former parent's pid, when `parent` (by default this process's parent
 * now) is no longer this process's parent. Pass the pid read at start-up: a parent that dies while
 * the model loads is then noticed at the first poll. Polls every `intervalMs`; the timer does not
 * keep the process alive. Returns a function that stops watching.
 */
export function watchParent(onExit: (formerParent: number) => void, intervalMs = 1000, parent = process.ppid): () => void {
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    onExit(parent);
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

/** True when npm or npx started this process (npm sets npm_command in the environment it passes on). */
export function startedByNpm(env: NodeJS.ProcessEnv = process.env): boolean {
  return typeof env.npm_command === 'string' && env.npm_command.length > 0;
}
