/*
 * skopeo 1.9 (Debian) with a private configuration for every call: its own registries.conf,
 * policy.json (accept anything), registries.d (no signature lookaside), auth file, HOME and
 * temp dir, so nothing under /etc/containers, ~/.docker or $XDG_RUNTIME_DIR matters.
 *
 * What it sends (measured against docker-registry 2.8 through a recording proxy):
 *   GET /v2/                                  ping first (no ns= query: routing is by path only)
 *   GET /v2/<repo>/manifests/<tag>            no HEAD; Accept lists OCI + docker types
 *   GET /v2/<repo>/manifests/<digest>         the platform manifest, when the tag is an index
 *   GET /v2/<repo>/blobs/<digest>             layers and config
 * With tlsVerify false it tries https first and falls back to http on a handshake failure.
 * `skopeo inspect` (without --raw) also lists tags (GET /v2/<repo>/tags/list): a 403 DENIED there
 * is tolerated, a 404 or 500 fails the inspect. (All of this is re-checked in
 * test/e2e/clients-direct.test.ts.)
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCommand } from './containerd.js';
import type { CmdResult } from './containerd.js';

export const SKOPEO_BIN = '/usr/bin/skopeo';
const SKOPEO_TIMEOUT_MS = 60_000; // tests copy images of a few KiB; a hang must fail the test, not the suite
const ACCEPT_ANYTHING_POLICY = { default: [{ type: 'insecureAcceptAnything' }] };

export interface SkopeoOptions {
  /** Require HTTPS with a verified certificate. Default false: https is tried, then plain http. */
  tlsVerify?: boolean;
  /** USERNAME[:PASSWORD] */
  creds?: string;
  /** An auth.json; default: an empty private one. */
  authfile?: string;
  /** A directory with ca.crt (and client certs) for the registry. */
  certDir?: string;
  /** 'os/arch[/variant]' chosen from an index; default: this machine's (linux/amd64). */
  platform?: string;
  timeoutMs?: number;
}

export interface CopyOptions extends SkopeoOptions {
  /** --all: copy every manifest of an index. */
  all?: boolean;
}

export interface InspectOptions extends SkopeoOptions {
  /** --raw: print the manifest (or index) bytes as served. */
  raw?: boolean;
  /** --config: print the image config instead. */
  config?: boolean;
}

/** Runs skopeo with a private configuration directory, removed afterwards. Never throws. */
async function runSkopeo(args: (cfg: string) => string[], opts: SkopeoOptions): Promise<CmdResult> {
  const cfg = await mkdtemp(join(tmpdir(), 'sigil-skopeo-'));
  try {
    await Promise.all([
      writeFile(join(cfg, 'registries.conf'), 'unqualified-search-registries = []\n'),
      writeFile(join(cfg, 'policy.json'), JSON.stringify(ACCEPT_ANYTHING_POLICY)),
      writeFile(join(cfg, 'auth.json'), '{}'),
      mkdir(join(cfg, 'registries.d')),
      mkdir(join(cfg, 'tmp')),
      mkdir(join(cfg, 'home')),
    ]);
    const global = [
      '--registries-conf', join(cfg, 'registries.conf'), // hidden flag of skopeo 1.9
      '--policy', join(cfg, 'policy.json'),
      '--registries.d', join(cfg, 'registries.d'),
      '--tmpdir', join(cfg, 'tmp'),
    ];
    if (opts.platform) {
      const [os, arch, variant] = opts.platform.split('/');
      global.push('--override-os', os, '--override-arch', arch);
      if (variant) global.push('--override-variant', variant);
    }
    const env = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: join(cfg, 'home'), TMPDIR: join(cfg, 'tmp') };
    return await runCommand(SKOPEO_BIN, [...global, ...args(cfg)], opts.timeoutMs ?? SKOPEO_TIMEOUT_MS, env);
  } finally {
    await rm(cfg, { recursive: true, force: true });
  }
}

function sourceFlags(prefix: '--src-' | '--', cfg: string, opts: SkopeoOptions): string[] {
  const f = [`${prefix}tls-verify=${opts.tlsVerify ?? false}`, `${prefix}authfile`, opts.authfile ?? join(cfg, 'auth.json')];
  if (opts.creds !== undefined) f.push(`${prefix}creds`, opts.creds);
  if (opts.certDir !== undefined) f.push(`${prefix}cert-dir`, opts.certDir);
  return f;
}

/** `skopeo copy <src> dir:<dir>`: dir gets manifest.json, version and one file per blob (named by hex digest). */
export function skopeoCopyToDir(src: string, dir: string, opts: CopyOptions = {}): Promise<CmdResult> {
  return runSkopeo((cfg) => ['copy', ...sourceFlags('--src-', cfg, opts), ...(opts.all ? ['--all'] : []), src, `dir:${dir}`], opts);
}

/** `skopeo inspect [--raw|--config] <src>`. */
export function skopeoInspect(src: string, opts: InspectOptions = {}): Promise<CmdResult> {
  const mode = [...(opts.raw ? ['--raw'] : []), ...(opts.config ? ['--config'] : [])];
  return runSkopeo((cfg) => ['inspect', ...sourceFlags('--', cfg, opts), ...mode, src], opts);
}
