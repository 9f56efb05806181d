// Checks `Authorization: Bearer <secret>` for functions that the gateway does not guard
// (verify_jwt = false) and that only the backend may call. The comparison takes the same
// time whatever the candidate: both sides are hashed to 32 bytes, then compared in full.

const encoder = new TextEncoder();

async function sha256(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(text)));
}

/** Constant-time string equality (hashing first also hides the secret's length). */
export async function timingSafeEqual(candidate: string, secret: string): Promise<boolean> {
  const [a, b] = await Promise.all([sha256(candidate), sha256(secret)]);
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= a[i] ^ b[i];
  return difference === 0;
}

/** The token of an `Authorization: Bearer <token>` header, or null. */
export function bearerTokenOf(req: Request): string | null {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.get("authorization") ?? "");
  return match ? match[1] : null;
}

/** Whether the request carries exactly `secret` as its Bearer token. */
export async function hasBearerSecret(req: Request, secret: string): Promise<boolean> {
  const token = bearerTokenOf(req);
  // Compared even when missing, so a request without a token takes as long as a wrong one.
  const same = await timingSafeEqual(token ?? "", secret);
  return token !== null && same;
}
