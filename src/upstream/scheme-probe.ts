import { Agent, request } from 'undici';
import { USER_AGENT } from './limits.js';

/** How long `--allow-http-registry` waits for an HTTPS answer before it tries plain HTTP. */
export const HTTPS_PROBE_TIMEOUT_MS = 5_000;

/**
 * The base URL of a registry named on the command line (`sigil verify IMAGE` without a config):
 * `https://host`. With `--allow-http-registry` (CONTRACT "Command line"), `http://host` when
 * `https://host/v2/` gives no HTTP answer at all — a refused connection, a failed TLS handshake, a
 * timeout —, as cosign does; any HTTP status (401 included) means the registry speaks HTTPS.
 */
export async function registryBaseUrl(host: string, allowHttp: boolean): Promise<string> {
  const https = `https://${host}`;
  if (!allowHttp) return https;
  const agent = new Agent({ connect: { timeout: HTTPS_PROBE_TIMEOUT_MS } });
  try {
    const res = await request(`${https}/v2/`, { headers: { 'user-agent': USER_AGENT }, dispatcher: agent, headersTimeout: HTTPS_PROBE_TIMEOUT_MS, bodyTimeout: HTTPS_PROBE_TIMEOUT_MS });
    await res.body.dump();
    return https;
  } catch {
    return `http://${host}`;
  } finally {
    await agent.close();
  }
}
