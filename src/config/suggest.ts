// "Did you mean ...?" for misspelt setting names: the closest known name by edit distance.

/**
 * Edit distance with adjacent transpositions (optimal string alignment: paht -> path is 1),
 * compared case-insensitively.
 */
export function editDistance(a: string, b: string): number {
  const s = a.toLowerCase();
  const t = b.toLowerCase();
  const d: number[][] = Array.from({ length: s.length + 1 }, (_, i) => Array.from({ length: t.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= s.length; i++) {
    for (let j = 1; j <= t.length; j++) {
      const cost = s[i - 1] === t[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && s[i - 1] === t[j - 2] && s[i - 2] === t[j - 1]) best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[s.length]![t.length]!;
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
