// Extension headers (docs/protocol.md §2.4): application headers that ride
// on a frame's `header` next to the protocol's own. The gateway relays them
// to the peer web client and, for the names in calls.sip_headers, to SIP.
import { ErrorCode, JsonRtcError } from './errors.js';

/** The protocol's own header names (§2.2, §2.3): never extension headers. */
const RESERVED = new Set([
  'action', 'initiator', 'target', 'response_code', 'error_code', 'reason',
  'cslr', 'cslw', 'csuw', 'sslr', 'expiry', 'refer_to', 'replaces', 'authenticate', 'authorization',
]);
const NAME = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
export const MAX_EXTENSION_HEADERS = 32;
const MAX_VALUE_BYTES = 1024;

/**
 * Checks extension headers against §2.4 before they go out, so that a bad
 * one fails here with the header's name rather than as the gateway's 400
 * on a frame already sent. Returns a copy ({} for none).
 * @param {Record<string, string|number|boolean>|undefined} headers
 * @returns {Record<string, string|number|boolean>}
 */
export function extensionHeaders(headers) {
  if (headers == null) return {};
  if (typeof headers !== 'object' || Array.isArray(headers)) throw new JsonRtcError(ErrorCode.BAD_REQUEST, 'headers: not an object');
  const out = {};
  const names = Object.keys(headers);
  if (names.length > MAX_EXTENSION_HEADERS) throw new JsonRtcError(ErrorCode.BAD_REQUEST, `headers: more than ${MAX_EXTENSION_HEADERS}`);
  for (const name of names) {
    const v = headers[name];
    if (!NAME.test(name) || RESERVED.has(name)) throw new JsonRtcError(ErrorCode.BAD_REQUEST, `header ${JSON.stringify(name)}: not an extension header name`);
    if (typeof v === 'string') {
      if (CONTROL.test(v) || new TextEncoder().encode(v).length > MAX_VALUE_BYTES) {
        throw new JsonRtcError(ErrorCode.BAD_REQUEST, `header ${name}: control characters or over ${MAX_VALUE_BYTES} bytes`);
      }
    } else if (!(typeof v === 'number' && Number.isFinite(v)) && typeof v !== 'boolean') {
      throw new JsonRtcError(ErrorCode.BAD_REQUEST, `header ${name}: not a string, number or boolean`);
    }
    out[name] = v;
  }
  return out;
}

/**
 * The extension headers of a received frame.
 * @param {Record<string, unknown>|undefined} header
 * @returns {Record<string, string|number|boolean>}
 */
export function extensionsOf(header) {
  const out = {};
  for (const [k, v] of Object.entries(header ?? {})) if (!RESERVED.has(k) && ['string', 'number', 'boolean'].includes(typeof v)) out[k] = v;
  return out;
}
