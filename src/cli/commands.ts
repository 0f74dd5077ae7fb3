// Every `plsc` command, in the order `plsc --help` lists them. Each command's module is loaded only
// when it runs (so `plsc launch` starts fast and never loads libtorch in the launcher process).
// `plsc bench` lives in bench/, which src never imports: bin/plsc.js passes its entry in.

export type CommandMain = (argv: string[]) => Promise<number | void>;

export interface CommandEntry {
  /** As typed after `plsc`. */
  name: string;
  /** One line for `plsc --help`. */
  summary: string;
  load: () => Promise<CommandMain>;
}

/** The command table; `bench` (bench/cli.ts's BENCH_COMMAND) is listed second when given. */
export function plscCommands(bench?: CommandEntry): readonly CommandEntry[] {
  return [
    {
      name: 'launch',
      summary: 'start N workers with torchrun-compatible env: plsc launch --nproc-per-node N -- CMD ...',
      load: async () => (await import('../distributed/cli.js')).launchCommand,
    },
    ...(bench !== undefined ? [bench] : []),
    { name: 'info', summary: 'print libtorch, thread and backend information', load: async () => (await import('./info.js')).infoCommand },
    { name: 'serve', summary: 'HTTP serving of an exported model: plsc serve --model model.onnx', load: async () => (await import('../serve/cli.js')).serveCommand },
    { name: 'data', summary: 'datasets: plsc data convert|make-bin ...', load: async () => (await import('../data/cli.js')).dataCommand },
    { name: 'export', summary: 'ONNX export of a checkpoint: plsc export --checkpoint DIR --out model.onnx', load: async () => (await import('../serve/export-cli.js')).exportCommand },
    { name: 'eval', summary: 'verification on insightface .bin files: plsc eval --checkpoint DIR --bin lfw.bin', load: async () => (await import('../eval/cli.js')).evalCommand },
    { name: 'train', summary: 'training: plsc train --config file.yaml [--set key=value ...] [--nproc N]', load: async () => (await import('../train/cli.js')).trainCommand },
    { name: 'reshard', summary: 're-split a checkpoint\'s FC shards: plsc reshard --checkpoint DIR --world-size M --out DIR', load: async () => (await import('../train/cli.js')).reshardCommand },
    { name: 'demo', summary: 'train on synthetic identities, verify, export, print the serve command: plsc demo [--quick]', load: async () => (await import('../train/cli.js')).demoCommand },
    { name: 'checkpoint', summary: 'check a checkpoint\'s files (sha256, headers, finite values): plsc checkpoint verify DIR', load: async () => (await import('../train/checkpoint-cli.js')).checkpointCommand },
    { name: 'grow', summary: 'append classes to a checkpoint (imprinted from images): plsc grow --checkpoint DIR --add N [--images DIR] --out DIR', load: async () => (await import('../train/grow-cli.js')).growCommand },
    { name: 'plan', summary: 'memory per worker of a run, and whether it fits here: plsc plan --classes N --emb D --batch B --sample-rate R [--workers W]', load: async () => (await import('../train/plan-cli.js')).planCommand },
  ];
}
