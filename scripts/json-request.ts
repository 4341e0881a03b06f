// One JSON request to a running server, for the scripts and tests that talk to one over real HTTP
// (benchmarks, the fault script, the two-instance test): the answer as it came, never thrown.

export interface JsonAnswer {
  status: number;
  /** The body parsed as JSON; null when it is empty or not JSON. */
  body: any;
  text: string;
  headers: Headers;
}

export async function jsonRequest(
  method: string,
  url: string,
  options: { token?: string | null; body?: unknown; signal?: AbortSignal } = {},
): Promise<JsonAnswer> {
  const { token, body, signal } = options;
  const res = await fetch(url, {
    method,
    headers: {
      ...(token && { authorization: `Bearer ${token}` }),
      ...(body !== undefined && { 'content-type': 'application/json' }),
    },
    ...(body !== undefined && { body: JSON.stringify(body) }),
    ...(signal && { signal }),
  });
  const text = await res.text();
  let parsed: any = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {}
  return { status: res.status, body: parsed, text, headers: res.headers };
}
