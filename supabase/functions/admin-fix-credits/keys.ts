// The admin keys and how a request's key is checked against them.
//
// ADMIN_API_KEY holds one key, named "default". ADMIN_API_KEYS holds several named keys, so a
// key can be rotated without downtime (add the new one, move the callers, remove the old one):
// either a JSON object {"name": "key", ...} or "name:key,name2:key2". Both may be set; names
// must differ. Every key is validated at start; errors name the variable and the key's name,
// never a key. A request's key is compared with every configured key, in constant time and
// without stopping at a match, and only the matching key's NAME leaves this module.
import { bearerTokenOf, timingSafeEqual } from "../_shared/bearer-auth.ts";

/** 32 characters at least: `openssl rand -hex 32` gives 64. */
export const MIN_KEY_LENGTH = 32;
const MAX_KEY_LENGTH = 512;
const NAME_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;
/** Printable ASCII without spaces or commas (a comma separates keys in ADMIN_API_KEYS). */
const KEY_PATTERN = /^[\x21-\x2b\x2d-\x7e]+$/;
/** The audit log's name for a caller without a valid key. */
export const UNAUTHENTICATED = "unauthenticated";
export const DEFAULT_KEY_NAME = "default";

export interface AdminKey {
  name: string;
  key: string;
}

export interface AdminKeyEnv {
  ADMIN_API_KEY?: string;
  ADMIN_API_KEYS?: string;
}

export class AdminKeyError extends Error {}

/** The named keys of ADMIN_API_KEYS, in either form; throws without quoting the value. */
function parseKeyList(text: string): Array<[string, unknown]> {
  const trimmed = text.trim();
  if (trimmed.startsWith("{") || trimmed.startsWith("[")) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch {
      // JSON.parse's own message quotes the text, that is, the keys.
      throw new AdminKeyError(
        'ADMIN_API_KEYS is not valid JSON: use {"name": "key", ...} or name:key,name2:key2',
      );
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      throw new AdminKeyError('ADMIN_API_KEYS must be a JSON object {"name": "key", ...}');
    }
    return Object.entries(parsed);
  }
  return trimmed.split(",").map((entry, index): [string, unknown] => {
    const separator = entry.indexOf(":");
    if (separator < 0) {
      throw new AdminKeyError(`ADMIN_API_KEYS entry ${index + 1} is not name:key`);
    }
    return [entry.slice(0, separator).trim(), entry.slice(separator + 1).trim()];
  });
}

/**
 * The configured keys, validated: at least one; names of 1-64 letters, digits, `_.-`, unique,
 * not "unauthenticated"; keys of 32-512 printable characters without spaces or commas, each
 * used once and none equal to a Supabase key in `forbidden` (the anon and service-role keys).
 */
export function parseAdminKeys(env: AdminKeyEnv, forbidden: string[] = []): AdminKey[] {
  const entries: Array<[string, unknown, string]> = [];
  if (env.ADMIN_API_KEY !== undefined && env.ADMIN_API_KEY.trim() !== "") {
    entries.push([DEFAULT_KEY_NAME, env.ADMIN_API_KEY.trim(), "ADMIN_API_KEY"]);
  }
  if (env.ADMIN_API_KEYS !== undefined && env.ADMIN_API_KEYS.trim() !== "") {
    for (const [name, key] of parseKeyList(env.ADMIN_API_KEYS)) entries.push([name, key, "ADMIN_API_KEYS"]);
  }
  if (entries.length === 0) {
    throw new AdminKeyError(
      "set ADMIN_API_KEY (one key) or ADMIN_API_KEYS (named keys) for admin-fix-credits",
    );
  }

  const keys: AdminKey[] = [];
  for (const [name, key, variable] of entries) {
    if (!NAME_PATTERN.test(name) || name === UNAUTHENTICATED) {
      throw new AdminKeyError(
        `${variable}: key names are 1-64 letters, digits, "_", "." or "-" and not "${UNAUTHENTICATED}" (entry ${
          keys.length + 1
        })`,
      );
    }
    if (typeof key !== "string") {
      throw new AdminKeyError(`${variable}: the key named "${name}" is not a string`);
    }
    if (key.length < MIN_KEY_LENGTH || key.length > MAX_KEY_LENGTH) {
      throw new AdminKeyError(
        `${variable}: the key named "${name}" must be ${MIN_KEY_LENGTH} to ${MAX_KEY_LENGTH} characters (openssl rand -hex 32)`,
      );
    }
    if (!KEY_PATTERN.test(key)) {
      throw new AdminKeyError(
        `${variable}: the key named "${name}" must be printable ASCII without spaces or commas`,
      );
    }
    const sameName = keys.find((other) => other.name === name);
    if (sameName) throw new AdminKeyError(`${variable}: the key name "${name}" is used twice`);
    const sameKey = keys.find((other) => other.key === key);
    if (sameKey) {
      throw new AdminKeyError(`${variable}: the keys named "${sameKey.name}" and "${name}" are the same key`);
    }
    if (forbidden.includes(key)) {
      throw new AdminKeyError(
        `${variable}: the key named "${name}" is a Supabase API key (anon or service role); use a key of its own`,
      );
    }
    keys.push({ name, key });
  }
  return keys;
}

/**
 * The project's own API keys, which an admin key must never equal: the legacy anon and
 * service-role keys, and the values of the SUPABASE_SECRET_KEYS and SUPABASE_PUBLISHABLE_KEYS
 * dictionaries the platform provides with the new API keys (ignored when absent or malformed).
 */
export function supabaseApiKeys(env: Record<string, string | undefined>): string[] {
  const keys: string[] = [];
  for (const name of ["SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_ANON_KEY"]) {
    const value = env[name];
    if (value) keys.push(value);
  }
  for (const name of ["SUPABASE_SECRET_KEYS", "SUPABASE_PUBLISHABLE_KEYS"]) {
    const value = env[name];
    if (!value) continue;
    try {
      const parsed: unknown = JSON.parse(value);
      if (typeof parsed === "object" && parsed !== null) {
        for (const key of Object.values(parsed)) if (typeof key === "string" && key !== "") keys.push(key);
      }
    } catch {
      // Not ours to validate: the platform's own variable.
    }
  }
  return keys;
}

/**
 * The name of the configured key the request carries as `Authorization: Bearer <key>`, or
 * null. Every key is compared (SHA-256 of both sides, then a constant-time comparison of the
 * digests), whether or not one matched already, so the time taken tells nothing about which
 * key, if any, is close or right.
 */
export async function authenticate(req: Request, keys: AdminKey[]): Promise<string | null> {
  const token = bearerTokenOf(req);
  const candidate = token ?? "";
  let matched: string | null = null;
  for (const { name, key } of keys) {
    const same = await timingSafeEqual(candidate, key);
    if (same && token !== null) matched = name;
  }
  return matched;
}
