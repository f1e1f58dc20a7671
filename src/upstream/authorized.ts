import type { Authenticator, SentCredential } from './auth.js';
import type { Exchange, UpstreamHttp } from './http.js';
import type { RequestKind } from './types.js';

/** One request to an upstream as an endpoint describes it, before auth is added. */
export interface UpstreamRequest {
  readonly kind: RequestKind;
  readonly method: 'GET' | 'HEAD';
  readonly url: URL;
  /** Without Authorization: that is added here, and only here. */
  readonly headers: Readonly<Record<string, string>>;
  /** Token scope (`repository:<name>:pull`); none for ping. */
  readonly scope: string | undefined;
  readonly signal: AbortSignal | undefined;
}

/** An answer, and the credential of the attempt that got it (never logged). */
export interface AuthorizedExchange {
  readonly res: Exchange;
  readonly credential: SentCredential | undefined;
}

/**
 * One request with auth: the credential known for its scope up front, and on a 401 the challenge
 * answered (auth.ts) and the request retried once. A second 401 is UPSTREAM_DENIED: never a loop.
 */
export async function sendAuthorized(http: UpstreamHttp, auth: Authenticator, req: UpstreamRequest): Promise<AuthorizedExchange> {
  const withAuth = (cred: SentCredential | undefined): Record<string, string> =>
    cred === undefined ? { ...req.headers } : { ...req.headers, authorization: cred.header };
  let credential = await auth.initial(req.scope, req.signal);
  let res = await http.send(req.kind, req.method, req.url, withAuth(credential), req.signal);
  if (res.status !== 401) return { res, credential };
  const challenge = res.headers['www-authenticate'];
  await http.discard(res.body);
  credential = await auth.afterChallenge(challenge, req.scope, credential, req.signal);
  res = await http.send(req.kind, req.method, req.url, withAuth(credential), req.signal);
  if (res.status === 401) {
    await http.discard(res.body);
    throw auth.deniedAfterRetry();
  }
  return { res, credential };
}
