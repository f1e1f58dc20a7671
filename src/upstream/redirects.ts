import { SigilError } from '../errors.js';
import type { AuthorizedExchange, UpstreamRequest } from './authorized.js';
import { headerValue } from './error-map.js';
import type { Exchange, UpstreamHttp } from './http.js';
import { MAX_REDIRECTS } from './limits.js';

const REDIRECT_STATUSES: ReadonlySet<number> = new Set([301, 302, 303, 307, 308]);

/**
 * Follows an upstream's blob redirects (registry → storage → CDN), at most MAX_REDIRECTS hops,
 * http(s) only, no user:password in the target. The upstream's Authorization goes only to the
 * upstream's own origin: a storage or CDN host gets none (its signed URL is its credential).
 * `describe`: "upstream docker.io: blob sha256:… of library/nginx", for messages.
 */
export async function followRedirects(
  first: AuthorizedExchange,
  req: UpstreamRequest,
  opts: { readonly http: UpstreamHttp; readonly origin: string; readonly describe: string },
): Promise<Exchange> {
  let res = first.res;
  for (let hops = 0; REDIRECT_STATUSES.has(res.status); hops++) {
    const location = headerValue(res.headers, 'location');
    await opts.http.discard(res.body);
    if (hops >= MAX_REDIRECTS) {
      throw new SigilError({ code: 'UPSTREAM_BAD_RESPONSE', message: `${opts.describe}: more than ${MAX_REDIRECTS} redirects` });
    }
    const next = location !== undefined ? URL.parse(location, res.url.href) : null;
    if (next === null || (next.protocol !== 'https:' && next.protocol !== 'http:') || next.username !== '' || next.password !== '') {
      throw new SigilError({ code: 'UPSTREAM_BAD_RESPONSE', message: `${opts.describe}: unusable redirect` });
    }
    const headers = { ...req.headers };
    // credentials stay with the upstream: a storage or CDN host gets none
    if (next.origin === opts.origin && first.credential !== undefined) headers.authorization = first.credential.header;
    res = await opts.http.send(req.kind, req.method, next, headers, req.signal);
  }
  return res;
}
