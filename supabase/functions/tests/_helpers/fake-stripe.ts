// A loopback stand-in for the parts of the Stripe API the package calls, Stripe-shaped
// enough for stripe-node: GET /v1/events (filters, newest first, cursor pagination),
// GET /v1/checkout/sessions/:id (expand[]=payment_intent) and POST /v1/checkout/sessions
// (recording its parameters and Idempotency-Key, replaying a repeated key as Stripe does).
// Any route can be told to answer its next requests with 429 or 5xx. It listens on the port
// of STRIPE_API_BASE, where npm test points the functions; start one per test and close it.
import type { StripeEvent } from "./stripe-events.ts";

// deno-lint-ignore no-explicit-any
type Json = Record<string, any>;

export type Route = "GET /v1/events" | "GET /v1/checkout/sessions" | "POST /v1/checkout/sessions";

export interface RecordedRequest {
  route: string;
  method: string;
  path: string;
  query: URLSearchParams;
  idempotencyKey: string | null;
  status: number;
}

export interface CreatedSession {
  params: Record<string, string>;
  idempotencyKey: string | null;
  session: Json;
}

export interface FakeStripe {
  url: string;
  /** Adds an event Stripe has; `delivered: false` makes it match delivery_success=false. */
  addEvent(event: StripeEvent, options?: { delivered?: boolean }): void;
  /** Stores a Checkout Session (and optionally its PaymentIntent) for retrieval. */
  setSession(session: Json, paymentIntent?: Json): void;
  /** A Price that POST /v1/checkout/sessions accepts. */
  addPrice(id: string, unitAmount: number, currency?: string): void;
  /** The next requests on `route` answer these statuses, in order, before normal service. */
  failNext(route: Route, statuses: number[]): void;
  readonly requests: RecordedRequest[];
  readonly created: CreatedSession[];
  close(): Promise<void>;
}

function stripeError(status: number, error: Json): Response {
  return Response.json({ error }, {
    status,
    headers: { "request-id": `req_fake_${crypto.randomUUID().slice(0, 8)}` },
  });
}

function failure(status: number): Response {
  return status === 429
    ? stripeError(429, {
      type: "invalid_request_error",
      code: "rate_limit",
      message: "Request rate limit exceeded. Retry with exponential backoff.",
    })
    : stripeError(status, { type: "api_error", message: "Something went wrong on Stripe's end." });
}

function notFound(kind: string, id: string, param: string): Response {
  return stripeError(404, {
    type: "invalid_request_error",
    code: "resource_missing",
    message: `No such ${kind}: '${id}'`,
    param,
  });
}

/** Values of `name[0]`, `name[1]`, ... (stripe-node's array encoding). */
function arrayParam(query: URLSearchParams, name: string): string[] {
  return [...query.entries()].filter(([key]) => key.startsWith(`${name}[`)).map(([, value]) => value);
}

function createdMatches(created: number, query: URLSearchParams): boolean {
  const bound = (op: string) => query.get(`created[${op}]`);
  const checks: Array<[string | null, (limit: number) => boolean]> = [
    [bound("gte"), (limit) => created >= limit],
    [bound("gt"), (limit) => created > limit],
    [bound("lt"), (limit) => created < limit],
    [bound("lte"), (limit) => created <= limit],
    [query.get("created"), (limit) => created === limit],
  ];
  return checks.every(([value, test]) => value === null || test(Number(value)));
}

export function startFakeStripe(): FakeStripe {
  const base = Deno.env.get("STRIPE_API_BASE");
  if (!base) throw new Error("tests need STRIPE_API_BASE: run them with npm test");
  const port = Number(new URL(base).port);

  const events: Array<{ event: StripeEvent; delivered: boolean; seq: number }> = [];
  const sessions = new Map<string, Json>();
  const paymentIntents = new Map<string, Json>();
  const prices = new Map<string, { unit_amount: number; currency: string }>();
  const failures = new Map<string, number[]>();
  const idempotent = new Map<string, { params: string; session: Json }>();
  const requests: RecordedRequest[] = [];
  const created: CreatedSession[] = [];
  let seq = 0;

  function listEvents(query: URLSearchParams): Response {
    const limit = Math.min(100, Math.max(1, Number(query.get("limit") ?? "10")));
    const types = arrayParam(query, "types");
    const type = query.get("type");
    const delivery = query.get("delivery_success");
    const matching = events
      .filter(({ event, delivered }) =>
        (types.length === 0 || types.includes(event.type)) &&
        (type === null || event.type === type) &&
        (delivery === null || String(delivered) === delivery) &&
        createdMatches(event.created, query)
      )
      .sort((a, b) => b.event.created - a.event.created || b.seq - a.seq)
      .map(({ event }) => event);

    let start = 0;
    let end = matching.length;
    const startingAfter = query.get("starting_after");
    const endingBefore = query.get("ending_before");
    if (startingAfter !== null) {
      const index = matching.findIndex((event) => event.id === startingAfter);
      if (index < 0) return notFound("event", startingAfter, "starting_after");
      start = index + 1;
      end = Math.min(matching.length, start + limit);
    } else if (endingBefore !== null) {
      const index = matching.findIndex((event) => event.id === endingBefore);
      if (index < 0) return notFound("event", endingBefore, "ending_before");
      end = index;
      start = Math.max(0, end - limit);
    } else {
      end = Math.min(matching.length, limit);
    }
    const hasMore = endingBefore !== null ? start > 0 : end < matching.length;
    return Response.json({
      object: "list",
      url: "/v1/events",
      has_more: hasMore,
      data: matching.slice(start, end),
    });
  }

  function retrieveSession(id: string, query: URLSearchParams): Response {
    const session = sessions.get(id);
    if (!session) return notFound("checkout.session", id, "session");
    const copy = structuredClone(session);
    const intent = typeof copy.payment_intent === "string"
      ? paymentIntents.get(copy.payment_intent)
      : undefined;
    if (arrayParam(query, "expand").includes("payment_intent") && intent) copy.payment_intent = intent;
    return Response.json(copy);
  }

  async function createSession(req: Request, idempotencyKey: string | null): Promise<Response> {
    const text = await req.text();
    const params = Object.fromEntries(new URLSearchParams(text));
    const canonical = JSON.stringify(Object.entries(params).sort());
    if (idempotencyKey !== null) {
      const earlier = idempotent.get(idempotencyKey);
      if (earlier) {
        if (earlier.params !== canonical) {
          return stripeError(400, {
            type: "idempotency_error",
            message:
              "Keys for idempotent requests can only be used with the same parameters they were first used with.",
          });
        }
        return Response.json(earlier.session, { headers: { "idempotent-replayed": "true" } });
      }
    }
    const priceId = params["line_items[0][price]"];
    const price = priceId === undefined ? undefined : prices.get(priceId);
    if (!price) return notFound("price", priceId ?? "", "line_items[0][price]");
    const quantity = Number(params["line_items[0][quantity]"] ?? "1");
    const metadata = Object.fromEntries(
      Object.entries(params).filter(([key]) => /^metadata\[[^\]]+\]$/.test(key)).map((
        [key, value],
      ) => [key.slice(9, -1), value]),
    );
    const id = `cs_test_fake${crypto.randomUUID().replaceAll("-", "")}`;
    const now = Math.floor(Date.now() / 1000);
    const session: Json = {
      id,
      object: "checkout.session",
      amount_subtotal: price.unit_amount * quantity,
      amount_total: price.unit_amount * quantity,
      cancel_url: params.cancel_url ?? null,
      client_reference_id: params.client_reference_id ?? null,
      created: now,
      currency: price.currency,
      customer: null,
      expires_at: now + 86_400,
      livemode: false,
      metadata,
      mode: params.mode,
      payment_intent: null,
      payment_method_types: ["card"],
      payment_status: "unpaid",
      status: "open",
      success_url: params.success_url ?? null,
      url: `https://checkout.stripe.com/c/pay/${id}`,
    };
    sessions.set(id, session);
    created.push({ params, idempotencyKey, session });
    if (idempotencyKey !== null) idempotent.set(idempotencyKey, { params: canonical, session });
    return Response.json(session);
  }

  async function route(req: Request, url: URL): Promise<Response> {
    if (req.method === "GET" && url.pathname === "/v1/events") return listEvents(url.searchParams);
    const sessionPath = /^\/v1\/checkout\/sessions\/([^/]+)$/.exec(url.pathname);
    if (req.method === "GET" && sessionPath) {
      return retrieveSession(decodeURIComponent(sessionPath[1]), url.searchParams);
    }
    if (req.method === "POST" && url.pathname === "/v1/checkout/sessions") {
      return await createSession(req, req.headers.get("idempotency-key"));
    }
    return stripeError(404, {
      type: "invalid_request_error",
      message: `Unrecognized request URL (${req.method})`,
    });
  }

  const server = Deno.serve({ hostname: "127.0.0.1", port, onListen: () => {} }, async (req) => {
    const url = new URL(req.url);
    const routeName = `${req.method} ${url.pathname.replace(/^(\/v1\/checkout\/sessions)\/.+$/, "$1")}`;
    const idempotencyKey = req.headers.get("idempotency-key");
    const queued = failures.get(routeName);
    const res = queued && queued.length > 0 ? failure(queued.shift() ?? 500) : await route(req, url);
    if (!req.bodyUsed && req.body) await req.body.cancel();
    requests.push({
      route: routeName,
      method: req.method,
      path: url.pathname,
      query: url.searchParams,
      idempotencyKey,
      status: res.status,
    });
    return res;
  });

  return {
    url: `http://127.0.0.1:${port}`,
    addEvent(event, options = {}) {
      events.push({ event: structuredClone(event), delivered: options.delivered ?? true, seq: seq++ });
    },
    setSession(session, paymentIntent) {
      sessions.set(session.id, structuredClone(session));
      if (paymentIntent) paymentIntents.set(paymentIntent.id, structuredClone(paymentIntent));
    },
    addPrice(id, unitAmount, currency = "usd") {
      prices.set(id, { unit_amount: unitAmount, currency });
    },
    failNext(routeName, statuses) {
      failures.set(routeName, [...(failures.get(routeName) ?? []), ...statuses]);
    },
    requests,
    created,
    async close() {
      await server.shutdown();
    },
  };
}
