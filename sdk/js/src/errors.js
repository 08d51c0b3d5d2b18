/**
 * Error codes of docs/protocol.md §9.2 (SIP semantics), and the SDK's own
 * local codes (never on the wire, >= 1000).
 */
export const ErrorCode = Object.freeze({
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  PROXY_AUTH_REQUIRED: 407,
  TIMEOUT: 408,
  TOO_LARGE: 413,
  TEMPORARILY_UNAVAILABLE: 480,
  BUSY_HERE: 486,
  REQUEST_TERMINATED: 487,
  NOT_ACCEPTABLE_HERE: 488,
  GLARE: 491,
  SERVER_ERROR: 500,
  SERVICE_UNAVAILABLE: 503,
  BUSY_EVERYWHERE: 600,
  DECLINED: 603,
  // Local codes.
  WEBSOCKET_ERROR: 1001,
  SESSION_LOST: 1002,
  NOT_CONNECTED: 1003,
  PEERCONNECTION_ERROR: 1101,
  MEDIA_ERROR: 1201,
  RESTORE_FAILED: 1301,
});

const reasons = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  407: 'Proxy Authentication Required',
  408: 'Request Timeout',
  413: 'Request Entity Too Large',
  480: 'Temporarily Unavailable',
  486: 'Busy Here',
  487: 'Request Terminated',
  488: 'Not Acceptable Here',
  491: 'Request Pending',
  500: 'Server Internal Error',
  503: 'Service Unavailable',
  600: 'Busy Everywhere',
  603: 'Decline',
  1001: 'WebSocket error',
  1002: 'Session lost',
  1003: 'Not connected',
  1101: 'RTCPeerConnection error',
  1201: 'Media error',
  1301: 'Restore failed',
};

/**
 * The default reason text of a code.
 * @param {number} code
 * @returns {string}
 */
export function reasonOf(code) {
  return reasons[code] ?? 'Error ' + code;
}

/**
 * An error with a protocol (or local) code. `frame` is the error frame that
 * carried it, when there was one.
 */
export class JsonRtcError extends Error {
  /**
   * @param {number} code
   * @param {string} [reason]
   * @param {object} [frame]
   */
  constructor(code, reason, frame) {
    super(`${code} ${reason || reasonOf(code)}`);
    this.name = 'JsonRtcError';
    /** @type {number} */
    this.code = code;
    /** @type {string} */
    this.reason = reason || reasonOf(code);
    /** @type {object|undefined} */
    this.frame = frame;
  }

  /**
   * Builds the error an `error` frame reports.
   * @param {object} frame
   * @returns {JsonRtcError}
   */
  static fromFrame(frame) {
    const h = frame.header || {};
    return new JsonRtcError(Number(h.error_code) || 500, h.reason, frame);
  }
}
