// The well-behaved client during a flood: sends chat messages at a modest
// pace, each awaited on its ack, and keeps what it sent and what was acked
// so that deliveries and storage can be checked against it.

import type { Client } from '../clients';
import type { ChatMessage } from '../protocol';
import { token } from '../token';

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export class GoodTraffic {
  /** Every message sent, in order: `client_id` and `body`. */
  readonly sent: { client_id: string; body: string }[] = [];
  /** Acks `{ok}`, in order. */
  readonly acked: ChatMessage[] = [];
  /** Sends that were refused or never acknowledged, with why. */
  readonly failures: string[] = [];

  constructor(
    private readonly sender: Client,
    readonly room: string,
  ) {}

  /** Sends one message and waits for its ack. */
  async sendOne(): Promise<void> {
    const message = { client_id: `good-${token(8)}`, body: `good message ${this.sent.length + 1} (${token(4)})` };
    this.sent.push(message);
    try {
      // The token's name wins over this one.
      const reply = await this.sender.request<ChatMessage>('send', {
        room: this.room,
        name: 'payload name',
        ...message,
      });
      if (!('ok' in reply)) {
        this.failures.push(`${message.client_id} refused: ${JSON.stringify(reply)}`);
      } else if (reply.ok.client_id !== message.client_id || reply.ok.body !== message.body) {
        this.failures.push(`${message.client_id} acked as another message: ${JSON.stringify(reply.ok)}`);
      } else {
        this.acked.push(reply.ok);
      }
    } catch (err) {
      this.failures.push(`${message.client_id}: ${String(err)}`);
    }
  }

  /** Sends one message every `intervalMs` at most (each awaited) until `stopped()`. */
  async run(stopped: () => boolean, intervalMs: number): Promise<void> {
    while (!stopped()) {
      const started = performance.now();
      await this.sendOne();
      await sleep(Math.max(0, intervalMs - (performance.now() - started)));
    }
  }

  /**
   * What `client` received of this room: waits for the last acked message
   * (a room's messages reach a connection in order, so the others are there
   * then too), and returns the room's `message` events.
   */
  async deliveredTo(client: Client, timeoutMs = 10_000): Promise<ChatMessage[]> {
    const last = this.acked.at(-1);
    if (last)
      await client
        .waitFor<ChatMessage>('message', (m) => m.client_id === last.client_id, timeoutMs)
        .catch(() => undefined);
    return client.payloads<ChatMessage>('message').filter((m) => m.room === this.room);
  }
}
