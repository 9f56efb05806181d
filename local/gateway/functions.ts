// `/functions/v1/<name>/...` as Supabase's edge relay serves it: check the caller's JWT unless
// the function opts out with `verify_jwt = false` in supabase/config.toml, then hand the
// request, streamed, to the function's own local server under the path `/<name>/...`.

import { parse } from "smol-toml";
import { bearerToken, verifyJwt } from "./jwt.ts";

/** Names of the functions whose config.toml section says `verify_jwt = false`. */
function functionsWithoutJwtCheck(configTomlPath: string): Set<string> {
  let text: string;
  try {
    text = Deno.readTextFileSync(configTomlPath);
  } catch (err) {
    // No config.toml means every function keeps the default, verify_jwt = true.
    if (err instanceof Deno.errors.NotFound) return new Set();
    throw err;
  }
  const functions = parse(text).functions;
  const open = new Set<string>();
  if (typeof functions === "object" && functions !== null && !Array.isArray(functions)) {
    for (const [name, section] of Object.entries(functions)) {
      if (typeof section === "object" && section !== null && "verify_jwt" in section) {
        if (section.verify_jwt === false) open.add(name);
      }
    }
  }
  return open;
}

// Hop-by-hop headers describe one connection and must not be forwarded (RFC 9110 7.6.1);
// host and content-length are set again by fetch for the new request.
const notForwarded = [
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "te",
  "trailer",
  "host",
  "content-length",
];

function forwardableHeaders(source: Headers): Headers {
  const headers = new Headers(source);
  for (const name of notForwarded) headers.delete(name);
  return headers;
}

/**
 * Handles `/functions/v1/<name><rest>`; `path` is the part after `/functions/v1`.
 * `functions` maps a function name to the base URL of the server running it.
 * config.toml is read once here: restart the gateway after changing `verify_jwt`.
 */
export function createFunctionsHandler(opts: {
  functions: Record<string, string>;
  jwtSecret: string;
  configTomlPath: string;
}): (req: Request, path: string) => Promise<Response> {
  const { functions, jwtSecret } = opts;
  const withoutJwtCheck = functionsWithoutJwtCheck(opts.configTomlPath);

  return async (req, path) => {
    const name = path.split("/")[1] ?? "";
    const base = Object.hasOwn(functions, name) ? functions[name] : undefined;
    if (base === undefined) {
      return Response.json(
        { code: "NOT_FOUND", message: "Requested function was not found" },
        { status: 404 },
      );
    }

    // CORS preflights carry no credentials, so they pass to the function, which answers them.
    if (!withoutJwtCheck.has(name) && req.method !== "OPTIONS") {
      const token = bearerToken(req.headers.get("authorization"));
      if (token === null) {
        return Response.json({ msg: "Missing authorization header" }, { status: 401 });
      }
      if (!(await verifyJwt(token, jwtSecret)).ok) {
        return Response.json({ msg: "Invalid JWT" }, { status: 401 });
      }
    }

    const target = new URL(base);
    target.pathname = target.pathname.replace(/\/$/, "") + path;
    target.search = new URL(req.url).search;

    const headers = forwardableHeaders(req.headers);
    // Ask for an uncompressed answer: fetch would inflate it but keep content-encoding, and
    // the client would then try to inflate it again. Deno.serve compresses for the client.
    headers.set("accept-encoding", "identity");

    let upstream: Response;
    try {
      upstream = await fetch(target, {
        method: req.method,
        headers,
        body: req.body,
        redirect: "manual",
      });
    } catch (err) {
      console.error(`function ${name}: ${err instanceof Error ? err.message : String(err)}`);
      return Response.json({ msg: "Function is not reachable" }, { status: 502 });
    }
    return new Response(upstream.body, {
      status: upstream.status,
      statusText: upstream.statusText,
      headers: forwardableHeaders(upstream.headers),
    });
  };
}
