import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { spawnSigil } from './cli.js';
import { freePort, waitForHttp } from './net.js';
import { waitExit } from './process.js';
import { tempDir } from './temp.js';

/** Long enough for a cold `sigil serve` on a loaded 2-core machine; a guard against a hang. */
const START_GUARD_MS = 30_000;
/** A graceful stop that takes longer than this is ended with SIGKILL. */
const STOP_GUARD_MS = 10_000;

/** One `sigil serve` child process of a replica set: its own port, peer port and disk store. */
export interface Replica {
  readonly index: number;
  readonly url: string;
  readonly port: number;
  readonly peerPort: number;
  readonly storeDir: string;
  /** What it printed so far (its JSON log lines). */
  output(): string;
  /** SIGKILL, as a crashed pod: no drain, no release of its leases. */
  kill(): Promise<void>;
  /** SIGTERM and wait (SIGKILL after STOP_GUARD_MS). */
  stop(): Promise<void>;
  /** Starts it again on the same ports; `emptyDisk` removes its store first (a new pod's emptyDir). */
  restart(opts?: { emptyDisk?: boolean }): Promise<void>;
}

export interface ReplicaSetOptions {
  /** The config of replica `i` (YAML), given its listen port, peer port and store dir. */
  config(r: { index: number; port: number; peerPort: number; storeDir: string }): string;
  /** Environment of the processes (config `${…}` references). */
  env?: Record<string, string>;
}

/** Starts `n` replicas as child processes (`bin/sigil serve`), each ready (/healthz answers). */
export async function startReplicas(n: number, opts: ReplicaSetOptions): Promise<Replica[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => startReplica(i, opts)));
}

async function startReplica(index: number, opts: ReplicaSetOptions): Promise<Replica> {
  const dir = await tempDir(`sigil-replica-${index}`);
  const storeDir = join(dir, 'store');
  const [port, peerPort] = [await freePort(), await freePort()];
  const configPath = join(dir, 'sigil.yaml');
  await writeFile(configPath, opts.config({ index, port, peerPort, storeDir }));
  const url = `http://127.0.0.1:${port}`;
  let proc = spawnSigil(['serve', '--config', configPath], { cwd: dir, env: opts.env ?? {} });
  let earlier = '';
  const launch = async () => {
    proc = spawnSigil(['serve', '--config', configPath], { cwd: dir, env: opts.env ?? {} });
    await ready();
  };
  const ready = async () => {
    let up = false;
    const exited = proc.exited.then((code) => {
      if (!up) throw new Error(`replica ${index} exited (${code}) before it was ready\n${proc.out.stdout}\n${proc.out.stderr}`);
    });
    exited.catch(() => {}); // reported through the race below, if it lost it
    await Promise.race([waitForHttp(`${url}/healthz`, START_GUARD_MS), exited]);
    up = true;
  };
  await ready();
  const end = async (signal: NodeJS.Signals) => {
    earlier += proc.out.stdout;
    proc.process.kill(signal);
    if (!(await waitExit(proc.process, STOP_GUARD_MS))) {
      proc.process.kill('SIGKILL');
      await waitExit(proc.process, STOP_GUARD_MS);
    }
  };
  return {
    index,
    url,
    port,
    peerPort,
    storeDir,
    output: () => earlier + proc.out.stdout,
    kill: () => end('SIGKILL'),
    stop: () => end('SIGTERM'),
    async restart(o = {}) {
      if (o.emptyDisk) await rm(storeDir, { recursive: true, force: true });
      await launch();
    },
  };
}
