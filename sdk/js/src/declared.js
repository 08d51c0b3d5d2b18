import { extensionHeaders, extensionsOf } from './headers.js';
import { JsonRtcError, ErrorCode } from './errors.js';

// Actions a gateway's configuration declares (docs/protocol.md §2.8):
// Session.request and Call.request send any of them; a request of an
// action this SDK does not know is handed to the application as a
// `request` event (IncomingRequest), or refused with 405 when nobody
// listens.

/** The actions of each package the SDK knows (docs/protocol.md §2.6). */
const KNOWN = {
  register: ['connect', 'authenticate', 'standby'],
  call: ['start', 'complete', 'prack', 'shutdown', 'trickle', 'dtmf', 'transfer'],
  presence: ['start', 'notify', 'publish', 'shutdown'],
  message_notification: ['start', 'notify', 'shutdown'],
  messaging: ['send'],
};

/**
 * Whether the SDK knows action in pkg.
 * @param {string} pkg
 * @param {string} action
 */
export function knownAction(pkg, action) {
  return KNOWN[pkg]?.includes(action) ?? false;
}

/**
 * Checks the arguments of a declared request and builds its frame fields.
 * @returns {{type: string, pkg: string, action: string, header: object, payload: object}}
 */
export function declaredRequest(pkg, action, headers, payload) {
  if (typeof action !== 'string' || !/^[A-Za-z][A-Za-z0-9_-]{0,31}$/.test(action)) {
    throw new JsonRtcError(ErrorCode.BAD_REQUEST, `action ${JSON.stringify(action)}: not an action name`);
  }
  if (knownAction(pkg, action)) {
    throw new JsonRtcError(ErrorCode.BAD_REQUEST, `${pkg}/${action} has its own method`);
  }
  if (payload != null && (typeof payload !== 'object' || Array.isArray(payload))) {
    throw new JsonRtcError(ErrorCode.BAD_REQUEST, 'payload: not an object');
  }
  return { type: 'request', pkg, action, header: extensionHeaders(headers), payload: payload ?? {} };
}

/**
 * What a declared request resolves with.
 * @param {object} frame the response
 */
export function declaredResponse(frame) {
  const h = frame.header || {};
  return { code: h.response_code ?? 200, reason: h.reason ?? '', headers: extensionsOf(h), payload: frame.payload ?? {}, frame };
}

/**
 * A request of an action the SDK does not know, from the gateway (the
 * `request` event of Call or Session). Answer it once: respond() or
 * reject().
 */
export class IncomingRequest {
  /**
   * @param {import('./session.js').Session} session
   * @param {object} frame
   * @param {import('./call.js').Call|null} call
   */
  constructor(session, frame, call) {
    const h = frame.header || {};
    this._session = session;
    this._answered = false;
    this.package = frame.control.package_type || 'call';
    this.action = h.action;
    this.call = call;
    this.from = h.initiator;
    this.headers = extensionsOf(h);
    this.payload = frame.payload ?? {};
    this.frame = frame;
  }

  /**
   * Answers with a response (code 2xx, default 200).
   * @param {{code?: number, reason?: string, headers?: object, payload?: object}} [opts]
   */
  respond(opts = {}) {
    this._answer('response', { response_code: opts.code ?? 200, reason: opts.reason, ...extensionHeaders(opts.headers) }, opts.payload);
  }

  /**
   * Answers with an error frame (default 603).
   * @param {number} [code]
   * @param {string} [reason]
   * @param {{headers?: object}} [opts] extension headers of the error frame
   */
  reject(code = 603, reason, opts = {}) {
    this._answer('error', { error_code: code, reason, ...extensionHeaders(opts.headers) });
  }

  _answer(type, header, payload) {
    if (this._answered) throw new JsonRtcError(ErrorCode.METHOD_NOT_ALLOWED, 'already answered');
    this._answered = true;
    const c = this.frame.control;
    const h = this.frame.header || {};
    this._session._send({
      type,
      pkg: this.package,
      action: this.action,
      subsession: c.subsession_id,
      correlation: c.correlation_id,
      state: type === 'response' ? 'final' : undefined,
      header: { initiator: h.initiator, target: h.target, ...header },
      payload,
    });
  }
}
