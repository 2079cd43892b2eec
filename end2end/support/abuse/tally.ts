// What the abuse flood sent, what came back, and which outcomes were not
// acceptable (a 5xx, a hang, garbage accepted): counted as they happen and
// summed up in one line at the end.

/** How many kinds of unacceptable outcome are shown with an example; the rest are only counted. */
const EXAMPLES_KEPT = 25;

export class Tally {
  /** Inputs sent (frames, requests), by kind. */
  readonly sent = new Map<string, number>();
  /** Responses, by outcome (`http 403`, `ack malformed`, `ws closed 1005`, …). */
  readonly outcomes = new Map<string, number>();
  /** Unacceptable outcomes, by outcome and kind of input: how many, and one example input. */
  readonly unacceptable = new Map<string, { count: number; example: string }>();
  unacceptableCount = 0;

  send(kind: string, count = 1): void {
    this.sent.set(kind, (this.sent.get(kind) ?? 0) + count);
  }

  outcome(name: string): void {
    this.outcomes.set(name, (this.outcomes.get(name) ?? 0) + 1);
  }

  /** Records an outcome that must not happen: what happened, to what kind of input, and the input. */
  fail(outcome: string, label: string, input = ''): void {
    this.outcome(`UNACCEPTABLE ${outcome}`);
    this.unacceptableCount += 1;
    const key = `${outcome} (${label})`;
    const seen = this.unacceptable.get(key);
    if (seen) seen.count += 1;
    else if (this.unacceptable.size < EXAMPLES_KEPT) this.unacceptable.set(key, { count: 1, example: input });
  }

  /** One line per kind of unacceptable outcome: `3× http 500 (form junk): "POST …"`. */
  unacceptableLines(): string[] {
    return [...this.unacceptable.entries()].map(([key, { count, example }]) => `${count}× ${key}: ${example}`);
  }

  get total(): number {
    let sum = 0;
    for (const n of this.sent.values()) sum += n;
    return sum;
  }

  /** `a 3, b 2` with the largest counts first. */
  static line(counts: Map<string, number>): string {
    return [...counts.entries()]
      .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
      .map(([key, n]) => `${key} ${n}`)
      .join(', ');
  }
}

/** Shortens an input for a report: its start, printable, and its length. */
export function describe(input: string | Buffer): string {
  const text = typeof input === 'string' ? input : input.toString('latin1');
  const shown = JSON.stringify(text.slice(0, 120));
  return text.length > 120 ? `${shown}… (${text.length} chars)` : shown;
}
