// A backend publishing through `POST /api/publish` while Herald fails: a
// request that fails with a connection error or a 5xx is retried with the
// same payload and the same `Idempotency-Key`, so a retry of a request that
// was in fact stored is not stored twice.

import { randomUUID } from 'node:crypto';
import { publish, type Published } from '../publish';

/** How long one publish keeps being retried before the test fails. */
const PUBLISH_DEADLINE_MS = 30_000;
const BACKOFF_MS = { first: 100, max: 1_000 };

export interface PublishOutcome {
  /** The `200` response's body: `{id, seq, online}`. */
  id: string;
  seq: number;
  /** Requests made, the successful one included. */
  requests: number;
  /** Why each failed request failed (`503`, `fetch failed`, …). */
  failures: string[];
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Publishes `request` until Herald answers `200`; any 4xx fails at once. */
export async function publishUntilStored(
  baseUrl: string,
  request: Record<string, unknown>,
  deadline = PUBLISH_DEADLINE_MS,
): Promise<PublishOutcome> {
  const giveUp = performance.now() + deadline;
  const idempotencyKey = randomUUID();
  const failures: string[] = [];
  let backoff = BACKOFF_MS.first;
  for (;;) {
    let response: Published | undefined;
    try {
      response = await publish(baseUrl, request, undefined, idempotencyKey);
    } catch (err) {
      failures.push(err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err));
    }
    if (response?.status === 200) {
      const body = response.body as { id: string; seq: number };
      return { id: body.id, seq: body.seq, requests: failures.length + 1, failures };
    }
    if (response !== undefined) {
      if (response.status < 500) {
        throw new Error(`POST /api/publish ${JSON.stringify(request)}: ${response.status} ${JSON.stringify(response.body)}`);
      }
      failures.push(`${response.status} ${JSON.stringify(response.body)}`);
    }
    if (performance.now() > giveUp) {
      throw new Error(`POST /api/publish not stored within ${deadline} ms; failures: ${failures.join('; ')}`);
    }
    await delay(backoff);
    backoff = Math.min(backoff * 2, BACKOFF_MS.max);
  }
}
