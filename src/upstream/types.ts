/** What kind of upstream request this is, for metrics and logs. */
export type RequestKind = 'ping' | 'manifest' | 'blob' | 'tags' | 'referrers' | 'token';
