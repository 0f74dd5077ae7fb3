// Bearer-token authentication of `plsc serve`: with a token set, every route except GET /healthz
// answers 401 unless the request carries `Authorization: Bearer <token>` (compared in constant time).
import { createHash, timingSafeEqual } from 'node:crypto';
import { rootLevel } from './root-level.js';

export interface AuthOptions {
  /** A non-empty token (createServer checks it before loading the model). */
  token: string;
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

export const authPlugin = rootLevel<AuthOptions>('plsc-auth', async (app, { token }) => {
  const tokenDigest = digest(token);
  app.addHook('onRequest', async (request, reply) => {
    if (request.url === '/healthz' || request.url.startsWith('/healthz?')) return;
    const header = request.headers.authorization ?? '';
    const match = /^Bearer\s+(.+)$/i.exec(header);
    if (!match || !timingSafeEqual(digest(match[1]!.trim()), tokenDigest)) {
      reply.header('www-authenticate', 'Bearer');
      return reply.code(401).send({ statusCode: 401, error: 'Unauthorized', message: match ? 'invalid bearer token' : 'missing Authorization: Bearer <token> header' });
    }
  });
});
