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

/**
 * A free port can be taken by another process before sigil binds it (freePort closes it first;
 * the tests run three files at once): a replica that could not listen starts again on other ports,
 * this many times in all.
 */
const LISTEN_ATTEMPTS = 3;

/**
 * Starts `n` replicas as child processes (`bin/sigil serve`), each ready (/healthz answers). When
 * one cannot start, the others are stopped before the error is thrown: no process outlives the test.
 */
export async function startReplicas(n: number, opts: ReplicaSetOptions): Promise<Replica[]> {
  const started = await Promise.allSettled(Array.from({ length: n }, (_, i) => startReplica(i, opts)));
  const failed = started.find((r) => r.status === 'rejected');
  if (failed === undefined) return started.map((r) => (r as PromiseFulfilledResult<Replica>).value);
  await Promise.all(started.map((r) => (r.status === 'fulfilled' ? r.value.stop() : undefined)));
  throw failed.reason;
}

async function startReplica(index: number, opts: ReplicaSetOptions): Promise<Replica> {
  const dir = await tempDir(`sigil-replica-${index}`);
  const storeDir = join(dir, 'store');
  const configPath = join(dir, 'sigil.yaml');
  let port = 0;
  let peerPort = 0;
  let proc: ReturnType<typeof spawnSigil>;
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
    await Promise.race([waitForHttp(`http://127.0.0.1:${port}/healthz`, START_GUARD_MS), exited]);
    up = true;
  };
  for (let attempt = 1; ; attempt++) {
    [port, peerPort] = [await freePort(), await freePort()];
    await writeFile(configPath, opts.config({ index, port, peerPort, storeDir }));
    try {
      await launch();
      break;
    } catch (err) {
      proc!.process.kill('SIGKILL'); // not ready in time: it must not outlive the test either
      if (attempt >= LISTEN_ATTEMPTS || !/EADDRINUSE/.test(String(err))) throw err;
      earlier += proc!.out.stdout;
    }
  }
  const url = `http://127.0.0.1:${port}`;
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
