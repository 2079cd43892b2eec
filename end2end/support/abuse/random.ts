// Seeded randomness for the abuse flood: a run prints its seed, and
// HERALD_ABUSE_SEED replays the same inputs (their timing aside).

/** Characters that break parsers: controls, quotes, escapes, markup, odd Unicode. */
const TRICKY = [
  ...'\u0000\u0001\u0007\b\t\n\r\u000b\u001b\u007f\u0085\u00a0\u200b\u202e\u2028\u2029\ufeff\ufffd\udfff\ud800',
  ...'😀é漢"\'\\/%&=;,:<>{}[] +#?*',
];

export class Random {
  private state: number;

  constructor(readonly seed: number) {
    this.state = seed >>> 0 || 1;
  }

  /** A seed from HERALD_ABUSE_SEED, else a fresh one. */
  static fromEnv(): Random {
    const fixed = Number(process.env.HERALD_ABUSE_SEED);
    return new Random(Number.isInteger(fixed) && fixed > 0 ? fixed : Math.floor(Math.random() * 2 ** 31) + 1);
  }

  /** Uniform in [0, 1) (mulberry32). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }

  /** Picks by weight: `[[weight, value], …]`. */
  weighted<T>(items: readonly (readonly [number, T])[]): T {
    const total = items.reduce((sum, [w]) => sum + w, 0);
    let at = this.next() * total;
    for (const [w, value] of items) {
      at -= w;
      if (at < 0) return value;
    }
    return items[items.length - 1][1];
  }

  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [items[i], items[j]] = [items[j], items[i]];
    }
    return items;
  }

  bytes(length: number): Buffer {
    const out = Buffer.alloc(length);
    for (let i = 0; i < length; i++) out[i] = Math.floor(this.next() * 256);
    return out;
  }

  /** Up to `max` characters of junk: tricky characters, ASCII and random code points. */
  junk(max: number): string {
    const length = this.int(0, max);
    let out = '';
    for (let i = 0; i < length; i++) {
      const roll = this.next();
      if (roll < 0.4) out += this.pick(TRICKY);
      else if (roll < 0.8) out += String.fromCharCode(this.int(0x20, 0x7e));
      else out += String.fromCodePoint(this.int(0x80, 0x10ffff));
    }
    return out;
  }
}

/**
 * Percent-encodes every byte of `text` but unreserved ASCII (lone surrogates
 * become U+FFFD first: `encodeURIComponent` would throw on them).
 */
export function percentEncode(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text)) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9\-_.~]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
