// Commands contributed by the areas of the library (one line each).
import { registerCommand } from './main.js';

registerCommand('serve', 'HTTP serving of an exported model: plsc serve --model model.onnx', async () => (await import('../serve/cli.js')).serveCommand);
registerCommand('data', 'datasets: plsc data convert|make-bin ...', async () => (await import('../data/cli.js')).dataCommand);
registerCommand('export', 'ONNX export of a checkpoint: plsc export --checkpoint DIR --out model.onnx', async () => (await import('../serve/export-cli.js')).exportCommand);
registerCommand('eval', 'verification on insightface .bin files: plsc eval --checkpoint DIR --bin lfw.bin', async () => (await import('../eval/cli.js')).evalCommand);
