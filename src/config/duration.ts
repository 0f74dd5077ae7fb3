// Durations as people write them in configs and on the command line: "90s", "10m", "2h", "1h30m",
// "1d", or a plain number of seconds.

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };
const DURATION = /^(?:\d+(?:\.\d+)?[smhd])+$/;

/** Seconds in a duration; throws an error that says what is accepted. */
export function parseDuration(value: unknown): number {
  if (typeof value === 'number') {
    if (Number.isFinite(value) && value > 0) return value;
    throw new Error(`must be a positive number of seconds or a duration such as "10m", "2h", "1h30m", got ${value}`);
  }
  const text = typeof value === 'string' ? value.trim().toLowerCase() : '';
  if (!DURATION.test(text)) throw new Error(`must be a duration such as "90s", "10m", "2h", "1h30m" (units s, m, h, d), got ${JSON.stringify(value)}`);
  let seconds = 0;
  for (const [, amount, unit] of text.matchAll(/(\d+(?:\.\d+)?)([smhd])/g)) seconds += Number(amount) * UNIT_SECONDS[unit as string]!;
  if (!(seconds > 0)) throw new Error(`must be longer than zero, got ${JSON.stringify(value)}`);
  return seconds;
}
