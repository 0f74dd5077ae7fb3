// Prints compiler/linker settings for libtorch, for binding.gyp.
// libtorch comes from $LIBTORCH (official archive or pip's torch/ folder layout: include/ and lib/),
// else from Debian's system install (libtorch-dev).
'use strict';
const fs = require('fs');
const path = require('path');

function locate() {
  const fromEnv = process.env.LIBTORCH;
  if (fromEnv) {
    const root = path.resolve(fromEnv);
    const header = path.join(root, 'include', 'ATen', 'ATen.h');
    if (!fs.existsSync(header)) {
      throw new Error(`LIBTORCH=${fromEnv}: ${header} not found (expected the libtorch layout with include/ and lib/)`);
    }
    return {
      includes: [path.join(root, 'include'), path.join(root, 'include', 'torch', 'csrc', 'api', 'include')],
      libdir: path.join(root, 'lib'),
    };
  }
  const header = '/usr/include/ATen/ATen.h';
  if (!fs.existsSync(header)) {
    throw new Error('libtorch not found: install Debian libtorch-dev (make deps) or set LIBTORCH to a libtorch directory');
  }
  return { includes: ['/usr/include/torch/csrc/api/include'], libdir: null };
}

function hasGloo(includes) {
  const dirs = [...includes, '/usr/include', '/usr/local/include'];
  return dirs.some((d) => fs.existsSync(path.join(d, 'gloo', 'config.h')));
}

function hasCuda(libdir) {
  const dir = libdir ?? '/usr/lib/x86_64-linux-gnu';
  return fs.existsSync(path.join(dir, 'libtorch_cuda.so'));
}

const loc = locate();
const what = process.argv[2];
if (what === '--includes') {
  console.log(loc.includes.join(' '));
} else if (what === '--defines') {
  const defs = [];
  if (hasGloo(loc.includes)) defs.push('USE_C10D_GLOO');
  if (hasCuda(loc.libdir)) defs.push('USE_C10D_NCCL', 'PLSC_WITH_CUDA');
  if (process.env.PLSC_CXX11_ABI === '0') defs.push('_GLIBCXX_USE_CXX11_ABI=0');
  console.log(defs.join(' '));
} else if (what === '--libs') {
  const libs = [];
  if (loc.libdir) libs.push(`-L${loc.libdir}`, `-Wl,-rpath,${loc.libdir}`);
  libs.push('-ltorch', '-ltorch_cpu', '-lc10');
  if (hasCuda(loc.libdir)) libs.push('-ltorch_cuda', '-lc10_cuda');
  console.log(libs.join(' '));
} else {
  console.error('usage: torch-config.cjs --includes|--defines|--libs');
  process.exit(2);
}
