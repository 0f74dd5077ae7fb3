// The optim namespace: optimizers, gradient clipping and learning-rate schedules.
export * from './optimizer.js';
export * from './sgd.js';
export * from './row-sparse-sgd.js';
export * from './adamw.js';
export * from './clip-grad.js';
export * from './lr-scheduler.js';
export * from './checkpoint.js';
