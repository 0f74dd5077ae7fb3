// From a request's image bytes to embeddings: check the pixel budget from the headers, decode
// (fairly across requests), queue for the dynamic batcher and run the model.
import type { DynamicBatcher } from './batcher.js';
import type { FairDecodeQueue } from './decode-queue.js';
import type { MetricCounter } from './metrics.js';
import { DEFAULT_MAX_INPUT_PIXELS, PayloadTooLargeError, decodeImageToTensor, readImageHeader, type ImageHeader } from './preprocess.js';

export interface ImagePipelineOptions {
  /** Model input size, and the largest image (in pixels) accepted before decoding fully. */
  geometry: { height: number; width: number; maxInputPixels?: number };
  /** Most pixels (sum of width x height from the image headers) in one request. */
  maxRequestPixels: number;
  /** Counts every decoded image. */
  decoded: MetricCounter;
}

export class ImagePipeline {
  constructor(
    private readonly batcher: DynamicBatcher<Float32Array, Float32Array>,
    private readonly decodeQueue: FairDecodeQueue,
    private readonly options: ImagePipelineOptions,
  ) {}

  /** Raw embeddings of `images`, in order; `field` names them in errors (`images[2]`), or 'request body' for a raw body. */
  async embed(images: Buffer[], field: string, rawBody: boolean): Promise<Float32Array[]> {
    const { geometry } = this.options;
    const admission = this.batcher.admit(images.length);
    const names = images.map((_, i) => (rawBody ? 'request body' : `${field}[${i}]`));
    const decodes = this.decodeQueue.group();
    let tensors: Float32Array[];
    try {
      const headers = await Promise.all(images.map((bytes, i) => readImageHeader(bytes, names[i]!, geometry.maxInputPixels ?? DEFAULT_MAX_INPUT_PIXELS)));
      this.checkPixelBudget(headers, names);
      tensors = await Promise.all(
        images.map((bytes, i) =>
          decodes.run(async () => {
            const tensor = await decodeImageToTensor(bytes, names[i]!, geometry);
            this.options.decoded.inc();
            return tensor;
          }),
        ),
      );
    } catch (error) {
      decodes.cancel(error instanceof Error ? error : new Error(String(error)));
      admission.release();
      throw error;
    }
    return admission.submit(tensors);
  }

  private checkPixelBudget(headers: ImageHeader[], names: string[]): void {
    const { maxRequestPixels } = this.options;
    const total = headers.reduce((sum, { width, height }) => sum + width * height, 0);
    if (total <= maxRequestPixels) return;
    let largest = 0;
    headers.forEach(({ width, height }, i) => {
      if (width * height > headers[largest]!.width * headers[largest]!.height) largest = i;
    });
    const { width, height } = headers[largest]!;
    throw new PayloadTooLargeError(
      `the request's ${headers.length} image${headers.length === 1 ? '' : 's'} hold ${total} pixels in all (largest ${names[largest]}: ${width}x${height}), ` +
        `over the budget of ${maxRequestPixels} pixels per request; send fewer or smaller images`,
    );
  }
}
