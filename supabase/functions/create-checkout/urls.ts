// Where Stripe sends the buyer after paying or cancelling. A client may name its own pages
// (say, the page it was on), but only on origins the operator allows, so that the function
// cannot be used to send people to someone else's site. With no origin configured at all,
// only loopback addresses are allowed: fine locally, and it fails safe in production.

export interface CheckoutUrlConfig {
  /** Used when the request names no successUrl. */
  successUrl?: string;
  /** Used when the request names no cancelUrl. */
  cancelUrl?: string;
  /** Origins (scheme://host[:port]) a request's own URLs may use. */
  allowedOrigins: string[];
}

const LOOPBACK_HOSTS = new Set(["localhost", "127.0.0.1", "[::1]"]);
const MAX_URL_LENGTH = 2048;

function parse(value: string): URL | null {
  if (value.length > MAX_URL_LENGTH) return null;
  try {
    const url = new URL(value);
    const secure = url.protocol === "https:" ||
      (url.protocol === "http:" && LOOPBACK_HOSTS.has(url.hostname));
    return secure && url.username === "" && url.password === "" ? url : null;
  } catch {
    return null;
  }
}

/** Checks a configured URL (from the environment) at start-up. */
export function isAcceptableUrl(value: string): boolean {
  return parse(value) !== null;
}

/** The configured origins plus those of the configured default URLs. */
function allowedOrigins(config: CheckoutUrlConfig): Set<string> {
  const origins = new Set(config.allowedOrigins.map((origin) => new URL(origin).origin));
  for (const value of [config.successUrl, config.cancelUrl]) {
    if (value !== undefined) origins.add(new URL(value).origin);
  }
  return origins;
}

function resolveOne(
  name: "successUrl" | "cancelUrl",
  requested: string | undefined,
  fallback: string | undefined,
  origins: Set<string>,
): { url: string } | { error: string } {
  if (requested === undefined) {
    return fallback === undefined
      ? { error: `${name} is required (no default is configured)` }
      : { url: fallback };
  }
  const url = parse(requested);
  if (url === null) return { error: `${name} must be an https URL (http only for localhost)` };
  const allowed = origins.size === 0 ? LOOPBACK_HOSTS.has(url.hostname) : origins.has(url.origin);
  if (!allowed) return { error: `${name} must be on an allowed origin` };
  // The original text, not url.href: Stripe's {CHECKOUT_SESSION_ID} placeholder must survive.
  return { url: requested };
}

export function resolveCheckoutUrls(
  config: CheckoutUrlConfig,
  requested: { successUrl?: string; cancelUrl?: string },
): { successUrl: string; cancelUrl: string } | { error: string } {
  const origins = allowedOrigins(config);
  const success = resolveOne("successUrl", requested.successUrl, config.successUrl, origins);
  if ("error" in success) return success;
  const cancel = resolveOne("cancelUrl", requested.cancelUrl, config.cancelUrl, origins);
  if ("error" in cancel) return cancel;
  return { successUrl: success.url, cancelUrl: cancel.url };
}
