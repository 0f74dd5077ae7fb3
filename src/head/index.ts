export * from './margin.js';
export * from './class-sampler.js';
export * from './partial-fc.js';
