// The shape of one row of measured-activations.ts (generated) and of a fresh measurement.

/** One backbone's measured activation memory (a row of measured-activations.ts). */
export interface MeasuredActivation {
  model: string;
  imageSize: number;
  embeddingSize: number;
  /** Peak RSS growth per sample of one train-mode forward + backward. */
  bytesPerSample: number;
  /** The two batch sizes the slope was taken between. */
  batches: [number, number];
}
