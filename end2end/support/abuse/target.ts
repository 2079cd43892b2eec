// What the garbage generators need to know about the Herald under attack.

export interface Target {
  port: number;
  /** The room the well-behaved clients use: garbage aims at it too, and must never land in it. */
  room: string;
  /** The real publish API key (garbage with it must still be refused for its content). */
  apiKey: string;
  /** A real visitor id (`herald_vid`) and the CSRF token rendered for it. */
  visitor: { vid: string; csrf: string };
  /** Tokens Herald must refuse: expired, forged, `alg: none`. */
  badTokens: readonly string[];
}
