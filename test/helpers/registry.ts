import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, waitForHttp } from './net.js';
import { tempDir } from './temp.js';
import type { TokenServerHandle } from './token-server.js';
import { exited, waitExit } from './process.js';

export const REGISTRY_BIN = '/usr/bin/docker-registry';
const SETPRIV_BIN = '/usr/bin/setpriv'; // --pdeathsig: the registry dies even if the test process is SIGKILLed
const START_TIMEOUT_MS = 15000; // first start on a cold disk can take a few seconds
const STOP_GRACE_MS = 3000; // SIGTERM, then SIGKILL after this
const START_ATTEMPTS = 3; // freePort() can race with another process taking the port
const LOG_TAIL_BYTES = 16 * 1024; // kept for the error message when startup fails

export interface RegistryHandle {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly dir: string;
  /** The registry's pid (added for tests that assert it is gone). */
  readonly pid: number;
  stop(): Promise<void>;
}

export interface RegistryOptions {
  tokenAuth?: TokenServerHandle;
  /** Forward the registry's output (with access log) to this process's stderr. */
  log?: boolean;
  /** A pull-through cache of this registry (distribution's `proxy.remoteurl`) instead of a registry of its own. */
  proxy?: string;
  /** Run pinned to these CPUs (`taskset -c`; Go sizes GOMAXPROCS from them). */
  cpus?: string;
}

/** distribution 2.8 configuration (version 0.1); JSON is valid YAML. */
function registryConfig(dir: string, port: number, opts: RegistryOptions): object {
  const config: Record<string, unknown> = {
    version: '0.1',
    log: { level: opts.log ? 'info' : 'warn', accesslog: { disabled: !opts.log } },
    storage: {
      filesystem: { rootdirectory: join(dir, 'data') },
      delete: { enabled: false },
      maintenance: { uploadpurging: { enabled: false } },
    },
    http: { addr: `127.0.0.1:${port}`, secret: randomBytes(16).toString('hex') },
  };
  if (opts.tokenAuth) {
    const t = opts.tokenAuth;
    config.auth = { token: { realm: t.realm, service: t.service, issuer: t.issuer, rootcertbundle: t.rootCertPath } };
  }
  if (opts.proxy !== undefined) config.proxy = { remoteurl: opts.proxy };
  return config;
}


async function kill(child: ChildProcess): Promise<void> {
  if (exited(child)) return;
  child.kill('SIGTERM');
  if (await waitExit(child, STOP_GRACE_MS)) return;
  child.kill('SIGKILL');
  await waitExit(child, STOP_GRACE_MS);
}

/** Spawns the registry; resolves once GET /v2/ answers, rejects (with its log) if it exits first. */
async function launch(dir: string, opts: RegistryOptions): Promise<{ child: ChildProcess; port: number; onExit: () => void }> {
  const port = await freePort();
  const configPath = join(dir, 'config.yml');
  await writeFile(configPath, JSON.stringify(registryConfig(dir, port, opts), null, 2));
  const argv = [...(opts.cpus !== undefined ? ['/usr/bin/taskset', '-c', opts.cpus] : []), REGISTRY_BIN, 'serve', configPath];
  const pdeathsig = existsSync(SETPRIV_BIN);
  const [cmd, ...args] = pdeathsig ? [SETPRIV_BIN, '--pdeathsig', 'KILL', ...argv] : argv;
  // empty environment: REGISTRY_* variables would override the config file
  const child = spawn(cmd, args, { env: {}, stdio: ['ignore', 'pipe', 'pipe'] });
  // pdeathsig kills the registry however this process ends (even SIGKILL); without setpriv,
  // fall back to the 'exit' event (normal exit, uncaught errors; not fatal signals)
  const onExit = (): void => {
    if (!exited(child)) child.kill('SIGKILL');
  };
  if (!pdeathsig) process.on('exit', onExit);
  let tail = '';
  const collect = (chunk: Buffer): void => {
    if (opts.log) process.stderr.write(chunk);
    tail = (tail + chunk.toString('utf8')).slice(-LOG_TAIL_BYTES);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const died = new Promise<never>((_, reject) => {
    const fail = (why: string): void => reject(new Error(`docker-registry ${why} before answering on :${port}\n${tail}`));
    child.once('error', (err) => fail(`failed to spawn (${err.message})`));
    child.once('exit', (code, signal) => fail(`exited (code ${code}, signal ${signal})`));
  });
  died.catch(() => undefined); // observed below via race; avoid unhandled rejection after success
  try {
    await Promise.race([waitForHttp(`http://127.0.0.1:${port}/v2/`, START_TIMEOUT_MS), died]);
  } catch (err) {
    process.off('exit', onExit);
    await kill(child);
    throw err;
  }
  return { child, port, onExit };
}

/**
 * Starts the real CNCF distribution registry (Debian's docker-registry 2.8) on a free
 * 127.0.0.1 port with filesystem storage in a temp dir; deletes and upload purging disabled.
 */
export async function startRegistry(opts: RegistryOptions = {}): Promise<RegistryHandle> {
  const dir = await tempDir('sigil-registry');
  await mkdir(join(dir, 'data'));
  let launched: Awaited<ReturnType<typeof launch>> | undefined;
  let lastErr: unknown;
  for (let attempt = 0; attempt < START_ATTEMPTS && !launched; attempt++) {
    try {
      launched = await launch(dir, opts);
    } catch (err) {
      lastErr = err;
      if (!/address already in use/.test(String(err))) break;
      await sleep(50);
    }
  }
  if (!launched) {
    await rm(dir, { recursive: true, force: true });
    throw lastErr;
  }
  const { child, port, onExit } = launched;
  let stopping: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    port,
    dir,
    pid: child.pid ?? -1,
    stop(): Promise<void> {
      stopping ??= (async () => {
        await kill(child);
        process.off('exit', onExit);
        await rm(dir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}
