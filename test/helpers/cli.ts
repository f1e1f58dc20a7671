import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const SIGIL_BIN = fileURLToPath(new URL('../../../bin/sigil', import.meta.url));
export const PROJECT_DIR = fileURLToPath(new URL('../../../', import.meta.url));

/**
 * What a sigil child process gets of this environment: PATH and HOME, and the test run's compile
 * cache (scripts/test.mjs), nothing else.
 */
function childEnv(): Record<string, string> {
  const { NODE_COMPILE_CACHE } = process.env;
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...(NODE_COMPILE_CACHE !== undefined ? { NODE_COMPILE_CACHE } : {}) };
}

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
      env: { ...childEnv(), ...opts.env },
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
    env: { ...childEnv(), ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = { stdout: '', stderr: '' };
  p.stdout?.on('data', (d: Buffer) => (out.stdout += d.toString()));
  p.stderr?.on('data', (d: Buffer) => (out.stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => p.on('close', (code) => resolve(code)));
  process.once('exit', () => p.kill('SIGKILL'));
  /**
   * Resolves once stdout holds `count` matches of `pattern` (a global RegExp), with them; rejects
   * when the process ends first, or after `guardMs` (a guard against a hang, not a timing check).
   */
  const stdoutMatches = (pattern: RegExp, count = 1, guardMs = 30_000): Promise<RegExpMatchArray[]> =>
    new Promise((resolve, reject) => {
      const found = () => [...out.stdout.matchAll(pattern)];
      const check = () => {
        if (found().length < count) return;
        done();
        resolve(found());
      };
      const onClose = (code: number | null) => {
        done();
        reject(new Error(`sigil exited (${code}) before printing ${pattern}\n${out.stdout}\n${out.stderr}`));
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no ${pattern} on stdout within ${guardMs} ms\n${out.stdout}\n${out.stderr}`));
      }, guardMs);
      const done = () => {
        clearTimeout(timer);
        p.stdout?.off('data', check);
        p.off('close', onClose);
      };
      p.stdout?.on('data', check);
      p.once('close', onClose);
      check();
    });
  return { process: p, out, exited, stdoutMatches };
}
