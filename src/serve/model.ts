// An exported embedding model ([N, 3, H, W] float32 in, [N, D] float32 out) on onnxruntime-node.
import '../onnx/ort-telemetry.js';
import ort from 'onnxruntime-node';

export interface EmbeddingModelOptions {
  /** onnxruntime intra-op threads (default: onnxruntime's choice, one per core). */
  intraOpThreads?: number;
  /** Input [height, width] when the model's input shape leaves them symbolic. */
  inputSize?: readonly [number, number];
}

export interface EmbeddingModelInfo {
  inputName: string;
  outputName: string;
  /** Model input height and width. */
  height: number;
  width: number;
  embeddingDim: number;
  /** A fixed batch dimension baked into the model, or null when it is dynamic. */
  fixedBatch: number | null;
}

export class EmbeddingModel {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly info: EmbeddingModelInfo,
  ) {}

  /** Load an ONNX model from a path or bytes and probe its input/output shapes with one zero image. */
  static async load(model: string | Uint8Array, options: EmbeddingModelOptions = {}): Promise<EmbeddingModel> {
    const where = typeof model === 'string' ? `model ${model}` : 'model';
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      ...(options.intraOpThreads ? { intraOpNumThreads: options.intraOpThreads } : {}),
      // Spinning intra-op threads would steal the cores that image decoding (sharp) and HTTP need.
      extra: { session: { intra_op: { allow_spinning: '0' } } },
    };
    let session: ort.InferenceSession;
    try {
      session = typeof model === 'string' ? await ort.InferenceSession.create(model, sessionOptions) : await ort.InferenceSession.create(model, sessionOptions);
    } catch (error) {
      throw new Error(`${where}: onnxruntime could not load it (${(error as Error).message})`);
    }
    try {
      if (session.inputNames.length !== 1) throw new Error(`${where}: expected exactly one input, found ${session.inputNames.length} (${session.inputNames.join(', ')})`);
      const inputName = session.inputNames[0]!;
      const outputName = session.outputNames[0]!;
      const meta = session.inputMetadata?.[0];
      const shape: readonly (number | string)[] = meta && meta.isTensor ? meta.shape : [];
      if (meta && meta.isTensor && meta.type !== 'float32') throw new Error(`${where}: input '${inputName}' is ${meta.type}, expected float32`);
      if (shape.length !== 0 && shape.length !== 4) throw new Error(`${where}: input '${inputName}' has shape [${shape.join(', ')}], expected [N, 3, H, W]`);
      if (shape.length === 4 && typeof shape[1] === 'number' && shape[1] !== 3) throw new Error(`${where}: input '${inputName}' has ${shape[1]} channels, expected 3 (RGB)`);
      let height = typeof shape[2] === 'number' && shape[2] > 0 ? shape[2] : undefined;
      let width = typeof shape[3] === 'number' && shape[3] > 0 ? shape[3] : undefined;
      if (options.inputSize) [height, width] = options.inputSize;
      if (height === undefined || width === undefined) {
        throw new Error(`${where}: input '${inputName}' does not fix its height and width ([${shape.join(', ')}]); pass inputSize`);
      }
      const fixedBatch = typeof shape[0] === 'number' && shape[0] > 0 ? shape[0] : null;
      const probeBatch = fixedBatch ?? 1;
      const probe = await session.run({ [inputName]: new ort.Tensor('float32', new Float32Array(probeBatch * 3 * height * width), [probeBatch, 3, height, width]) });
      const output = probe[outputName] as ort.Tensor;
      if (output.type !== 'float32' || output.dims.length !== 2 || Number(output.dims[0]) !== probeBatch) {
        throw new Error(`${where}: output '${outputName}' is ${output.type} [${output.dims.join(', ')}], expected float32 [N, D]`);
      }
      return new EmbeddingModel(session, { inputName, outputName, height, width, embeddingDim: Number(output.dims[1]), fixedBatch });
    } catch (error) {
      await session.release();
      throw error;
    }
  }

  /** Embed a batch of CHW float32 images; returns one D-vector per image (raw, not normalized). */
  async embed(images: readonly Float32Array[]): Promise<Float32Array[]> {
    const { inputName, outputName, height, width, embeddingDim, fixedBatch } = this.info;
    const imageSize = 3 * height * width;
    const results: Float32Array[] = [];
    const step = fixedBatch ?? Math.max(1, images.length);
    for (let first = 0; first < images.length; first += step) {
      const count = Math.min(step, images.length - first);
      const rows = fixedBatch ?? count;
      const input = new Float32Array(rows * imageSize);
      for (let i = 0; i < count; i++) {
        const image = images[first + i]!;
        if (image.length !== imageSize) throw new Error(`image ${first + i} has ${image.length} values, the model wants ${imageSize}`);
        input.set(image, i * imageSize);
      }
      const output = (await this.session.run({ [inputName]: new ort.Tensor('float32', input, [rows, 3, height, width]) }))[outputName] as ort.Tensor;
      const data = output.data as Float32Array;
      for (let i = 0; i < count; i++) results.push(data.slice(i * embeddingDim, (i + 1) * embeddingDim));
    }
    return results;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
