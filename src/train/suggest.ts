// "Did you mean ...?" for misspelt setting names: the closest known name by edit distance.

/** Levenshtein distance, compared case-insensitively (numclass vs numClasses counts the letters only). */
export function editDistance(a: string, b: string): number {
  const s = a.toLowerCase();
  const t = b.toLowerCase();
  let previous = Array.from({ length: t.length + 1 }, (_, j) => j);
  for (let i = 1; i <= s.length; i++) {
    const current = [i];
    for (let j = 1; j <= t.length; j++) {
      const substitution = previous[j - 1]! + (s[i - 1] === t[j - 1] ? 0 : 1);
      current.push(Math.min(previous[j]! + 1, current[j - 1]! + 1, substitution));
    }
    previous = current;
  }
  return previous[t.length]!;
}

/**
 * The known name closest to `name`, when it is close enough to be a likely typo (at most a third of
 * the name's letters differ, or one name contains the other); undefined otherwise.
 */
export function closestName(name: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const distance = editDistance(name, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  if (best === undefined) return undefined;
  const lower = name.toLowerCase();
  const contained = lower.length >= 3 && (best.toLowerCase().includes(lower) || lower.includes(best.toLowerCase()));
  return bestDistance <= Math.max(1, Math.floor(name.length / 3)) || contained ? best : undefined;
}

/** `unknown setting; did you mean numClasses? (known: a, b, c)` */
export function unknownSettingMessage(name: string, known: readonly string[], what = 'setting'): string {
  const suggestion = closestName(name, known);
  return `unknown ${what}${suggestion === undefined ? '' : `; did you mean ${suggestion}?`} (known: ${known.join(', ')})`;
}
