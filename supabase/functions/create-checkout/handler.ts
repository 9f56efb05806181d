// A signed-in user buys a credit package: the function reads who they are and the package
// as that user (public.get_checkout_package, so PostgREST verifies the JWT and RLS applies),
// creates the Stripe Checkout Session with a Stripe idempotency key, records the pending
// recharge (public.record_pending_recharge, idempotent by session id) and returns the
// session's URL. The same idempotencyKey sent again returns the same session.
import Stripe from "stripe";
import type { SupabaseClient } from "@supabase/supabase-js";
import { preflight, withCors } from "../_shared/cors.ts";
import { jsonError, readBodyText } from "../_shared/http.ts";
import { callRpc, RpcError } from "../_shared/rpc.ts";
import { callStripe, DEFAULT_RETRY_POLICY, type RetryPolicy, retryReason } from "../_shared/stripe-retry.ts";
import { type CheckoutIdentity, checkoutRequestSchema, type CreditPackage } from "./request.ts";
import { type CheckoutUrlConfig, resolveCheckoutUrls } from "./urls.ts";

const MAX_BODY_BYTES = 8 * 1024;

export interface CreateCheckoutDeps {
  stripe: Stripe;
  /** Service-role client: records the pending recharge. */
  db: SupabaseClient;
  /** A client that calls the Data API with the caller's own Authorization header. */
  userDb: (authorization: string) => SupabaseClient;
  urls: CheckoutUrlConfig;
  retry?: RetryPolicy;
  log?: (message: string) => void;
}

function isNotSignedIn(err: unknown): boolean {
  return err instanceof RpcError &&
    (err.status === 401 || err.status === 403 || err.code === "42501" || err.code.startsWith("PGRST30"));
}

function sessionParams(userId: string, pkg: CreditPackage, urls: { successUrl: string; cancelUrl: string }) {
  const metadata = { user_id: userId, credits: String(pkg.credits), package_id: pkg.id };
  return {
    mode: "payment" as const,
    line_items: [{ price: pkg.stripe_price_id, quantity: 1 }],
    client_reference_id: userId,
    metadata,
    // Refunds and disputes arrive on the charge: the same metadata there helps support.
    payment_intent_data: { metadata },
    success_url: urls.successUrl,
    cancel_url: urls.cancelUrl,
  };
}

export function createCheckoutHandler(deps: CreateCheckoutDeps): (req: Request) => Promise<Response> {
  const log = deps.log ?? console.error;
  const retry = deps.retry ?? DEFAULT_RETRY_POLICY;

  async function handle(req: Request): Promise<Response> {
    if (req.method !== "POST") return jsonError(405, `method ${req.method} not allowed: use POST`);
    const authorization = req.headers.get("authorization");
    if (authorization === null || !/^Bearer\s+\S+$/i.test(authorization.trim())) {
      return jsonError(401, "sign in to buy credits: a user's access token is required");
    }

    const text = await readBodyText(req, MAX_BODY_BYTES);
    if (text === null) return jsonError(413, `body larger than ${MAX_BODY_BYTES} bytes`);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return jsonError(400, 'body must be JSON: {"packageId": "<uuid>"}');
    }
    const body = checkoutRequestSchema.safeParse(json);
    if (!body.success) {
      const fields = [...new Set(body.error.issues.map((issue) => issue.path.join(".") || "body"))];
      return jsonError(400, `invalid request: check ${fields.join(", ")}`);
    }
    const urls = resolveCheckoutUrls(deps.urls, body.data);
    if ("error" in urls) return jsonError(400, urls.error);

    let identity: CheckoutIdentity;
    try {
      identity = await callRpc<CheckoutIdentity>(deps.userDb(authorization), "get_checkout_package", {
        package_id: body.data.packageId,
      });
    } catch (err) {
      if (isNotSignedIn(err)) {
        return jsonError(401, "sign in to buy credits: a user's access token is required");
      }
      log(`create-checkout: get_checkout_package: ${err instanceof Error ? err.message : String(err)}`);
      return jsonError(500, "the credit package could not be read");
    }
    const pkg = identity.package;
    if (pkg === null) return jsonError(404, "unknown credit package", { packageId: body.data.packageId });
    if (!pkg.active) return jsonError(422, "this credit package is no longer sold", { packageId: pkg.id });

    const clientKey = body.data.idempotencyKey ?? crypto.randomUUID();
    const idempotencyKey = `create-checkout:${identity.user_id}:${clientKey}`;
    let session: Stripe.Checkout.Session;
    try {
      session = await callStripe(
        "checkout.sessions.create",
        () =>
          deps.stripe.checkout.sessions.create(sessionParams(identity.user_id, pkg, urls), {
            idempotencyKey,
          }),
        {
          policy: retry,
          onRetry: (r) =>
            log(
              `create-checkout: Stripe attempt ${r.attempt} failed (${r.reason}); retrying in ${r.waitMs} ms`,
            ),
        },
      );
    } catch (err) {
      if (err instanceof Stripe.errors.StripeIdempotencyError) {
        return jsonError(409, "idempotencyKey was already used for a different checkout");
      }
      const code = err instanceof Stripe.errors.StripeError ? `${err.type} ${err.code ?? ""}` : String(err);
      log(`create-checkout: Stripe refused the session: ${code}`);
      return retryReason(err) !== null
        ? jsonError(503, "Stripe is unavailable; try again with the same idempotencyKey", {
          idempotencyKey: clientKey,
        })
        : jsonError(502, "Stripe refused to create the checkout session");
    }
    if (!session.url) {
      log(`create-checkout: session ${session.id} has no url`);
      return jsonError(502, "Stripe returned a session without a URL");
    }

    try {
      await callRpc(deps.db, "record_pending_recharge", {
        user_id: identity.user_id,
        checkout_session_id: session.id,
        credits: pkg.credits,
        amount_cents: session.amount_total ?? pkg.amount_cents,
        currency: session.currency ?? pkg.currency,
      });
    } catch (err) {
      log(`create-checkout: record_pending_recharge: ${err instanceof Error ? err.message : String(err)}`);
      if (err instanceof RpcError && err.code === "CR004") {
        return jsonError(401, "the signed-in user no longer exists");
      }
      // The paid session still credits (the webhook reads its metadata); retrying with the
      // same key returns the same session and records it.
      return jsonError(
        500,
        "the checkout session was created but not recorded; retry with the same idempotencyKey",
        {
          idempotencyKey: clientKey,
        },
      );
    }
    return Response.json({ url: session.url, sessionId: session.id });
  }

  return async (req: Request): Promise<Response> => preflight(req) ?? withCors(await handle(req));
}
