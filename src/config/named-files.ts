import { DEFAULT_TRUSTED_ROOT } from './schema.js';
import { BUILT_IN_SOURCE } from './defaults.js';
import type { Config } from './types.js';

/**
 * Every file a compiled config was read from: the config file itself, the TLS certificate and
 * key, the htpasswd file, upstream CA bundles, public keys of key authorities (not inline ones)
 * and trusted roots (not the shipped `public-good`). Absolute paths, each once, in that order.
 * What `sigil serve` watches to reload (reload/watch.ts).
 */
export function namedFiles(config: Config): string[] {
  const files = new Set<string>();
  if (config.source !== BUILT_IN_SOURCE) files.add(config.source);
  const { tls, auth } = config.server;
  if (tls) files.add(tls.certPath).add(tls.keyPath);
  if (auth) files.add(auth.htpasswdPath);
  for (const u of config.upstreams) if (u.tls?.caPath !== undefined) files.add(u.tls.caPath);
  for (const p of config.policies) {
    for (const a of p.authorities) if (a.kind === 'key' && a.source !== 'inline') files.add(a.source);
  }
  for (const root of config.trust.trustedRoot) if (root !== DEFAULT_TRUSTED_ROOT) files.add(root);
  return [...files];
}
