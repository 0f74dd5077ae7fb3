export * from './native.js';
export * from './scope.js';
export * from './dispatch.js';
export * from './tensor.js';
export * from './autograd.js';
export * as ops from './ops.js';
export * from './gradcheck.js';
export type { MemoryFormat } from './ops.js';
