// The demo page's service worker: it shows the push that wakes a page in
// standby (docs/protocol.md §4.9: {"kind":"call"|"message","from":…}),
// tells the open pages to resume, and opens the page when the
// notification is clicked and none is open.
self.addEventListener('push', (ev) => {
  let data = {};
  try {
    data = ev.data?.json() ?? {};
  } catch {
    /* a push without JSON: a plain wake-up */
  }
  const title = data.kind === 'call' ? `Incoming call from ${data.from}` : data.kind === 'message' ? `Message from ${data.from}` : 'jsonrtc';
  ev.waitUntil(
    (async () => {
      // The pages resume even when the notification cannot be shown.
      let shown = null;
      try {
        await self.registration.showNotification(title, { tag: 'jsonrtc-wake', data, requireInteraction: data.kind === 'call' });
      } catch (err) {
        shown = String(err);
      }
      for (const c of await self.clients.matchAll({ type: 'window', includeUncontrolled: true })) c.postMessage({ type: 'wake', ...data, notificationError: shown });
    })(),
  );
});

self.addEventListener('notificationclick', (ev) => {
  ev.notification.close();
  ev.waitUntil(
    (async () => {
      const pages = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
      if (pages.length > 0) {
        pages[0].postMessage({ type: 'wake' });
        return pages[0].focus();
      }
      return self.clients.openWindow('/');
    })(),
  );
});
