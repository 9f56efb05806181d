// How the torture run talks to the stack: Stripe deliveries to the webhook, the backend's
// RPCs through supabase-js (the production path), and the fault of a client that hangs up
// right after sending its request (a raw socket, closed before the answer).
import { createClient, type SupabaseClient } from "@supabase/supabase-js";
import { stack } from "../_helpers/env.ts";
import { signatureHeader, type StripeEvent } from "../_helpers/stripe-events.ts";

/** An error's message with its cause (Deno's fetch puts "Connection refused" in the cause). */
export function errorText(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  return err.cause
    ? `${err.message}: ${err.cause instanceof Error ? err.cause.message : String(err.cause)}`
    : err.message;
}

/** An HTTP answer, or none at all (connection refused or reset, timeout, our own hang-up). */
export type Outcome =
  | { answered: true; status: number; body: unknown }
  | { answered: false; reason: string };

/** Longer than the gateway's own connect timeout (5 s), so that it answers first. */
const REQUEST_TIMEOUT_MS = 45_000;

export function serviceClient(): SupabaseClient {
  return createClient(stack.url, stack.serviceRoleKey, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
  });
}

async function readJson(response: Response): Promise<unknown> {
  const text = await response.text();
  if (text === "") return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** POSTs a signed event to stripe-webhook, as Stripe does. */
export async function deliver(payload: string): Promise<Outcome> {
  try {
    const response = await fetch(stack.functionUrl("stripe-webhook"), {
      method: "POST",
      headers: { "content-type": "application/json", "stripe-signature": await signatureHeader(payload) },
      body: payload,
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    return { answered: true, status: response.status, body: await readJson(response) };
  } catch (err) {
    return { answered: false, reason: errorText(err) };
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await conn.write(bytes.subarray(written));
}

/**
 * Sends a whole HTTP request on a fresh connection and closes it `afterMs` later without
 * reading the answer: the client disconnects mid-request. Whether the request took effect is
 * unknown to the client.
 */
export async function sendAndHangUp(
  url: string,
  headers: Record<string, string>,
  body: string,
  afterMs: number,
): Promise<Outcome> {
  const target = new URL(url);
  const bytes = new TextEncoder().encode(body);
  const head = [
    `POST ${target.pathname}${target.search} HTTP/1.1`,
    `host: ${target.host}`,
    `content-length: ${bytes.length}`,
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
    "",
    "",
  ].join("\r\n");
  let conn: Deno.Conn | undefined;
  try {
    conn = await Deno.connect({ hostname: target.hostname, port: Number(target.port) });
    const request = new Uint8Array([...new TextEncoder().encode(head), ...bytes]);
    await writeAll(conn, request);
    if (afterMs > 0) await new Promise((resolve) => setTimeout(resolve, afterMs));
  } catch (err) {
    return { answered: false, reason: `hang-up: ${errorText(err)}` };
  } finally {
    try {
      conn?.close();
    } catch {
      // Already closed by the other side.
    }
  }
  return { answered: false, reason: `client hung up ${afterMs} ms after sending` };
}

export async function deliverAndHangUp(payload: string, afterMs: number): Promise<Outcome> {
  return await sendAndHangUp(
    stack.functionUrl("stripe-webhook"),
    { "content-type": "application/json", "stripe-signature": await signatureHeader(payload) },
    payload,
    afterMs,
  );
}

export function rpcAndHangUp(fn: string, args: Record<string, unknown>, afterMs: number): Promise<Outcome> {
  return sendAndHangUp(
    `${stack.url}/rest/v1/rpc/${fn}`,
    {
      "content-type": "application/json",
      apikey: stack.serviceRoleKey,
      authorization: `Bearer ${stack.serviceRoleKey}`,
    },
    JSON.stringify(args),
    afterMs,
  );
}

/** Calls an RPC with supabase-js as the backend (service_role) does. */
export async function rpc(db: SupabaseClient, fn: string, args: Record<string, unknown>): Promise<Outcome> {
  try {
    const { data, error, status } = await db.rpc(fn, args).abortSignal(
      AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    );
    // postgrest-js reports a network failure as an error with status 0.
    if (status === 0) return { answered: false, reason: error?.message ?? "no answer" };
    return { answered: true, status, body: error ?? data };
  } catch (err) {
    return { answered: false, reason: errorText(err) };
  }
}

export function eventPayload(event: StripeEvent): string {
  return JSON.stringify(event);
}
