import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './net.js';
import { exited, waitExit } from './process.js';
import { tempDir } from './temp.js';

export const REDIS_SERVER_BIN = '/usr/bin/redis-server';
const SETPRIV_BIN = '/usr/bin/setpriv'; // --pdeathsig: redis-server dies even if the test process is SIGKILLed
const START_TIMEOUT_MS = 10_000; // redis-server answers within ~50 ms; a loaded CI machine may take seconds
const STOP_GRACE_MS = 3_000; // SIGTERM, then SIGKILL after this
const START_ATTEMPTS = 3; // freePort() can race with another process taking the port
const PING_TIMEOUT_MS = 1_000; // one PING must not eat the whole start budget
const POLL_INTERVAL_MS = 25;
const LOG_TAIL_BYTES = 8 * 1024; // kept for the error message when startup fails

export interface RedisServer {
  readonly port: number;
  /** redis://127.0.0.1:<port> */
  readonly url: string;
  /** Is the server process running? */
  readonly running: boolean;
  /** Graceful stop (SIGTERM; SIGKILL after a grace period). */
  stop(): Promise<void>;
  /** SIGKILL at once: "Redis died mid-test" (nothing is saved: started with --save ""). */
  kill(): Promise<void>;
  /** SIGSTOP: the server keeps its connections but answers nothing ("Redis hangs"); `thaw()` resumes it. */
  freeze(): void;
  thaw(): void;
  /** Starts it again on the same port (after stop or kill), empty; resolves once it answers PING. */
  restart(): Promise<void>;
}

/** Resolves true when `+PONG` comes back from 127.0.0.1:port within PING_TIMEOUT_MS. */
export function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    let got = '';
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(PING_TIMEOUT_MS, () => done(false));
    s.on('error', () => done(false));
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => {
      got += d.toString('latin1');
      if (got.includes('\r\n')) done(got.startsWith('+PONG'));
    });
  });
}

/** Spawns redis-server on `port` in `dir`; resolves once it answers PING, rejects (with its log) if it exits first. */
async function launch(dir: string, port: number): Promise<ChildProcess> {
  const argv = [REDIS_SERVER_BIN, '--save', '', '--appendonly', 'no', '--bind', '127.0.0.1', '--port', String(port), '--dir', dir, '--daemonize', 'no'];
  const [cmd, ...args] = existsSync(SETPRIV_BIN) ? [SETPRIV_BIN, '--pdeathsig', 'KILL', ...argv] : argv;
  const child = spawn(cmd, args, { cwd: dir, env: {}, stdio: ['ignore', 'pipe', 'pipe'] });
  let tail = '';
  const collect = (chunk: Buffer): void => {
    tail = (tail + chunk.toString('utf8')).slice(-LOG_TAIL_BYTES);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (exited(child)) throw new Error(`redis-server exited (code ${child.exitCode}, signal ${child.signalCode}) before answering on :${port}\n${tail}`);
    if (await ping(port)) return child;
    await sleep(POLL_INTERVAL_MS);
  }
  await stopChild(child, 'SIGKILL');
  throw new Error(`redis-server did not answer PING on :${port} within ${START_TIMEOUT_MS} ms\n${tail}`);
}

async function stopChild(child: ChildProcess, signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
  if (exited(child)) return;
  child.kill('SIGCONT'); // a frozen server cannot act on SIGTERM
  child.kill(signal);
  if (await waitExit(child, STOP_GRACE_MS)) return;
  child.kill('SIGKILL');
  await waitExit(child, STOP_GRACE_MS);
}

/**
 * Starts a real redis-server (Debian's) on a free 127.0.0.1 port, with no persistence, in a temp
 * directory. The caller stops it (`after(() => server.stop())`); it is killed when the test
 * process exits in any case.
 */
export async function startRedisServer(): Promise<RedisServer> {
  const dir = await tempDir('sigil-redis');
  let child: ChildProcess | undefined;
  let port = 0;
  let lastErr: unknown;
  for (let attempt = 0; attempt < START_ATTEMPTS && !child; attempt++) {
    port = await freePort();
    try {
      child = await launch(dir, port);
    } catch (err) {
      lastErr = err;
      if (!/Address already in use/i.test(String(err))) break;
    }
  }
  if (!child) throw lastErr;
  let current: ChildProcess = child;
  const onExit = (): void => {
    if (!exited(current)) current.kill('SIGKILL');
  };
  process.on('exit', onExit);
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    get running() {
      return !exited(current);
    },
    async stop() {
      await stopChild(current, 'SIGTERM');
      process.off('exit', onExit);
    },
    async kill() {
      await stopChild(current, 'SIGKILL');
    },
    freeze() {
      current.kill('SIGSTOP');
    },
    thaw() {
      current.kill('SIGCONT');
    },
    async restart() {
      await stopChild(current, 'SIGTERM');
      current = await launch(dir, port);
      process.off('exit', onExit);
      process.on('exit', onExit);
    },
  };
}
