// What the fault tests sent and were told was stored, and the checks that
// nothing acknowledged was lost or stored twice: in MongoDB, and at every
// client.

import { expect, type TestInfo } from '@playwright/test';
import type { Db } from 'mongodb';
import { storedMessages } from '../store';
import type { ChatMessage } from '../protocol';
import type { Chatter } from './chatter';

/** Every message acknowledged `{ok}`, by `client_id`; counts acks as they come. */
export class Ledger {
  readonly acked = new Map<string, ChatMessage>();
  /** Emitted `send`s, resends included. */
  attempts = 0;
  private readonly sentIds = new Set<string>();
  private readonly waiters = new Set<() => void>();

  /** Unique messages sent (each with its own `client_id`). */
  get sent(): number {
    return this.sentIds.size;
  }

  /** Sends `body` from `chatter` under a new `client_id` until stored; records the ack. */
  async send(chatter: Chatter, clientId: string, body: string): Promise<ChatMessage> {
    this.sentIds.add(clientId);
    const { stored, attempts } = await chatter.send(clientId, body);
    this.attempts += attempts;
    this.ack(clientId, stored);
    return stored;
  }

  /** Counts one attempt the test made itself (`Chatter.sendOnce`). */
  tried(clientId: string): void {
    this.sentIds.add(clientId);
    this.attempts += 1;
  }

  /** Resends a message the test tried before (`retry: true`) until stored; records the ack. */
  async resend(chatter: Chatter, clientId: string, body: string): Promise<ChatMessage> {
    this.sentIds.add(clientId);
    const { stored, attempts } = await chatter.send(clientId, body, { resend: true });
    this.attempts += attempts;
    this.ack(clientId, stored);
    return stored;
  }

  ack(clientId: string, stored: ChatMessage): void {
    const earlier = this.acked.get(clientId);
    if (earlier && earlier.seq !== stored.seq) {
      throw new Error(`${clientId} was acknowledged as seq ${earlier.seq}, then as seq ${stored.seq}`);
    }
    if (stored.client_id !== clientId) {
      throw new Error(`the ack for ${clientId} is another message: ${JSON.stringify(stored)}`);
    }
    this.acked.set(clientId, stored);
    for (const wake of [...this.waiters]) wake();
  }

  get count(): number {
    return this.acked.size;
  }

  /** Resolves once `n` messages are acknowledged. */
  reached(n: number, timeout = 45_000): Promise<void> {
    if (this.count >= n) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const check = () => {
        if (this.count < n) return;
        done();
        resolve();
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`only ${this.count} of ${n} messages acknowledged within ${timeout} ms`));
      }, timeout);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
    });
  }
}

export interface StoredCheck {
  /** Documents in the room. */
  stored: number;
  /** Acknowledged, but not in MongoDB. */
  missing: string[];
  /** A `client_id` stored more than once. */
  duplicated: string[];
  /** Stored under another `seq`, name or body than acknowledged. */
  mismatched: string[];
  /** Stored, but never acknowledged to anyone (allowed only where a test says so). */
  unacked: string[];
}

/** Compares the room's documents in MongoDB with what was acknowledged. */
export async function checkStored(db: Db, room: string, ledger: Ledger): Promise<StoredCheck> {
  const documents = await storedMessages(db, room);
  const byClientId = new Map<string, number>();
  const duplicated: string[] = [];
  const mismatched: string[] = [];
  const unacked: string[] = [];
  for (const doc of documents) {
    const seen = byClientId.get(doc.client_id) ?? 0;
    byClientId.set(doc.client_id, seen + 1);
    if (seen === 1) duplicated.push(doc.client_id);
    const acked = ledger.acked.get(doc.client_id);
    if (!acked) {
      unacked.push(`${doc.client_id}@${doc.seq}`);
    } else if (Number(doc.seq) !== acked.seq || doc.body !== acked.body || doc.name !== acked.name) {
      mismatched.push(`${doc.client_id}: stored seq ${doc.seq}, acked seq ${acked.seq}`);
    }
  }
  const missing = [...ledger.acked.keys()].filter((id) => !byClientId.has(id));
  return { stored: documents.length, missing, duplicated, mismatched, unacked };
}

export interface DeliveredCheck {
  /** (client, acknowledged message) pairs that arrived. */
  delivered: number;
  expected: number;
  /** `client: client_id@seq` pairs that never arrived (after the wait). */
  missing: string[];
  /** Inconsistencies any client saw (one seq, two messages; one client_id, two seqs). */
  conflicts: string[];
  /** Arrivals by way: live `message` events and join catch-ups (of acknowledged messages). */
  live: number;
  catchUp: number;
  /** Messages received again (join overlap and the like): deduplicated by seq. */
  repeats: number;
}

/**
 * Waits (bounded) until every chatter holds every acknowledged message, then
 * reports what each received. Messages of a room reach a connection in
 * order, so the wait ends as soon as the last one is in.
 */
export async function checkDelivered(chatters: Chatter[], ledger: Ledger, timeout = 15_000): Promise<DeliveredCheck> {
  const expected = [...ledger.acked.values()];
  const holdsAll = (c: Chatter) => expected.every((m) => c.messages.get(m.seq)?.client_id === m.client_id);
  await Promise.allSettled(chatters.map((c) => c.until(() => holdsAll(c), 'every acknowledged message', timeout)));
  const result: DeliveredCheck = {
    delivered: 0,
    expected: expected.length * chatters.length,
    missing: [],
    conflicts: [],
    live: 0,
    catchUp: 0,
    repeats: 0,
  };
  for (const chatter of chatters) {
    for (const m of expected) {
      const held = chatter.messages.get(m.seq);
      if (held?.client_id === m.client_id) {
        result.delivered += 1;
        if (chatter.arrivedBy.get(m.seq) === 'live') result.live += 1;
        else result.catchUp += 1;
      } else {
        result.missing.push(`${chatter.label}: ${m.client_id}@${m.seq}`);
      }
    }
    result.conflicts.push(...chatter.conflicts.map((c) => `${chatter.label}: ${c}`));
    result.repeats += chatter.repeats;
  }
  return result;
}

/**
 * The check every fault test ends with: each acknowledged message is stored
 * exactly once, as acknowledged, nothing unacknowledged is stored, and every
 * chatter got each message once. Returns the checks and the counts every
 * summary line starts with.
 */
export async function expectNothingLost(db: Db, room: string, ledger: Ledger, chatters: Chatter[]) {
  const delivery = await checkDelivered(chatters, ledger);
  expect(delivery.conflicts, `inconsistent deliveries: ${sample(delivery.conflicts)}`).toEqual([]);
  expect(delivery.missing, `never delivered: ${sample(delivery.missing)}`).toEqual([]);
  const store = await expectStoredOnce(db, room, ledger);
  expect(store.unacked, `stored but never acknowledged: ${sample(store.unacked)}`).toEqual([]);
  expect(store.stored).toBe(ledger.count);
  const counts = {
    sent: ledger.sent,
    acked: ledger.count,
    stored: store.stored,
    delivered: `${delivery.delivered}/${delivery.expected}`,
    lost: store.missing.length + delivery.missing.length,
    duplicates: store.duplicated.length,
    attempts: ledger.attempts,
  };
  return { delivery, store, counts };
}

/** Every acknowledged message is stored exactly once, as acknowledged. */
export async function expectStoredOnce(db: Db, room: string, ledger: Ledger): Promise<StoredCheck> {
  const store = await checkStored(db, room, ledger);
  expect(store.missing, `acknowledged but not stored: ${sample(store.missing)}`).toEqual([]);
  expect(store.duplicated, `stored twice: ${sample(store.duplicated)}`).toEqual([]);
  expect(store.mismatched, `stored otherwise than acknowledged: ${sample(store.mismatched)}`).toEqual([]);
  return store;
}

/** Prints one summary line and attaches it to the test as an annotation. */
export function summarize(testInfo: TestInfo, fields: Record<string, string | number | boolean>): string {
  const line = Object.entries(fields)
    .map(([key, value]) => `${key}=${value}`)
    .join(' ');
  console.log(`[fault] ${testInfo.title}: ${line}`);
  testInfo.annotations.push({ type: 'fault-summary', description: line });
  return line;
}

/** The first few entries of a list, for assertion messages. */
export function sample(items: string[], n = 10): string {
  return items.length <= n ? items.join(', ') : `${items.slice(0, n).join(', ')} … (${items.length} in all)`;
}
