/**
 * Whether `token` can be a bearer token: non-empty visible ASCII, no spaces.
 * An empty one would read as "no authentication", and one with spaces or
 * control characters cannot travel in `Authorization: Bearer …` (the server
 * trims the header) and so could never match.
 */
export function isBearerToken(token: unknown): token is string {
  return typeof token === "string" && /^[\x21-\x7e]+$/.test(token);
}
