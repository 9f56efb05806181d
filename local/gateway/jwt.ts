// HS256 JWT verification with WebCrypto, as Supabase's gateway and PostgREST do it for the
// project's JWT secret. Only HS256 is accepted: the local stack signs every key with the
// shared secret, and accepting other algorithms (notably "none") would be a hole.

export type JwtClaims = Record<string, unknown>;

export type JwtError = "missing" | "invalid" | "expired";

export type JwtResult =
  | { ok: true; claims: JwtClaims }
  | { ok: false; error: JwtError; message: string };

const encoder = new TextEncoder();

function base64UrlDecode(text: string): Uint8Array<ArrayBuffer> {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
  const binary = atob(padded);
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

function base64UrlEncode(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function hmacKey(secret: string, usage: "sign" | "verify"): Promise<CryptoKey> {
  return crypto.subtle.importKey(
    "raw",
    encoder.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    [usage],
  );
}

function parseJsonObject(bytes: Uint8Array): JwtClaims | null {
  try {
    const value: unknown = JSON.parse(new TextDecoder().decode(bytes));
    return typeof value === "object" && value !== null && !Array.isArray(value) ? value as JwtClaims : null;
  } catch {
    return null;
  }
}

/** Verifies signature (HS256 with `secret`) and `exp`; returns the claims or why not. */
export async function verifyJwt(
  token: string | null | undefined,
  secret: string,
): Promise<JwtResult> {
  if (!token) return { ok: false, error: "missing", message: "No JWT given" };

  const parts = token.split(".");
  if (parts.length !== 3) {
    return {
      ok: false,
      error: "invalid",
      message: `Expected 3 parts in JWT; got ${parts.length}`,
    };
  }
  const [headerPart, payloadPart, signaturePart] = parts;

  let header: JwtClaims | null;
  let claims: JwtClaims | null;
  let signature: Uint8Array<ArrayBuffer>;
  try {
    header = parseJsonObject(base64UrlDecode(headerPart));
    claims = parseJsonObject(base64UrlDecode(payloadPart));
    signature = base64UrlDecode(signaturePart);
  } catch {
    // atob throws on characters outside the base64url alphabet.
    return { ok: false, error: "invalid", message: "JWT is not valid base64url" };
  }
  if (header === null || claims === null) {
    return { ok: false, error: "invalid", message: "JWT header or payload is not a JSON object" };
  }
  if (header.alg !== "HS256") {
    return { ok: false, error: "invalid", message: "Wrong or unsupported encoding algorithm" };
  }

  const key = await hmacKey(secret, "verify");
  const signed = encoder.encode(`${headerPart}.${payloadPart}`);
  if (!(await crypto.subtle.verify("HMAC", key, signature, signed))) {
    return { ok: false, error: "invalid", message: "JWT cryptographic operation failed" };
  }

  // Checked only after the signature, so an attacker cannot probe with forged claims.
  if (claims.exp !== undefined) {
    if (typeof claims.exp !== "number") {
      return { ok: false, error: "invalid", message: "The JWT 'exp' claim must be a number" };
    }
    if (claims.exp <= Date.now() / 1000) {
      return { ok: false, error: "expired", message: "JWT expired" };
    }
  }
  return { ok: true, claims };
}

/** Signs `claims` with HS256; for tests and local tooling that need their own tokens. */
export async function signJwt(claims: JwtClaims, secret: string): Promise<string> {
  const header = base64UrlEncode(encoder.encode(JSON.stringify({ alg: "HS256", typ: "JWT" })));
  const payload = base64UrlEncode(encoder.encode(JSON.stringify(claims)));
  const key = await hmacKey(secret, "sign");
  const signature = await crypto.subtle.sign("HMAC", key, encoder.encode(`${header}.${payload}`));
  return `${header}.${payload}.${base64UrlEncode(new Uint8Array(signature))}`;
}

/**
 * The token of an `Authorization: Bearer <token>` header, or null when there is no header.
 * A value that is not a Bearer token is returned whole, so that it fails verification as an
 * invalid JWT instead of quietly counting as no credentials at all.
 */
export function bearerToken(authorization: string | null): string | null {
  if (authorization === null) return null;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  return match ? match[1] : authorization;
}
