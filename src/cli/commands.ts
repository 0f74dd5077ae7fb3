// Commands contributed by the areas of the library (one line each).
import { registerCommand } from './main.js';

registerCommand('serve', 'HTTP serving of an exported model: plsc serve --model model.onnx', async () => (await import('../serve/cli.js')).serveCommand);
