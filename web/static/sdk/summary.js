/**
 * Message summaries (voicemail, RFC 3842) as the `message_notification`
 * package carries them: `{"messages_waiting":"yes","message_account":
 * "sip:bob@example.com","voice-message":"2/8 (0/2)"}`.
 */

/**
 * @typedef {{new: number, old: number, urgentNew: number, urgentOld: number}} MessageCounts
 * @typedef {{waiting: boolean, account: string|undefined,
 *            classes: Record<string, MessageCounts>, newMessages: number, oldMessages: number}} MessageSummary
 */

const COUNTS = /^\s*(\d+)\s*\/\s*(\d+)\s*(?:\(\s*(\d+)\s*\/\s*(\d+)\s*\))?\s*$/;

/**
 * Parses one `new/old (urgent new/urgent old)` counter. The urgent part
 * is optional (RFC 3842 makes it so).
 * @param {string} text
 * @returns {MessageCounts|null}
 */
export function parseCounts(text) {
  if (typeof text !== 'string') return null;
  const m = COUNTS.exec(text);
  if (!m) return null;
  return { new: +m[1], old: +m[2], urgentNew: m[3] === undefined ? 0 : +m[3], urgentOld: m[4] === undefined ? 0 : +m[4] };
}

/**
 * Parses a message_notification payload.
 * @param {Record<string, unknown>} payload
 * @returns {MessageSummary}
 */
export function parseMessageSummary(payload) {
  const p = payload || {};
  /** @type {Record<string, MessageCounts>} */
  const classes = {};
  let newMessages = 0;
  let oldMessages = 0;
  for (const [k, v] of Object.entries(p)) {
    if (k === 'messages_waiting' || k === 'message_account') continue;
    const c = parseCounts(/** @type {string} */ (v));
    if (!c) continue;
    classes[k] = c;
    newMessages += c.new;
    oldMessages += c.old;
  }
  const mw = typeof p.messages_waiting === 'string' ? p.messages_waiting.trim().toLowerCase() : '';
  return {
    waiting: mw === 'yes',
    account: typeof p.message_account === 'string' ? p.message_account : undefined,
    classes,
    newMessages,
    oldMessages,
  };
}
