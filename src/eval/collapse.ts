// An undertrained or broken backbone can map every image to (nearly) the same embedding. The LFW
// protocol then still prints a number, the share of the larger pair class (0.5 with balanced pairs,
// std 0), which reads like a poor result rather than no result. This names the case.
import type { VerificationResult } from './verification.js';

/**
 * True when no threshold of the accuracy grid tells same-identity pairs from different ones: at every
 * threshold the same share of positive and negative pairs is accepted (all or none when every pair
 * distance falls between two neighbouring thresholds, as collapsed embeddings give).
 */
export function embeddingsCollapsed(result: VerificationResult): boolean {
  if (result.positivePairs === 0 || result.negativePairs === 0) return false;
  const { tpr, fpr } = result.roc;
  return tpr.every((rate, i) => rate === fpr[i]);
}

/** A warning line for `target` when its embeddings have collapsed, else undefined. */
export function collapsedEmbeddingsWarning(result: VerificationResult, target: string): string | undefined {
  if (!embeddingsCollapsed(result)) return undefined;
  return (
    `warning: ${target}: the embeddings have collapsed: no distance threshold separates same from different pairs, ` +
    `so accuracy ${result.accuracy.toFixed(4)} ± ${result.std.toFixed(4)} is only the share of the larger pair class (XNorm ${result.xnorm.toPrecision(4)}); ` +
    'the backbone is undertrained or broken'
  );
}
