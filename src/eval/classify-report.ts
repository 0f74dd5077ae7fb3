// `plsc eval --classify` output: the JSON record and the terminal tables (a full confusion matrix
// for a few classes, the most confused pairs for many).
import { mostConfusedPairs, type ClassificationResult } from './classify.js';

/** Classes up to which the terminal shows the whole confusion matrix (and every class's accuracy). */
export const FULL_TABLE_CLASSES = 12;
/** Rows of the "most confused pairs" and "lowest accuracy" tables for many classes. */
export const LIST_ROWS = 10;

export function classificationJson(result: ClassificationResult, data: string): Record<string, unknown> {
  return {
    target: 'classification',
    data,
    images: result.images,
    classes: result.classes,
    classes_with_images: result.classesWithImages,
    top1: result.top1,
    top5: result.top5,
    per_class: result.perClass.map((c) => ({ class: c.class, images: c.images, correct: c.correct, accuracy: c.accuracy })),
    confusion: result.confusion.map((cell) => ({ label: cell.truth, predicted: cell.predicted, count: cell.count })),
  };
}

const percent = (value: number): string => (Number.isFinite(value) ? `${(value * 100).toFixed(2)}%` : String(value));

/** The terminal report: accuracy, per-class accuracy and the confusion matrix or most confused pairs. */
export function formatClassification(result: ClassificationResult, data: string): string {
  const lines: string[] = [];
  lines.push(`data: ${data}: ${result.images} images of ${result.classesWithImages} classes (the model has ${result.classes})`);
  lines.push(`top-1 ${percent(result.top1)}   top-5 ${percent(result.top5)}`);
  const few = result.classesWithImages <= FULL_TABLE_CLASSES;
  const perClass = few ? result.perClass : [...result.perClass].sort((a, b) => a.accuracy - b.accuracy || a.class - b.class).slice(0, LIST_ROWS);
  lines.push('', few ? 'per-class accuracy:' : `per-class accuracy (the ${perClass.length} lowest of ${result.classesWithImages}):`);
  lines.push(`${'class'.padStart(8)}  ${'images'.padStart(7)}  ${'correct'.padStart(7)}  ${'accuracy'.padStart(8)}`);
  for (const c of perClass) lines.push(`${String(c.class).padStart(8)}  ${String(c.images).padStart(7)}  ${String(c.correct).padStart(7)}  ${percent(c.accuracy).padStart(8)}`);
  lines.push('');
  if (few) {
    const columns = [...new Set([...result.perClass.map((c) => c.class), ...result.confusion.map((cell) => cell.predicted)])].sort((a, b) => a - b);
    const counts = new Map(result.confusion.map((cell) => [`${cell.truth}:${cell.predicted}`, cell.count]));
    const width = Math.max(5, ...columns.map((c) => String(c).length), ...result.confusion.map((cell) => String(cell.count).length));
    lines.push('confusion matrix (rows: label, columns: predicted class):');
    lines.push(`${'label'.padStart(8)}  ${columns.map((c) => String(c).padStart(width)).join(' ')}`);
    for (const row of result.perClass) {
      lines.push(`${String(row.class).padStart(8)}  ${columns.map((c) => String(counts.get(`${row.class}:${c}`) ?? 0).padStart(width)).join(' ')}`);
    }
  } else {
    const pairs = mostConfusedPairs(result, LIST_ROWS);
    const imagesOf = new Map(result.perClass.map((c) => [c.class, c.images]));
    lines.push(pairs.length === 0 ? 'no confusions: every image\'s best class is its label' : `most confused pairs (${pairs.length} of ${result.confusion.filter((c) => c.truth !== c.predicted).length}; --json has the whole matrix):`);
    if (pairs.length > 0) lines.push(`${'label'.padStart(8)}  ${'predicted'.padStart(9)}  ${'images'.padStart(7)}  ${'of label'.padStart(8)}`);
    for (const cell of pairs) {
      lines.push(`${String(cell.truth).padStart(8)}  ${String(cell.predicted).padStart(9)}  ${String(cell.count).padStart(7)}  ${percent(cell.count / (imagesOf.get(cell.truth) ?? 1)).padStart(8)}`);
    }
  }
  return lines.join('\n') + '\n';
}
