// Commands contributed by the areas of the library (one line each).
import { registerCommand } from './main.js';

registerCommand('serve', 'HTTP serving of an exported model: plsc serve --model model.onnx', async () => (await import('../serve/cli.js')).serveCommand);
registerCommand('data', 'datasets: plsc data convert|make-bin ...', async () => (await import('../data/cli.js')).dataCommand);
registerCommand('export', 'ONNX export of a checkpoint: plsc export --checkpoint DIR --out model.onnx', async () => (await import('../serve/export-cli.js')).exportCommand);
registerCommand('eval', 'verification on insightface .bin files: plsc eval --checkpoint DIR --bin lfw.bin', async () => (await import('../eval/cli.js')).evalCommand);
registerCommand('train', 'training: plsc train --config file.yaml [--set key=value ...] [--nproc N]', async () => (await import('../train/cli.js')).trainCommand);
registerCommand('reshard', 're-split a checkpoint\'s FC shards: plsc reshard --checkpoint DIR --world-size M --out DIR', async () => (await import('../train/cli.js')).reshardCommand);
registerCommand('demo', 'train on synthetic identities, verify, export, print the serve command: plsc demo [--quick]', async () => (await import('../train/cli.js')).demoCommand);
registerCommand('checkpoint', 'check a checkpoint\'s files (sha256, headers, finite values): plsc checkpoint verify DIR', async () => (await import('../train/checkpoint-cli.js')).checkpointCommand);
registerCommand('grow', 'append classes to a checkpoint (imprinted from images): plsc grow --checkpoint DIR --add N [--images DIR] --out DIR', async () => (await import('../train/grow-cli.js')).growCommand);
registerCommand('plan', 'memory per worker of a run, and whether it fits here: plsc plan --classes N --emb D --batch B --sample-rate R [--workers W]', async () => (await import('../train/plan-cli.js')).planCommand);
