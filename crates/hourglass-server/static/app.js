// Hourglass web app: the only script. It makes pages live (server-sent events, /v1/events),
// counts down time left, and copies a revealed credential. Everything works without it,
// with a reload.
'use strict';

(function () {
  const main = document.getElementById('main');
  const announce = document.getElementById('announce');

  function human(ms) {
    if (ms <= 0) return 'ended';
    const s = Math.floor(ms / 1000);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const r = s % 60;
    if (h > 0) return `${h}h ${String(m).padStart(2, '0')}m left`;
    return `${m}m ${String(r).padStart(2, '0')}s left`;
  }

  function tick() {
    document.querySelectorAll('time[data-until]').forEach((t) => {
      const until = Date.parse(t.dataset.until);
      if (!Number.isNaN(until)) t.textContent = human(until - Date.now());
    });
  }

  document.addEventListener('click', (ev) => {
    const b = ev.target.closest('button[data-copy]');
    if (!b) return;
    const src = document.getElementById(b.dataset.copy);
    if (src && navigator.clipboard) {
      navigator.clipboard.writeText(src.textContent).then(() => {
        b.textContent = 'Copied';
      });
    }
  });

  // Live pages: on a change the caller may see, fetch this page again and swap its content,
  // keeping what has focus when it is still there.
  let pending = null;
  async function refresh() {
    pending = null;
    const resp = await fetch(location.href, { credentials: 'same-origin', headers: { Accept: 'text/html' } });
    if (!resp.ok) return;
    const doc = new DOMParser().parseFromString(await resp.text(), 'text/html');
    const fresh = doc.getElementById('main');
    if (!fresh) return;
    const focused = document.activeElement && document.activeElement.id;
    main.innerHTML = fresh.innerHTML;
    if (focused) {
      const again = document.getElementById(focused);
      if (again) again.focus();
    }
    tick();
    if (announce) announce.textContent = 'Updated';
  }

  if (main && main.dataset.live && window.EventSource) {
    const events = new EventSource('/v1/events');
    events.addEventListener('change', () => {
      if (!pending) pending = setTimeout(refresh, 150);
    });
  }

  tick();
  setInterval(tick, 1000);
})();
