// The nn namespace: Module, layers and initializers.
export * from './module.js';
export * from './conv.js';
export * from './linear.js';
export * from './batchnorm.js';
export * from './activation.js';
export * from './dropout.js';
export * from './pooling.js';
export * from './shape.js';
export * from './sequential.js';
export * as init from './init.js';
