// Built-in hook (rank 0): writes the trained backbone to <modelSaveDir>/backbone.safetensors when
// training ends (not after an interrupt, whose last checkpoint is the state to resume from).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { tidy } from '../../torch/scope.js';
import { saveSafetensors } from '../../torch/safetensors.js';
import type { Module } from '../../torch/nn/module.js';
import { withDiskErrors } from '../disk.js';
import type { TrainEndState, TrainHook } from './train-hook.js';

export class FinalModelWriter implements TrainHook {
  /** The model file written, or null (not yet, or interrupted). */
  modelPath: string | null = null;

  /** `metadata` goes into the safetensors header (what `plsc export` and `plsc eval` read back). */
  constructor(
    private readonly outputDir: string,
    private readonly backbone: Module,
    private readonly metadata: Record<string, string>,
  ) {}

  onTrainEnd(state: TrainEndState): void {
    mkdirSync(this.outputDir, { recursive: true });
    if (state.interrupted) return;
    const path = join(this.outputDir, 'backbone.safetensors');
    tidy(() => withDiskErrors(path, 'write the trained model', () => saveSafetensors(path, this.backbone.stateDict(), this.metadata)));
    this.modelPath = path;
  }
}
