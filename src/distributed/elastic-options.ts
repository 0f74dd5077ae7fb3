// The options of an elastic launch (torchrun's names), parsed without loading libtorch: the launcher
// loads the store binding only when a launch is elastic.

export const DEFAULT_RDZV_PORT = 29400;

export interface ElasticSettings {
  /** Host of the rendezvous store (every launcher must reach it; the launcher on that host hosts it). */
  endpointHost: string;
  endpointPort: number;
  runId: string;
  minNodes: number;
  maxNodes: number;
  /** How long a launcher waits for a round to reach MIN launchers, or for a new round to open (default 600 s). */
  timeoutMs?: number;
  /** Once MIN launchers are there, how long to wait for more (default 30 s, torchrun's last call). */
  lastCallMs?: number;
  /** Between looks at the store while the workers run (default 500 ms). */
  pollMs?: number;
}

/** Parses torchrun's --nnodes: N or MIN:MAX. */
export function parseNodeRange(text: string): { minNodes: number; maxNodes: number } {
  const match = /^(\d+)(?::(\d+))?$/.exec(text.trim());
  if (match === null) throw new Error(`--nnodes must be N or MIN:MAX, got ${JSON.stringify(text)}`);
  const minNodes = Number(match[1]);
  const maxNodes = match[2] === undefined ? minNodes : Number(match[2]);
  if (minNodes < 1 || maxNodes < minNodes) throw new Error(`--nnodes ${text}: needs 1 <= MIN <= MAX`);
  return { minNodes, maxNodes };
}

/** Parses --rdzv-endpoint HOST[:PORT] (an IPv6 address in brackets: [::1]:29400). */
export function parseEndpoint(text: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d+))?$/.exec(text.trim());
  if (match === null) throw new Error(`--rdzv-endpoint must be HOST or HOST:PORT, got ${JSON.stringify(text)}`);
  const port = match[3] === undefined ? DEFAULT_RDZV_PORT : Number(match[3]);
  if (!(port >= 1 && port <= 65535)) throw new Error(`--rdzv-endpoint ${text}: port ${port} is not between 1 and 65535`);
  return { host: (match[1] ?? match[2]) as string, port };
}
