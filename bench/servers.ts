/** The two proxies under test, each started as its own process on 127.0.0.1 and a free port. */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PROJECT_DIR } from '../test/helpers/cli.js';
import { freePort, waitForHttp } from '../test/helpers/net.js';
import { spawnServer } from './procs.js';
import type { Proc } from './procs.js';

const START_TIMEOUT_MS = 15_000; // node and sigil start in well under a second; a cold disk is slower

export interface Server {
  readonly proc: Proc;
  readonly url: string;
}

/** Where a started server's stop() is registered, so it runs even when the benchmark fails. */
export type Defer = (proc: Proc) => void;

function baseEnv(): Record<string, string> {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp' };
}

/** Resolves when `url` answers; rejects at once if the process exits first (its stderr is shown by the caller). */
async function ready(proc: Proc, url: string): Promise<void> {
  let onExit = (): void => undefined;
  const died = new Promise<never>((_, reject) => {
    onExit = () => reject(new Error(`${proc.name} exited before answering on ${url}`));
    proc.child.once('exit', onExit);
  });
  try {
    await Promise.race([waitForHttp(url, START_TIMEOUT_MS), died]);
  } finally {
    proc.child.off('exit', onExit);
  }
}

/** The baseline: bench/pipe-proxy.ts in its own node process. */
export async function startPipeProxy(upstream: string, defer: Defer, cpus?: string): Promise<Server> {
  const port = await freePort();
  const script = new URL('./pipe-proxy.js', import.meta.url).pathname;
  const proc = spawnServer('pipe proxy', [join(PROJECT_DIR, 'scripts/node'), script, String(port), upstream], { env: baseEnv(), ...(cpus !== undefined ? { cpus } : {}) });
  defer(proc);
  const url = `http://127.0.0.1:${port}`;
  await ready(proc, `${url}/v2/`);
  return { proc, url };
}

export interface SigilUpstream {
  name: string;
  url: string;
  /** `upstreams[].verifyBlobDigests`; absent: sigil's default (true, blobs hashed on the way). */
  verifyBlobDigests?: boolean;
}

/** What `cache.shared` of a bench replica names (bench/shared-section.ts). */
export interface SharedOptions {
  s3: { endpoint: string; region: string; bucket: string; credentials: { accessKeyId: string; secretAccessKey: string } };
  redisUrl: string;
  peerPort: number;
  /** The peer token, the same on every replica. */
  token: string;
}

/** The `cache.shared` lines (indented under `cache:`); values as JSON strings, which YAML reads as they are. */
function sharedLines(s: SharedOptions): string[] {
  const q = (v: string): string => JSON.stringify(v);
  return [
    '  shared:',
    '    s3:',
    `      endpoint: ${q(s.s3.endpoint)}`,
    `      region: ${q(s.s3.region)}`,
    `      bucket: ${q(s.s3.bucket)}`,
    '      forcePathStyle: true',
    `      credentials: { accessKeyId: ${q(s.s3.credentials.accessKeyId)}, secretAccessKey: ${q(s.s3.credentials.secretAccessKey)} }`,
    '    redis:',
    `      url: ${q(s.redisUrl)}`,
    '    peer:',
    `      listen: 127.0.0.1:${s.peerPort}`,
    `      advertise: http://127.0.0.1:${s.peerPort}`,
    `      token: ${q(s.token)}`,
  ];
}

export interface SigilOptions {
  /** bin/sigil of the build under test. */
  bin: string;
  /** A temp dir for the config and the log. */
  dir: string;
  /** Names this sigil's config and log files (several sigils share `dir`). */
  label: string;
  /** The first one is the default upstream. */
  upstreams: readonly SigilUpstream[];
  logLevel: string;
  /** Policy list items (YAML, indented by 2), tried before the catch-all. */
  policies?: string;
  /** The mode of the last policy, matching everything. */
  mode: 'warn' | 'off';
  /** `trust.trustedRoot`; absent: sigil's default (public-good). */
  trustedRoot?: readonly string[];
  /** `cache.store`: a content store in this dir. */
  store?: { dir: string; maxBytes: number };
  /** `cache.shared` (needs `store`): a bucket, Redis and this process's peer listener on 127.0.0.1. */
  shared?: SharedOptions;
  /** Write a V8 CPU profile of sigil into this dir when it exits. */
  cpuProfDir?: string;
  /** NODE_OPTIONS for the sigil process (V8 flags to try). */
  nodeOptions?: string;
  /** Run pinned to these CPUs (`taskset -c`; sigil sizes its hash workers from them). */
  cpus?: string;
}

/** `bin/sigil serve` with the given upstreams, the given policies, then one policy for everything. */
export async function startSigil(o: SigilOptions, defer: Defer): Promise<Server> {
  const port = await freePort();
  const configPath = join(o.dir, `${o.label}.yaml`);
  const lines = ['server:', `  listen: 127.0.0.1:${port}`, `  logLevel: ${o.logLevel}`, 'upstreams:'];
  for (const u of o.upstreams) {
    lines.push(`  - name: ${u.name}`, `    url: ${u.url}`);
    if (u.verifyBlobDigests !== undefined) lines.push(`    verifyBlobDigests: ${u.verifyBlobDigests}`);
  }
  lines.push(`defaultUpstream: ${o.upstreams[0].name}`);
  if (o.trustedRoot !== undefined) lines.push('trust:', `  trustedRoot: [${o.trustedRoot.join(', ')}]`);
  if (o.store !== undefined) lines.push('cache:', '  store:', `    dir: ${o.store.dir}`, `    maxBytes: ${o.store.maxBytes}`);
  if (o.shared !== undefined) lines.push(...sharedLines(o.shared));
  lines.push('policies:');
  if (o.policies !== undefined) lines.push(o.policies);
  lines.push(
    `  - name: bench-${o.mode}`,
    '    match: ["**"]',
    `    mode: ${o.mode}`,
    '    authorities:',
    '      - keyless: { issuerRegExp: "^.*$", subjectRegExp: "^.*$" }',
    '',
  );
  await writeFile(configPath, lines.join('\n'));
  const env = baseEnv();
  const nodeOptions = o.nodeOptions !== undefined ? [o.nodeOptions] : [];
  if (o.cpuProfDir !== undefined) {
    await mkdir(o.cpuProfDir, { recursive: true });
    nodeOptions.push(`--cpu-prof --cpu-prof-dir=${o.cpuProfDir}`);
  }
  if (nodeOptions.length > 0) env.NODE_OPTIONS = nodeOptions.join(' ');
  // pino writes a line per request at info: into a file, as a deployment's log collector takes it
  const proc = spawnServer(o.label, [o.bin, 'serve', '--config', configPath], {
    env,
    cwd: o.dir,
    stdoutFile: join(o.dir, `${o.label}.log`),
    ...(o.cpus !== undefined ? { cpus: o.cpus } : {}),
  });
  defer(proc);
  const url = `http://127.0.0.1:${port}`;
  await ready(proc, `${url}/healthz`);
  return { proc, url };
}
