/** `redis://user:secret@host` → `redis://user:REDACTED@host`: a URL as it may be logged (Redis, an S3 endpoint). */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = 'REDACTED';
    return u.toString();
  } catch {
    return url.replace(/\/\/[^@/]*@/, '//REDACTED@');
  }
}
