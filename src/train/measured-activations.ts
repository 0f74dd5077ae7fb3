// Activation memory per training sample of the built-in backbones, as measured on this machine by:
//   plsc plan --measure-activations --write src/train/measured-activations.ts
// (generated; rerun that command to refresh it). plsc plan scales it by the batch and by the pixel
// count when planning another image size.

import type { MeasuredActivation } from './activation-record.js';

export const MEASURED_ACTIVATIONS: readonly MeasuredActivation[] = [
  { model: 'mobilefacenet', imageSize: 112, embeddingSize: 512, bytesPerSample: 75694080, batches: [1, 3] },
  { model: 'iresnet18', imageSize: 112, embeddingSize: 512, bytesPerSample: 93192192, batches: [1, 3] },
  { model: 'iresnet34', imageSize: 112, embeddingSize: 512, bytesPerSample: 115392512, batches: [1, 3] },
  { model: 'iresnet50', imageSize: 112, embeddingSize: 512, bytesPerSample: 130525184, batches: [1, 3] },
  { model: 'iresnet100', imageSize: 112, embeddingSize: 512, bytesPerSample: 191559680, batches: [1, 3] },
];
