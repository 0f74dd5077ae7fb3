// Fastify encapsulates a registered plugin: its hooks cover only its own routes. A plugin marked
// with the skip-override symbol (what the fastify-plugin package sets) runs in the parent's context
// instead, so its hooks cover every route of the server, the 404 answer included.
import type { FastifyPluginAsync, FastifyPluginOptions } from 'fastify';

export function rootLevel<Options extends FastifyPluginOptions>(name: string, plugin: FastifyPluginAsync<Options>): FastifyPluginAsync<Options> {
  return Object.assign(plugin, { [Symbol.for('skip-override')]: true, [Symbol.for('fastify.display-name')]: name });
}
