export * from './torch/index.js';
export * as nn from './torch/nn/index.js';
export * as optim from './torch/optim/index.js';
export { Module } from './torch/nn/module.js';
export * from './torch/safetensors.js';
