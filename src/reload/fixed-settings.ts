import type { Config } from '../config/types.js';
import { deepFreeze } from '../config/compile.js';

/**
 * The settings a reload cannot change, because they were used once at start: the socket sigil
 * listens on (`server.listen`, or `--listen`), whether it speaks TLS at all (`server.tls` added or
 * removed; a changed certificate or key is reloaded), the content store it opened
 * (`cache.store`), the shared cache it joined (`cache.shared`: its bucket, Redis and peer
 * listener live as long as the process), and the TUF repository it keeps its trusted root fresh from (`trust.tuf`: its
 * refresher lives as long as the process; every generation reads its latest root). Everything
 * else of a config is reloaded.
 */
export interface Fixed {
  /** The reloaded config with these settings as the running process has them. */
  readonly config: Config;
  /** One line per setting that changed in the file and needs a restart, with the value kept. */
  readonly restartNeeded: readonly string[];
}

const address = (l: Config['server']['listen']): string => (l.host.includes(':') ? `[${l.host}]:${l.port}` : `${l.host}:${l.port}`);
const storeText = (s: Config['cache']['store']): string => (s === undefined ? 'none' : `${s.dir} (maxBytes ${s.maxBytes})`);
const tufText = (t: Config['trust']['tuf']): string => (t === undefined ? 'none' : t.url);
/** What a message may say of cache.shared: where, never its secrets. */
const sharedText = (s: Config['cache']['shared']): string =>
  s === undefined ? 'none' : [s.s3 && `bucket ${s.s3.bucket}`, s.redis && 'redis', s.peer && `peer ${s.peer.advertise}`].filter(Boolean).join(', ');

/** `next` with the running process's fixed settings, and which of them `next` wanted changed. */
export function keepFixed(next: Config, running: Config): Fixed {
  const restartNeeded: string[] = [];
  const [was, now] = [running.server, next.server];
  if (was.listen.host !== now.listen.host || was.listen.port !== now.listen.port) {
    restartNeeded.push(`server.listen: ${address(now.listen)} needs a restart (still listening on ${address(was.listen)})`);
  }
  if ((was.tls === undefined) !== (now.tls === undefined)) {
    restartNeeded.push(`server.tls: ${now.tls ? 'turning TLS on' : 'turning TLS off'} needs a restart (still serving ${was.tls ? 'HTTPS with the running certificate' : 'plain HTTP'})`);
  }
  const [s0, s1] = [running.cache.store, next.cache.store];
  if (s0?.dir !== s1?.dir || s0?.maxBytes !== s1?.maxBytes) {
    restartNeeded.push(`cache.store: ${storeText(s1)} needs a restart (still using ${storeText(s0)})`);
  }
  const [h0, h1] = [running.cache.shared, next.cache.shared];
  if (JSON.stringify(h0) !== JSON.stringify(h1)) {
    restartNeeded.push(`cache.shared: ${sharedText(h1)} needs a restart (still using ${sharedText(h0)})`);
  }
  const [t0, t1] = [running.trust.tuf, next.trust.tuf];
  if (JSON.stringify(t0) !== JSON.stringify(t1)) {
    restartNeeded.push(`trust.tuf: ${tufText(t1)} needs a restart (still using ${tufText(t0)})`);
  }
  if (restartNeeded.length === 0) return { config: next, restartNeeded };
  const tls = (was.tls === undefined) === (now.tls === undefined) ? now.tls : was.tls;
  const config: Config = {
    ...next,
    server: { ...now, listen: was.listen, tls },
    cache: { ...next.cache, store: s0, shared: h0 },
    trust: { ...next.trust, ...(t0 !== undefined ? { tuf: t0 } : {}) },
  };
  if (t0 === undefined) delete (config.trust as { tuf?: unknown }).tuf;
  if (h0 === undefined) delete (config.cache as { shared?: unknown }).shared;
  return { config: deepFreeze(config), restartNeeded };
}
