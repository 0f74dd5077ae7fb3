export * from './margin.js';
export * from './class-sampler.js';
export * from './shard-layout.js';
export * from './partial-fc.js';
