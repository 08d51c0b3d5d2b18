/**
 * The DTLS certificate of a call, kept in IndexedDB across a page reload.
 * A browser makes a certificate per RTCPeerConnection unless given one;
 * an RTCCertificate from RTCPeerConnection.generateCertificate can be
 * stored in IndexedDB (it is serializable, its private key stays
 * unreadable) and given again to the peer connection built after the
 * reload, which keeps the call's a=fingerprint the same (RFC 8122).
 */

const DB = 'jsonrtc';
const STORE = 'certificates';
/** Certificates of calls that ended without a word (a closed tab) go after a day. */
const MAX_AGE = 24 * 3600 * 1000;

function request(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

function openDb() {
  const r = globalThis.indexedDB.open(DB, 1);
  r.onupgradeneeded = () => r.result.createObjectStore(STORE);
  return request(r);
}

async function withStore(mode, fn) {
  const db = await openDb();
  try {
    const tx = db.transaction(STORE, mode);
    const done = new Promise((resolve, reject) => {
      tx.oncomplete = resolve;
      tx.onerror = tx.onabort = () => reject(tx.error);
    });
    const out = await fn(tx.objectStore(STORE));
    await done;
    return out;
  } finally {
    db.close();
  }
}

async function save(key, cert) {
  await withStore('readwrite', async (store) => {
    const now = Date.now();
    const keys = await request(store.getAllKeys());
    const values = await request(store.getAll());
    values.forEach((v, i) => {
      if (!(v?.at > now - MAX_AGE)) store.delete(keys[i]);
    });
    store.put({ cert, at: now }, key);
  });
}

/**
 * The certificate for the call stored under key: the stored one for a
 * call restored after a reload, else a new one, stored in the background.
 * Null where the browser cannot (no IndexedDB, no generateCertificate) or
 * key is null (a session not kept across reloads): the peer connection
 * then makes its own.
 * @param {typeof RTCPeerConnection} RTC
 * @param {string|null} key
 * @param {boolean} restored
 * @param {{debug: Function}} log
 * @returns {Promise<RTCCertificate|null>}
 */
export async function callCertificate(RTC, key, restored, log) {
  if (!key || !globalThis.indexedDB || typeof RTC?.generateCertificate !== 'function') return null;
  try {
    if (restored) {
      const kept = await withStore('readonly', (store) => request(store.get(key)));
      if (kept?.cert && kept.cert.expires > Date.now()) return kept.cert;
    }
    const cert = await RTC.generateCertificate({ name: 'ECDSA', namedCurve: 'P-256' });
    save(key, cert).catch((err) => log.debug('jsonrtc: cannot store the certificate', err));
    return cert;
  } catch (err) {
    log.debug('jsonrtc: no kept certificate', err);
    return null;
  }
}

/**
 * Forgets the certificate of an ended call.
 * @param {string|null} key
 */
export function forgetCertificate(key) {
  if (!key || !globalThis.indexedDB) return;
  withStore('readwrite', async (store) => {
    store.delete(key);
  }).catch(() => {});
}
