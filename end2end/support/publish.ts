// `POST /api/publish`, as a customer's backend calls it.

import { API_KEY } from './auth';

export interface Published {
  status: number;
  /** The parsed JSON response: `{id, seq, online}` or `{error: {code, reason}}`. */
  body: Record<string, unknown>;
}

/** How long a publish may take before the test fails. */
const PUBLISH_TIMEOUT_MS = 10_000;

/**
 * Publishes `request`: an object is sent as JSON, `URLSearchParams` as the
 * classic form (`message=Ping`, `message=Hello&id=63`).
 */
export async function publish(
  baseUrl: string,
  request: Record<string, unknown> | URLSearchParams,
  key: string = API_KEY,
  idempotencyKey?: string,
): Promise<Published> {
  const form = request instanceof URLSearchParams;
  const response = await fetch(`${baseUrl}/api/publish`, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${key}`,
      'Content-Type': form ? 'application/x-www-form-urlencoded' : 'application/json',
      ...(idempotencyKey === undefined ? {} : { 'Idempotency-Key': idempotencyKey }),
    },
    body: form ? request.toString() : JSON.stringify(request),
    signal: AbortSignal.timeout(PUBLISH_TIMEOUT_MS),
  });
  const text = await response.text();
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new Error(`POST /api/publish answered ${response.status} with no JSON: ${text}`);
  }
  return { status: response.status, body };
}

/** Publishes and expects `200`; resolves with the response body. */
export async function published(
  baseUrl: string,
  request: Record<string, unknown> | URLSearchParams,
): Promise<{ id: string; seq: number | null; online: number; deliveries?: unknown[] }> {
  const { status, body } = await publish(baseUrl, request);
  if (status !== 200) {
    const sent = request instanceof URLSearchParams ? request.toString() : JSON.stringify(request);
    throw new Error(`POST /api/publish ${sent} answered ${status}: ${JSON.stringify(body)}`);
  }
  return body as { id: string; seq: number | null; online: number; deliveries?: unknown[] };
}
