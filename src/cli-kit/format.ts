// How the CLI commands print paths, shell commands and sizes.
import { relative, resolve } from 'node:path';

/** A path as the user would type it: relative to the working directory when that is shorter. */
export function shown(path: string): string {
  const absolute = resolve(path);
  const rel = relative(process.cwd(), absolute);
  return rel !== '' && !rel.startsWith('..') && rel.length < absolute.length ? rel : absolute;
}

/** `text` as one POSIX shell word (quoted only when it needs to be). */
export function shellQuote(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}

/** A byte count in B, KiB, MiB or GiB. */
export function formatBytes(bytes: number): string {
  if (bytes >= 1 << 30) return `${(bytes / (1 << 30)).toFixed(2)} GiB`;
  if (bytes >= 1 << 20) return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
  if (bytes >= 1 << 10) return `${(bytes / (1 << 10)).toFixed(1)} KiB`;
  return `${bytes} B`;
}
