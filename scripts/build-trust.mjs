#!/usr/bin/env node
// Writes assets/public-good/trusted_root.json: the Sigstore public-good trusted
// root that sigil ships, so that verification never fetches a TUF repository.
// The source is the `trusted_root.json` target embedded (base64) in
// @sigstore/tuf's seeds.json for https://tuf-repo-cdn.sigstore.dev — the same
// bytes sigstore-js starts from before any TUF update. The decoded bytes are
// written unchanged, so their sha256 can be compared with the TUF targets
// metadata.
//
// usage: node scripts/build-trust.mjs [--seeds PATH] [--out PATH] [--check]
//   --seeds  seeds.json to read (default: node_modules/@sigstore/tuf/seeds.json)
//   --out    file to write (default: assets/public-good/trusted_root.json)
//   --check  write nothing; exit 1 when --out differs from the seeds' root
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const TUF_REPO = 'https://tuf-repo-cdn.sigstore.dev';
const TARGET = 'trusted_root.json';
const MEDIA_TYPE = /^application\/vnd\.dev\.sigstore\.trustedroot/;

function fail(message) {
  process.stderr.write(`build-trust: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const opts = {
    seeds: resolve(ROOT, 'node_modules/@sigstore/tuf/seeds.json'),
    out: resolve(ROOT, 'assets/public-good/trusted_root.json'),
    check: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--check') opts.check = true;
    else if (arg === '--seeds' || arg === '--out') {
      const value = argv[++i];
      if (value === undefined) fail(`${arg} needs a path`);
      opts[arg.slice(2)] = resolve(value);
    } else fail(`unknown argument ${arg}`);
  }
  return opts;
}

function trustedRootFromSeeds(path) {
  let seeds;
  try {
    seeds = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    fail(`cannot read ${path}: ${e.message}${e.code === 'ENOENT' ? ' (is @sigstore/tuf installed? or pass --seeds)' : ''}`);
  }
  const b64 = seeds?.[TUF_REPO]?.targets?.[TARGET];
  if (typeof b64 !== 'string') fail(`${path} has no ${TUF_REPO} target ${TARGET}`);
  const bytes = Buffer.from(b64, 'base64');
  let root;
  try {
    root = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    fail(`${TARGET} in ${path} is not JSON: ${e.message}`);
  }
  if (!MEDIA_TYPE.test(root?.mediaType ?? '')) fail(`${TARGET} in ${path} has mediaType ${JSON.stringify(root?.mediaType)}`);
  for (const list of ['certificateAuthorities', 'tlogs', 'ctlogs']) {
    if (!Array.isArray(root[list]) || root[list].length === 0) fail(`${TARGET} in ${path} lists no ${list}`);
  }
  return bytes;
}

const opts = parseArgs(process.argv.slice(2));
const bytes = trustedRootFromSeeds(opts.seeds);
const sha256 = createHash('sha256').update(bytes).digest('hex');
if (opts.check) {
  let current;
  try {
    current = readFileSync(opts.out);
  } catch (e) {
    process.stderr.write(`build-trust: ${opts.out}: ${e.message}\n`);
    process.exit(1);
  }
  if (!current.equals(bytes)) {
    process.stderr.write(`build-trust: ${opts.out} differs from ${TARGET} in ${opts.seeds} (sha256 ${sha256})\n`);
    process.exit(1);
  }
  process.stdout.write(`${opts.out} is up to date (sha256 ${sha256})\n`);
} else {
  mkdirSync(dirname(opts.out), { recursive: true });
  writeFileSync(opts.out, bytes);
  process.stdout.write(`wrote ${opts.out} (${bytes.length} bytes, sha256 ${sha256}) from ${opts.seeds}\n`);
}
