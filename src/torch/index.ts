export * from './native.js';
export * from './scope.js';
export { profileOps, type OpArg, type OpResult, type OpProfileEntry } from './dispatch.js';
export * from './tensor.js';
import './tensor-methods.js';
export * from './autograd.js';
export * as ops from './ops.js';
export * from './gradcheck.js';
export type { MemoryFormat } from './ops.js';
