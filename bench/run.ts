/**
 * sigil's benchmark: the same figures direct (client → registry), through a bare node:http
 * pipe proxy, and through sigil (real `bin/sigil serve` processes), in one run; and, in the
 * section `store`, sigil with its content store against CNCF distribution's pull-through cache.
 * Prints a Markdown page and writes it to bench/results/latest.md. Not a test: it checks only
 * that every answer was right (status, bytes, verification), so that the figures mean something.
 * How it measures, and how to compare two builds: bench/README.md.
 *
 *   npm run bench [-- --sigil-log LEVEL] [--mode warn|off] [--cpu-prof DIR] [--only SECTIONS] [--sigil BIN] [--quick] [--node-options=OPTS]
 *
 * --sigil-log: sigil's logLevel (default info, what sigil ships with);
 * --mode: the mode of sigil's catch-all policy (default warn, as shipped);
 * --cpu-prof DIR: V8 CPU profiles of the sigil processes, written into DIR when they exit
 *   (summarize one with `scripts/node dist/bench/cpuprofile-top.js DIR/*.cpuprofile`);
 * --only: some of the sections, comma-separated: blob, manifest, verify, herd, store, shared;
 * --sigil BIN: another build's bin/sigil, to compare builds;
 * --quick: fewer and shorter runs (a trial of the harness: its figures are noise);
 * --node-options=OPTS: NODE_OPTIONS of the sigil processes (V8 flags to try; with "=", as they start with a dash).
 * Only a whole, full-length, unprofiled run of this build replaces bench/results/latest.md; every run prints its page.
 *
 * Two sigil processes: "sigil" (no content store; upstreams registry.bench with the default
 * blob hashing, nohash.bench with `verifyBlobDigests: false`, off.bench under a `mode: off`
 * policy, all the same registry) and "sigil-store" (a content store in a temp dir; the herd
 * reaches the registry through a counting pass-through). The sections `store` and `shared` start
 * their own (bench/store-section.ts, bench/shared-section.ts).
 */
import { execFileSync } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { Agent } from 'undici';
import { PROJECT_DIR, SIGIL_BIN } from '../test/helpers/cli.js';
import { startForwarder } from '../test/helpers/forwarder.js';
import type { Forwarder } from '../test/helpers/forwarder.js';
import { tempDir } from '../test/helpers/temp.js';
import { createPrivateSigstore } from '../test/helpers/private-sigstore.js';
import type { PrivateSigstore } from '../test/helpers/private-sigstore.js';
import { pushLegacySignature } from '../test/helpers/publish.js';
import { pushImage, pushIndex } from '../test/helpers/push.js';
import type { ImageOptions, PushedImage } from '../test/helpers/push.js';
import { REGISTRY_BIN, startRegistry } from '../test/helpers/registry.js';
import type { RegistryHandle } from '../test/helpers/registry.js';
import { generateKey, legacyLayer } from '../test/helpers/signer.js';
import type { LegacySignatureLayer, TestKey } from '../test/helpers/signer.js';
import { QUIET_WAIT_BUDGET_MS, cleanup, defer, log, onCleanup, pushRandomBlob, servers } from './context.js';
import {
  BIG_BLOB_BYTES, FULL, HERD_LAYERS, HERD_LAYER_BYTES, HERD_UPSTREAM, LOAD_CONNECTIONS, NOHASH_UPSTREAM, OFF_UPSTREAM, PLATFORMS, QUICK, REPO_BLOB,
  REPO_HERD, REPO_INDEX, REPO_KEYLESS_COLD, REPO_KEY_COLD, REPO_SHARED, REPO_SIGNED, SMALL_BLOB_BYTES, STORE_MAX_BYTES, TAG, UPSTREAM_NAME, WARMUP_DURATION_S,
} from './fixture.js';
import { WARM_GETS, blobPhase, checkManifest, coldPhase, fillStore, herdPhase, loadPhase } from './phases.js';
import type { Bench } from './phases.js';
import { memoryOf } from './procs.js';
import type { Proc } from './procs.js';
import { renderPage } from './report.js';
import type { LoadScenario, Target, Variant } from './report.js';
import { startPipeProxy, startSigil } from './servers.js';
import { sharedSection } from './shared-section.js';
import { storeSection } from './store-section.js';

const ISSUER = 'https://issuer.bench.test';
const SUBJECT = 'https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main';
const ENFORCE_VS_OFF = 0.9; // the issue's bar: warm verified answers at ≥ 0.9× the req/s of the `off` path
const TARGETS: readonly Target[] = ['direct', 'pipe', 'sigil'];
// off and enforce twice each, ABBA: the goal compares them, and single runs of either vary by ±10 %
const SIGNED_ORDER: readonly Variant[] = ['direct', 'pipe', 'sigilOff', 'sigil', 'sigil', 'sigilOff'];
const SECTIONS = ['blob', 'manifest', 'verify', 'herd', 'store', 'shared'] as const;
type Section = (typeof SECTIONS)[number];

const args = parseArgs({
  options: {
    'sigil-log': { type: 'string', default: 'info' },
    mode: { type: 'string', default: 'warn' },
    'cpu-prof': { type: 'string' },
    only: { type: 'string' },
    sigil: { type: 'string', default: SIGIL_BIN },
    quick: { type: 'boolean', default: false },
    'node-options': { type: 'string' },
  },
}).values;
const only = args.only?.split(',').map((s) => s.trim());
for (const s of only ?? []) if (!(SECTIONS as readonly string[]).includes(s)) throw new Error(`--only takes some of ${SECTIONS.join(', ')}`);
if (args.mode !== 'warn' && args.mode !== 'off') throw new Error('--mode takes warn or off');
const policyMode: 'warn' | 'off' = args.mode;
const doing = (s: Section): boolean => only === undefined || only.includes(s);
const n = args.quick ? QUICK : FULL;

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    log(`${sig}: cleaning up`);
    void cleanup().then(() => process.exit(130));
  });
}

// --- setup -----------------------------------------------------------------------------------

/** A fresh image in `repo` under `tag`, with a cosign `.sig` made by `sign`. */
async function pushSigned(
  registry: RegistryHandle,
  repo: string,
  tag: string,
  sign: (digest: string) => LegacySignatureLayer,
  opts: ImageOptions = {},
): Promise<PushedImage> {
  const target = { url: registry.url };
  const img = await pushImage(target, repo, tag, opts);
  await pushLegacySignature(target, repo, img.digest, [sign(img.digest)]);
  return img;
}

/** The enforce policies of the signed images (YAML list items), tried before the catch-all. */
function signedPolicies(keyPath: string, herdKeyPath: string): string {
  return [
    '  - name: bench-off',
    `    match: ["${OFF_UPSTREAM}/**"]`,
    '    mode: off',
    '  - name: bench-key',
    `    match: ["${UPSTREAM_NAME}/${REPO_SIGNED}", "${UPSTREAM_NAME}/${REPO_KEY_COLD}"]`,
    '    mode: enforce',
    '    authorities:',
    `      - { key: ${keyPath}, tlog: ignore }`,
    '  - name: bench-keyless',
    `    match: ["${UPSTREAM_NAME}/${REPO_KEYLESS_COLD}"]`,
    '    mode: enforce',
    '    authorities:',
    `      - keyless: { issuer: "${ISSUER}", subjectRegExp: '^https://github\\.com/acme/.+$' }`,
    '  - name: bench-herd',
    `    match: ["${HERD_UPSTREAM}/**"]`,
    '    mode: enforce',
    '    authorities:',
    `      - { key: ${herdKeyPath}, tlog: ignore }`,
  ].join('\n');
}

/**
 * The source the measured sigil (bin/sigil of a checkout) was built from: the commit, and src/
 * files changed since (others may be editing).
 */
function sourceOf(bin: string): string {
  const checkout = dirname(dirname(bin));
  try {
    const git = (...a: string[]): string => execFileSync('git', a, { cwd: checkout, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const sha = git('rev-parse', '--short', 'HEAD').trim();
    const changed = git('status', '--porcelain', '--', 'src').split('\n').filter((l) => l !== '').map((l) => l.slice(3));
    return changed.length > 0 ? `git ${sha} + uncommitted changes in ${changed.join(', ')}` : `git ${sha}`;
  } catch {
    return `${checkout}, not a git checkout`;
  }
}

// --- the run ---------------------------------------------------------------------------------

async function main(): Promise<void> {
  const started = Date.now();
  const source = sourceOf(args.sigil);
  const dir = await tempDir('sigil-bench');
  onCleanup(() => rm(dir, { recursive: true, force: true }));
  const doBlobs = doing('blob');
  const doManifests = doing('manifest');
  const doVerify = doing('verify');
  const doHerd = doing('herd');
  const needStore = doBlobs || doHerd;

  log('starting the registry');
  const registry = await startRegistry();
  onCleanup(() => registry.stop());
  const target = { url: registry.url };
  const small = doBlobs ? await pushRandomBlob(registry, dir, REPO_BLOB, SMALL_BLOB_BYTES) : undefined;
  const big = doBlobs ? await pushRandomBlob(registry, dir, REPO_BLOB, BIG_BLOB_BYTES) : undefined;
  log(`pushing a ${PLATFORMS.length}-platform index and the signed images`);
  const index = await pushIndex(target, REPO_INDEX, TAG, PLATFORMS);
  const key = generateKey('p256');
  const herdKey = generateKey('p256');
  const keyPath = join(dir, 'bench-p256.pub');
  const herdKeyPath = join(dir, 'herd-p256.pub');
  await writeFile(keyPath, key.publicPem);
  await writeFile(herdKeyPath, herdKey.publicPem);
  const sigstore: PrivateSigstore = await createPrivateSigstore(join(dir, 'sigstore'));
  const byKey = (k: TestKey) => (digest: string) => legacyLayer(k, digest);
  const signed = await pushSigned(registry, REPO_SIGNED, TAG, byKey(key));
  const keyCold: PushedImage[] = [];
  const keylessCold: PushedImage[] = [];
  if (doVerify) {
    for (let i = 0; i < n.coldImages; i++) {
      keyCold.push(await pushSigned(registry, REPO_KEY_COLD, `v${i}`, byKey(key)));
      // a fresh certificate each, as each CI run gets one
      const id = sigstore.issueIdentity(SUBJECT, ISSUER);
      keylessCold.push(await pushSigned(registry, REPO_KEYLESS_COLD, `v${i}`, (digest) => legacyLayer(id, digest, { rekor: sigstore })));
    }
  }
  const herdImage = doHerd ? await pushSigned(registry, REPO_HERD, 'v1', byKey(herdKey), { layers: HERD_LAYERS, layerSize: HERD_LAYER_BYTES }) : undefined;
  // the shared replicas reach it as herd.bench/bench/shared: under the herd policy (enforce, herdKey)
  const sharedImage = doing('shared') ? await pushSigned(registry, REPO_SHARED, 'v1', byKey(herdKey), { layers: HERD_LAYERS, layerSize: HERD_LAYER_BYTES }) : undefined;

  log('starting the pipe proxy and sigil');
  const pipe = await startPipeProxy(registry.url, defer);
  const policies = signedPolicies(keyPath, herdKeyPath);
  const common = { bin: args.sigil, dir, logLevel: args['sigil-log'], mode: policyMode, policies, cpuProfDir: args['cpu-prof'], nodeOptions: args['node-options'] };
  const sigil = await startSigil(
    {
      ...common,
      label: 'sigil',
      upstreams: [
        { name: UPSTREAM_NAME, url: registry.url },
        { name: NOHASH_UPSTREAM, url: registry.url, verifyBlobDigests: false },
        { name: OFF_UPSTREAM, url: registry.url },
      ],
      trustedRoot: ['public-good', sigstore.trustedRootPath],
    },
    defer,
  );
  let fwd: Forwarder | undefined;
  let store: Awaited<ReturnType<typeof startSigil>> | undefined;
  if (needStore) {
    fwd = await startForwarder(registry.url);
    const f = fwd;
    onCleanup(() => f.stop());
    store = await startSigil(
      {
        ...common,
        label: 'sigil-store',
        upstreams: [{ name: UPSTREAM_NAME, url: registry.url }, { name: HERD_UPSTREAM, url: fwd.url }],
        store: { dir: join(dir, 'store'), maxBytes: STORE_MAX_BYTES },
      },
      defer,
    );
  }
  const agent = new Agent();
  onCleanup(() => agent.close());
  const b: Bench = {
    registry,
    at: {
      direct: { v2: `${registry.url}/v2/` },
      pipe: { v2: `${pipe.url}/v2/`, proc: pipe.proc },
      sigil: { v2: `${sigil.url}/v2/`, proc: sigil.proc, metrics: sigil.url },
      sigilNoHash: { v2: `${sigil.url}/v2/${NOHASH_UPSTREAM}/`, proc: sigil.proc, metrics: sigil.url },
      sigilOff: { v2: `${sigil.url}/v2/${OFF_UPSTREAM}/`, proc: sigil.proc, metrics: sigil.url },
      ...(store ? { sigilStore: { v2: `${store.url}/v2/`, proc: store.proc, metrics: store.url } } : {}),
    },
    agent,
    n,
    f: {
      big: { mbps: {}, rss: {} },
      small: { mbps: {}, rss: {} },
      bigCpuProxy: {},
      bigCpuProxyMain: {},
      bigCpuAll: {},
      rssIdle: {},
      hwmAfterBlobs: {},
      hwmEnd: {},
      load: [],
      cold: [],
    },
    runs: [],
    quiet: { ms: QUIET_WAIT_BUDGET_MS },
    measured: { othersCpuS: 0, seconds: 0 },
    sigilUpstream: { sent: 0, answered: 0 },
  };

  // Every target answers right before anything is measured
  let verification = '';
  for (const v of TARGETS) {
    const got = await checkManifest(b, v, REPO_INDEX, TAG, index);
    if (v === 'sigil') verification = got;
  }
  if (store) await checkManifest(b, 'sigilStore', REPO_INDEX, TAG, index);
  for (const v of ['direct', 'pipe'] as const) await checkManifest(b, v, REPO_SIGNED, TAG, signed);
  await checkManifest(b, 'sigil', REPO_SIGNED, TAG, signed, 'verified');
  await checkManifest(b, 'sigilOff', REPO_SIGNED, TAG, signed, 'skipped');
  const procs: Array<[Variant, Proc | undefined]> = [['pipe', pipe.proc], ['sigil', sigil.proc], ['sigilStore', store?.proc]];
  for (const [v, p] of procs) if (p) b.f.rssIdle[v] = memoryOf(p.pid).rss;

  if (small !== undefined && big !== undefined) {
    await fillStore(b, small, b.f.small);
    await fillStore(b, big, b.f.big);
    // 64 MiB first: the RSS it shows is not left over from a 1 GiB stream
    await blobPhase(b, small, b.f.small, false);
    await blobPhase(b, big, b.f.big, true);
    for (const [v, p] of procs) if (p) b.f.hwmAfterBlobs[v] = memoryOf(p.pid).hwm;
  }
  if (doManifests) {
    const scenarios = [
      ['index by tag', REPO_INDEX, TAG, TARGETS, undefined],
      ['index by digest', REPO_INDEX, index.digest, TARGETS, undefined],
      ['signed image by tag', REPO_SIGNED, TAG, SIGNED_ORDER, 'signed'],
    ] as const;
    for (const [label, repo, ref, variants, kind] of scenarios) {
      for (const [connections, durationS] of [[LOAD_CONNECTIONS, n.loadS], [1, n.serialS]] as const) {
        const s: LoadScenario = { label, connections, results: {} };
        if (kind === 'signed') {
          s.variants = [{ variant: 'sigilOff', suffix: ', policy `off`' }, { variant: 'sigil', suffix: ', policy `enforce` (verified)' }];
          s.against = { variant: 'sigilOff', name: 'sigil `off`', atLeast: ENFORCE_VS_OFF };
        }
        b.f.load.push(s);
        await loadPhase(b, s, repo, ref, variants, durationS);
      }
    }
  }
  if (doVerify) {
    b.f.cold.push(await coldPhase(b, 'key (P-256, `tlog: ignore`)', REPO_KEY_COLD, keyCold));
    b.f.cold.push(await coldPhase(b, 'keyless (private Sigstore, `.sig` with Rekor SET)', REPO_KEYLESS_COLD, keylessCold));
  }
  if (herdImage !== undefined && fwd !== undefined) b.f.herd = await herdPhase(b, fwd, herdImage);
  for (const [v, p] of procs) if (p) b.f.hwmEnd[v] = memoryOf(p.pid).hwm;
  if (doing('store')) b.f.store = await storeSection(b, { dir, sigil: common, index, n });
  if (sharedImage !== undefined) b.f.shared = await sharedSection(b, { dir, sigil: common, image: sharedImage, n, quick: args.quick });

  let registryVersion = REGISTRY_BIN;
  try {
    registryVersion = execFileSync(REGISTRY_BIN, ['--version'], { encoding: 'utf8' }).trim().replace(/^\S+\s+/, '');
  } catch {
    // only informative
  }
  const page = renderPage(b.f, {
    sigil: args.sigil === SIGIL_BIN ? 'bin/sigil' : args.sigil,
    source,
    logLevel: args['sigil-log'],
    mode: policyMode,
    verification,
    cpuProfiled: args['cpu-prof'] !== undefined,
    quick: args.quick,
    registryVersion,
    blobReps: n.blobReps,
    smallBlobReps: n.smallBlobReps,
    blobBytes: BIG_BLOB_BYTES,
    smallBlobBytes: SMALL_BLOB_BYTES,
    storeMaxBytes: STORE_MAX_BYTES,
    loadDurationS: n.loadS,
    serialDurationS: n.serialS,
    warmupS: WARMUP_DURATION_S,
    platforms: PLATFORMS.length,
    coldImages: n.coldImages,
    warmGets: WARM_GETS,
    seconds: Math.round((Date.now() - started) / 1000),
    othersCpuS: b.measured.othersCpuS,
    sigilUpstream: b.sigilUpstream,
    measuredS: b.measured.seconds,
  }, b.runs);
  process.stdout.write(page);
  if (only !== undefined || args.quick || args.sigil !== SIGIL_BIN || args['cpu-prof'] !== undefined || args['node-options'] !== undefined) {
    log('a partial, quick, profiled or other build\'s run: bench/results/latest.md left as it was');
    return;
  }
  const out = join(PROJECT_DIR, 'bench/results/latest.md');
  await mkdir(join(PROJECT_DIR, 'bench/results'), { recursive: true });
  await writeFile(out, page);
  log(`written to ${out}`);
}

try {
  await main();
} catch (err) {
  log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  for (const p of servers) {
    const exit = p.child.exitCode ?? p.child.signalCode;
    if (exit !== null || p.stderrTail() !== '') log(`${p.name} (exit: ${exit ?? 'running'}) stderr:\n${p.stderrTail()}`);
  }
  process.exitCode = 1;
} finally {
  await cleanup();
}
process.exit(process.exitCode ?? 0);
