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
export async function startPipeProxy(upstream: string, defer: Defer): Promise<Server> {
  const port = await freePort();
  const script = new URL('./pipe-proxy.js', import.meta.url).pathname;
  const proc = spawnServer('pipe proxy', [join(PROJECT_DIR, 'scripts/node'), script, String(port), upstream], { env: baseEnv() });
  defer(proc);
  const url = `http://127.0.0.1:${port}`;
  await ready(proc, `${url}/v2/`);
  return { proc, url };
}

export interface SigilOptions {
  /** bin/sigil of the build under test. */
  bin: string;
  /** A temp dir for the config and the log. */
  dir: string;
  upstream: string;
  upstreamName: string;
  logLevel: string;
  /** The mode of the one policy, matching everything. */
  mode: 'warn' | 'off';
  /** Write a V8 CPU profile of sigil into this dir when it exits. */
  cpuProfDir?: string;
}

/** `bin/sigil serve` with one upstream (the default one) and one policy for everything. */
export async function startSigil(o: SigilOptions, defer: Defer): Promise<Server> {
  const port = await freePort();
  const configPath = join(o.dir, 'sigil.yaml');
  await writeFile(
    configPath,
    [
      'server:',
      `  listen: 127.0.0.1:${port}`,
      `  logLevel: ${o.logLevel}`,
      'upstreams:',
      `  - name: ${o.upstreamName}`,
      `    url: ${o.upstream}`,
      `defaultUpstream: ${o.upstreamName}`,
      'policies:',
      `  - name: bench-${o.mode}`,
      '    match: ["**"]',
      `    mode: ${o.mode}`,
      '    authorities:',
      '      - keyless: { issuerRegExp: "^.*$", subjectRegExp: "^.*$" }',
      '',
    ].join('\n'),
  );
  const env = baseEnv();
  if (o.cpuProfDir !== undefined) {
    await mkdir(o.cpuProfDir, { recursive: true });
    env.NODE_OPTIONS = `--cpu-prof --cpu-prof-dir=${o.cpuProfDir}`;
  }
  // pino writes a line per request at info: into a file, as a deployment's log collector takes it
  const proc = spawnServer('sigil', [o.bin, 'serve', '--config', configPath], { env, cwd: o.dir, stdoutFile: join(o.dir, 'sigil.log') });
  defer(proc);
  const url = `http://127.0.0.1:${port}`;
  await ready(proc, `${url}/healthz`);
  return { proc, url };
}
