import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { tempDir } from './temp.js';
import { pushImage, type PushedImage, type PushTarget } from './push.js';
import { startRegistry, type RegistryHandle } from './registry.js';
import { createPrivateSigstore, type PrivateSigstore } from './private-sigstore.js';
import { generateKey, type KeyKind, type TestKey } from './signer.js';
import { startSigil, type SigilHandle } from './sigil.js';
import type { Timeouts } from '../../src/upstream/limits.js';

export const ISSUER = 'https://issuer.sigil.test';
export const SUBJECT = 'https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main';
export const UPSTREAM = 'reg.test';

export interface SigilOptions {
  timeouts?: Partial<Timeouts>;
  upstreamUrl?: string;
  extra?: string;
  offline?: boolean;
  trustedRoots?: string[];
  /** The caches', keeper's and gate's clock (`fakeClock().now`): moved past a TTL instead of waited out. */
  now?: () => number;
  /** Shortened deadlines (stale-if-error's, the gate's decision): defaults STALE_DEADLINE_MS, VERIFICATION_DEADLINE_MS. */
  staleDeadlineMs?: number;
  verificationDeadlineMs?: number;
}

/** A real registry, a private Sigstore, test keys written to files, and a place for sigil configs. */
export interface VerifyEnv {
  readonly registry: RegistryHandle;
  readonly target: PushTarget;
  readonly sigstore: PrivateSigstore;
  readonly keys: Record<KeyKind, TestKey & { path: string }>;
  /** A key no policy trusts. */
  readonly stranger: TestKey;
  readonly dir: string;
  push(repo: string, tag: string, opts?: Parameters<typeof pushImage>[3]): Promise<PushedImage>;
  /** Starts sigil with `policies` (YAML list items, indented by 2) and both trust roots. */
  sigil(policiesYaml: string, opts?: SigilOptions): Promise<SigilHandle>;
  /** The config `sigil()` starts with (for a reload: `handle.reload(env.config(…))`). */
  config(policiesYaml: string, opts?: Pick<SigilOptions, 'upstreamUrl' | 'extra' | 'trustedRoots'>): string;
  stop(): Promise<void>;
}

export async function startVerifyEnv(): Promise<VerifyEnv> {
  const dir = await tempDir('sigil-verify-');
  const registry = await startRegistry();
  const sigstore = await createPrivateSigstore(dir);
  const keys = {} as Record<KeyKind, TestKey & { path: string }>;
  for (const kind of ['p256', 'p384', 'rsa', 'ed25519', 'ed25519ph'] as const) {
    const k = generateKey(kind);
    const path = join(dir, `${kind}.pub`);
    await writeFile(path, k.publicPem);
    keys[kind] = { ...k, path };
  }
  const sigils: SigilHandle[] = [];
  const target = { url: registry.url };
  const config = (policiesYaml: string, opts: Pick<SigilOptions, 'upstreamUrl' | 'extra' | 'trustedRoots'> = {}): string =>
    [
      'server:',
      '  listen: 127.0.0.1:0',
      '  logLevel: info',
      'upstreams:',
      `  - name: ${UPSTREAM}`,
      `    url: ${opts.upstreamUrl ?? registry.url}`,
      `defaultUpstream: ${UPSTREAM}`,
      'trust:',
      `  trustedRoot: [${(opts.trustedRoots ?? ['public-good', sigstore.trustedRootPath]).join(', ')}]`,
      'policies:',
      policiesYaml,
      opts.extra ?? '',
    ].join('\n');
  return {
    registry,
    target,
    sigstore,
    keys,
    stranger: generateKey('p256'),
    dir,
    push: (repo, tag, opts) => pushImage(target, repo, tag, opts),
    config,
    async sigil(policiesYaml, opts = {}) {
      const s = await startSigil(config(policiesYaml, opts), {
        timeouts: opts.timeouts,
        offline: opts.offline,
        now: opts.now,
        staleDeadlineMs: opts.staleDeadlineMs,
        verificationDeadlineMs: opts.verificationDeadlineMs,
      });
      sigils.push(s);
      return s;
    },
    async stop() {
      for (const s of sigils) await s.stop();
      await registry.stop();
    },
  };
}

export interface Pulled {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  json<T = { errors: Array<{ code: string; message: string; detail?: Record<string, unknown> }> }>(): T;
}

export async function pull(sigil: SigilHandle, repo: string, ref: string, method: 'GET' | 'HEAD' = 'GET', accept?: string): Promise<Pulled> {
  const res = await request(`${sigil.url}/v2/${repo}/manifests/${ref}`, {
    method,
    headers: { accept: accept ?? 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json' },
  });
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, body, json: <T>() => JSON.parse(body.toString()) as T };
}
