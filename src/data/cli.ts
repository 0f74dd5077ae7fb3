// `plsc data <subcommand>`: dataset tools (convert, make-bin).
import { UsageError, integerFlag, oneOf, required, runCommand, type CommandIO } from '../cli-kit/args.js';
import type { InputFormat, OutputFormat } from './convert.js';
import type { SampleSource } from './source.js';

/** Where the command writes (process.stdout / process.stderr unless a test passes its own). */
export interface DataCommandIO {
  stdout: { write(chunk: string): unknown };
  stderr: { write(chunk: string): unknown; isTTY?: boolean };
}

const DATA_USAGE = `usage: plsc data <subcommand> [options]

subcommands:
  convert    convert a dataset: plsc data convert --from list|folder|rec|base64 --to list|rec IN OUT
  make-bin   build a verification .bin (lfw.bin layout): plsc data make-bin --list label.txt|--synthetic N --pairs P --out file.bin

plsc data <subcommand> --help for its options`;

const CONVERT_USAGE = `usage: plsc data convert --from list|folder|rec|base64 --to list|rec IN OUT [options]

  IN                    list: the list file; folder: the root folder (one sub-folder per class);
                        rec: the .rec (its .idx beside it); base64: the shard file list
  OUT                   rec: the .rec to write (.idx written beside it);
                        list: a .txt list path, or a folder (gets label.txt, and images/ when extracted)
  --skip-bad            leave out samples that cannot be read (listed at the end) instead of stopping
  --verify              fully decode every image before writing it (catches corrupt files)
  --num-classes N       check the input's class count instead of inferring it
  --concurrency N       parallel reads (default 16)
  --plain-keys          rec output: keys 0..N-1 without insightface's header and identity records`;

const MAKE_BIN_USAGE = `usage: plsc data make-bin (--list label.txt | --synthetic N) --pairs P --out file.bin [options]

Writes the insightface validation layout (pickle of (bins, issame_list), as lfw.bin): pair i is
same-identity when i is even, different-identity when odd; pairs are drawn from --seed.

  --list PATH           PLSC list file (path label) of aligned face images
  --synthetic N         N synthetic identities (SyntheticFaces) instead of a list
  --images-per-class K  with --synthetic: images per identity (default 20)
  --pairs P             number of pairs, ceil(P/2) same and floor(P/2) different   (required)
  --out PATH            output .bin                                               (required)
  --size S              side length the images are resized to (default 112)
  --seed S              pair drawing (and synthetic image) seed (default 0)
  --format jpeg|png     image encoding (default jpeg)
  --quality Q           JPEG quality (default 95)
  --protocol 2|3|4|5    pickle protocol (default 4; 2 is what insightface's own bins use)`;

const INPUT_FORMATS: readonly InputFormat[] = ['list', 'folder', 'rec', 'base64'];
const OUTPUT_FORMATS: readonly OutputFormat[] = ['list', 'rec'];

/** Progress on stderr: a redrawn line on a terminal, a line every 10% otherwise. */
function progressPrinter(io: DataCommandIO, what: string): { update(done: number, total: number): void; end(): void } {
  let lastTenth = 0;
  let drawn = false;
  return {
    update(done, total) {
      if (io.stderr.isTTY === true) {
        io.stderr.write(`\r${what} ${done}/${total} (${Math.floor((done / total) * 100)}%)\x1b[K`);
        drawn = true;
        return;
      }
      const tenth = Math.floor((done / total) * 10);
      if (tenth !== lastTenth && (tenth > lastTenth || done === total)) {
        lastTenth = tenth;
        io.stderr.write(`${what} ${done}/${total} (${tenth * 10}%)\n`);
      }
    },
    end() {
      if (drawn) io.stderr.write('\n');
      drawn = false;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// plsc data convert

function convertSubcommand(argv: string[], io: DataCommandIO): Promise<number> {
  const options = {
    from: { type: 'string' },
    to: { type: 'string' },
    'skip-bad': { type: 'boolean' },
    verify: { type: 'boolean' },
    'num-classes': { type: 'string' },
    concurrency: { type: 'string' },
    'plain-keys': { type: 'boolean' },
  } as const;
  return runCommand({ name: 'data convert', usage: CONVERT_USAGE, options, positionals: true, io }, argv, async ({ values, positionals }) => {
    const from = oneOf(values.from, 'from', INPUT_FORMATS);
    const to = oneOf(values.to, 'to', OUTPUT_FORMATS);
    if (positionals.length !== 2) throw new UsageError(`expected IN and OUT, got ${positionals.length} path${positionals.length === 1 ? '' : 's'}`);
    const [input, output] = positionals as [string, string];
    if (values['plain-keys'] && to !== 'rec') throw new UsageError('--plain-keys only applies to --to rec');
    const numClasses = integerFlag(values['num-classes'], 'num-classes');
    const concurrency = integerFlag(values.concurrency, 'concurrency');

    const { convertDataset } = await import('./convert.js');
    const progress = progressPrinter(io, 'converting');
    let result;
    try {
      result = await convertDataset({
        from,
        to,
        input,
        output,
        onBadSample: values['skip-bad'] ? 'skip' : 'error',
        verify: values.verify ?? false,
        insightfaceHeader: !values['plain-keys'],
        onProgress: ({ done, total }) => progress.update(done, total),
        ...(numClasses === undefined ? {} : { numClasses }),
        ...(concurrency === undefined ? {} : { concurrency }),
      });
    } finally {
      progress.end();
    }
    io.stdout.write(`wrote ${result.written} samples (${result.numClasses} classes): ${result.outputs.join(', ')}\n`);
    if (result.skipped.length > 0) {
      const shown = result.skipped.slice(0, 20);
      io.stderr.write(`skipped ${result.skipped.length} unreadable sample${result.skipped.length === 1 ? '' : 's'}:\n`);
      for (const s of shown) io.stderr.write(`  sample ${s.index} (${s.where}): ${s.reason}\n`);
      if (result.skipped.length > shown.length) io.stderr.write(`  ... and ${result.skipped.length - shown.length} more\n`);
    }
    return 0;
  });
}

// ---------------------------------------------------------------------------------------------
// plsc data make-bin (verification .bin files; the writer lives in src/data/bin-file.ts)

function makeBinSubcommand(argv: string[], io: DataCommandIO): Promise<number> {
  const options = {
    list: { type: 'string' },
    synthetic: { type: 'string' },
    'images-per-class': { type: 'string' },
    pairs: { type: 'string' },
    out: { type: 'string' },
    size: { type: 'string' },
    seed: { type: 'string' },
    format: { type: 'string' },
    quality: { type: 'string' },
    protocol: { type: 'string' },
  } as const;
  return runCommand({ name: 'data make-bin', usage: MAKE_BIN_USAGE, options, io }, argv, async ({ values }) => {
    if ((values.list === undefined) === (values.synthetic === undefined)) throw new UsageError('give exactly one of --list and --synthetic');
    if (values['images-per-class'] !== undefined && values.synthetic === undefined) throw new UsageError('--images-per-class only applies to --synthetic');
    const pairs = required(integerFlag(values.pairs, 'pairs'), 'pairs');
    const out = required(values.out, 'out');
    const size = integerFlag(values.size, 'size', 8) ?? 112;
    const seed = integerFlag(values.seed, 'seed', 0) ?? 0;
    const format = oneOf(values.format, 'format', ['jpeg', 'png'] as const, 'jpeg');
    const quality = integerFlag(values.quality, 'quality');
    if (quality !== undefined && quality > 100) throw new UsageError(`--quality must be at most 100, got ${quality}`);
    const protocol = integerFlag(values.protocol, 'protocol', 2);
    if (protocol !== undefined && protocol > 5) throw new UsageError(`--protocol must be 2, 3, 4 or 5, got ${protocol}`);

    let source: SampleSource;
    let description: string;
    if (values.list !== undefined) {
      const { ListFileSource } = await import('./list-file.js');
      const list = await ListFileSource.open(values.list);
      source = list;
      description = `${list.length} images of ${list.numClasses} identities in ${list.listPath}`;
    } else {
      const identities = integerFlag(values.synthetic, 'synthetic', 2)!;
      const imagesPerClass = integerFlag(values['images-per-class'], 'images-per-class', 2) ?? 20;
      const { SyntheticFaces } = await import('./synthetic.js');
      source = new SyntheticFaces({ numClasses: identities, imagesPerClass, size, seed });
      description = `${identities} synthetic identities x ${imagesPerClass} images`;
    }
    const { makeVerificationBin } = await import('./verification-pairs.js');
    const progress = progressPrinter(io, 'encoding');
    let result;
    try {
      result = await makeVerificationBin({
        source,
        pairs,
        out,
        size,
        seed,
        format,
        onProgress: ({ done, total }) => progress.update(done, total),
        ...(quality === undefined ? {} : { quality }),
        ...(protocol === undefined ? {} : { protocol: protocol as 2 | 3 | 4 | 5 }),
      });
    } finally {
      progress.end();
      await source.close?.();
    }
    const same = result.pairs.filter((p) => p.same).length;
    io.stdout.write(
      `wrote ${result.path}: ${result.pairs.length} pairs (${same} same, ${result.pairs.length - same} different), ` +
        `${result.images} distinct ${size}x${size} ${format} images from ${description}\n`,
    );
    return 0;
  });
}

// ---------------------------------------------------------------------------------------------

const SUBCOMMANDS: Record<string, (argv: string[], io: DataCommandIO) => Promise<number>> = {
  convert: convertSubcommand,
  'make-bin': makeBinSubcommand,
};

/** `plsc data <subcommand> ...`. Returns the exit code: 0 done, 1 failed, 2 usage error. */
export async function dataCommand(argv: string[], io: DataCommandIO = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? io.stderr : io.stdout).write(DATA_USAGE + '\n');
    return name === undefined ? 2 : 0;
  }
  const sub = SUBCOMMANDS[name];
  if (sub === undefined) {
    io.stderr.write(`plsc data: unknown subcommand '${name}'\n\n${DATA_USAGE}\n`);
    return 2;
  }
  return sub(rest, io);
}
