import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const SIGIL_BIN = fileURLToPath(new URL('../../../bin/sigil', import.meta.url));
export const PROJECT_DIR = fileURLToPath(new URL('../../../', import.meta.url));

export interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `bin/sigil ARGS` to completion (killed after timeoutMs). */
export function runSigil(args: string[], opts: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const p = spawn(SIGIL_BIN, args, {
      cwd: opts.cwd ?? PROJECT_DIR,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Starts a long-running `bin/sigil ARGS`; output is collected on the handle. */
export function spawnSigil(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}) {
  const p: ChildProcess = spawn(SIGIL_BIN, args, {
    cwd: opts.cwd ?? PROJECT_DIR,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = { stdout: '', stderr: '' };
  p.stdout?.on('data', (d: Buffer) => (out.stdout += d.toString()));
  p.stderr?.on('data', (d: Buffer) => (out.stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => p.on('close', (code) => resolve(code)));
  process.once('exit', () => p.kill('SIGKILL'));
  return { process: p, out, exited };
}
