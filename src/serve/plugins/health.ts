// GET /healthz: 200 {"status":"ok", model, classes, queueDepth} while serving, 503 "draining" once
// close() began. Never behind the bearer token.
import type { EmbeddingModelInfo } from '../model.js';
import type { FastifyPluginAsync } from 'fastify';

export interface HealthOptions {
  model: EmbeddingModelInfo;
  /** Classes of /v1/classify, or null when classification is off. */
  classes: number | null;
  queueDepth: () => number;
  draining: () => boolean;
}

export const healthPlugin: FastifyPluginAsync<HealthOptions> = async (app, { model, classes, queueDepth, draining }) => {
  app.get('/healthz', async (_request, reply) => {
    const body = {
      status: draining() ? 'draining' : 'ok',
      model: { input: [3, model.height, model.width], embeddingDim: model.embeddingDim },
      classes,
      queueDepth: queueDepth(),
    };
    return reply.code(draining() ? 503 : 200).send(body);
  });
};
