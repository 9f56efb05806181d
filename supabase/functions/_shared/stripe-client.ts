// One way to build the Stripe client for every function that calls the Stripe API. Retries
// are left to stripe-retry.ts (maxNetworkRetries 0) so that each one is counted and
// reported. STRIPE_API_BASE points the client at another server, for tests only: the Stripe
// API cannot be reached from the test machines, so they run a loopback fake of their own.
import Stripe from "stripe";
import { z } from "zod";

/** Stripe's own answers come well within this; a hung call must not eat a run's budget. */
export const STRIPE_TIMEOUT_MS = 20_000;

const apiBase = z.url({ protocol: /^https?$/ }).refine((value) => {
  const url = new URL(value);
  return url.pathname === "/" && url.search === "" && url.username === "" && url.password === "";
}, "STRIPE_API_BASE must be a bare origin such as http://127.0.0.1:12111");

/** Environment shared by the functions that call the Stripe API. */
export const stripeApiEnv = {
  STRIPE_SECRET_KEY: z.string().min(1),
  // Unset (or empty) in production: stripe-node then talks to https://api.stripe.com.
  STRIPE_API_BASE: z.preprocess((value) => value === "" ? undefined : value, apiBase.optional()),
};

type ConnectionOptions = Pick<Stripe.StripeConfig, "host" | "port" | "protocol">;

/** stripe-node's host/port/protocol options for an API base URL; none for the real API. */
export function stripeConnectionOptions(base: string | undefined): ConnectionOptions {
  if (base === undefined) return {};
  const url = new URL(base);
  const protocol = url.protocol === "http:" ? "http" : "https";
  return {
    host: url.hostname.replace(/^\[(.*)\]$/, "$1"),
    port: url.port === "" ? (protocol === "http" ? 80 : 443) : Number(url.port),
    protocol,
  };
}

export function createStripeClient(secretKey: string, base?: string): Stripe {
  return new Stripe(secretKey, {
    httpClient: Stripe.createFetchHttpClient(),
    maxNetworkRetries: 0,
    timeout: STRIPE_TIMEOUT_MS,
    ...stripeConnectionOptions(base),
  });
}
