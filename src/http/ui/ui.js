// The dashboard's only script (embedded in the binary). The pages work without it; it adds
// (1) live refresh: regions marked data-live are replaced by their fresh server-rendered copies
// (the server escapes everything; nothing here builds markup from data), and (2) small charts of
// a few /metrics series over the last minutes, kept in memory in this tab.
(function () {
  'use strict';

  function sleep(ms) { return new Promise(function (done) { setTimeout(done, ms); }); }

  // Replaces each [data-live] region by the same region of a fresh copy of this page.
  async function refresh() {
    const response = await fetch(location.href, { cache: 'no-store', credentials: 'same-origin' });
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), 'text/html');
    document.querySelectorAll('[data-live]').forEach(function (region) {
      const next = fresh.getElementById(region.id);
      if (next) region.replaceWith(document.adoptNode(next));
    });
  }

  // Refreshes forever: after each wait on the job's event log (data-wait, the registry's own
  // long-poll) or after `every` ms; never more often than once a second.
  async function live(every) {
    for (;;) {
      const started = Date.now();
      try {
        const waiter = document.querySelector('[data-wait]');
        if (waiter) await fetch(waiter.dataset.wait, { cache: 'no-store' });
        else await sleep(every);
        await refresh();
      } catch (e) {
        await sleep(every);
      }
      await sleep(Math.max(0, 1000 - (Date.now() - started)));
    }
  }

  // --- /metrics ---------------------------------------------------------------------------

  // Prometheus text format -> { name: total over all label sets }. Comments, blank lines and
  // unparsable samples are skipped; labels are summed away (the charts show totals).
  function parseMetrics(text) {
    const totals = {};
    text.split('\n').forEach(function (line) {
      line = line.trim();
      if (line === '' || line[0] === '#') return;
      const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)/.exec(line);
      if (!match) return;
      const value = Number(match[3]);
      if (!Number.isFinite(value)) return;
      totals[match[1]] = (totals[match[1]] || 0) + value;
    });
    return totals;
  }

  // What is charted: counters as a rate per second, gauges as they are.
  const SERIES = [
    { name: 'mesh_registry_job_submits_total', title: 'Submits / s', rate: true },
    { name: 'mesh_registry_job_claims_total', title: 'Claims / s', rate: true },
    { name: 'mesh_registry_job_deltas_total', title: 'Deltas / s', rate: true },
    { name: 'mesh_registry_http_requests_total', title: 'HTTP requests / s', rate: true },
    { name: 'mesh_registry_live_claims', title: 'Live claims', rate: false },
    { name: 'mesh_registry_long_polls_parked', title: 'Parked long-polls', rate: false },
  ];
  const KEEP_MS = 10 * 60 * 1000;

  // Samples [{at, totals}] -> points [{at, value}] of one series (rates between samples).
  function points(samples, series) {
    const out = [];
    for (let i = 0; i < samples.length; i++) {
      const now = samples[i], value = now.totals[series.name];
      if (value === undefined) continue;
      if (!series.rate) { out.push({ at: now.at, value: value }); continue; }
      const before = samples[i - 1];
      if (!before || before.totals[series.name] === undefined) continue;
      const seconds = (now.at - before.at) / 1000;
      const delta = value - before.totals[series.name];
      // A counter that went down: the replica restarted; skip that interval.
      if (seconds > 0 && delta >= 0) out.push({ at: now.at, value: delta / seconds });
    }
    return out;
  }

  const SVG = 'http://www.w3.org/2000/svg';
  function svg(tag, attributes) {
    const element = document.createElementNS(SVG, tag);
    Object.keys(attributes).forEach(function (key) { element.setAttribute(key, attributes[key]); });
    return element;
  }

  // One small chart: title, latest value, and a line over the kept window.
  function chart(series, data, now) {
    const width = 240, height = 60;
    const box = document.createElement('div');
    box.className = 'chart';
    box.dataset.series = series.name;
    const label = document.createElement('div');
    label.className = 'label';
    const latest = data.length ? data[data.length - 1].value : null;
    label.textContent = series.title + ': ' + (latest === null ? '…' : latest.toFixed(series.rate ? 2 : 0));
    box.appendChild(label);
    const plot = svg('svg', { width: width, height: height, viewBox: '0 0 ' + width + ' ' + height, role: 'img' });
    plot.appendChild(svg('line', { x1: 0, y1: height - 1, x2: width, y2: height - 1, class: 'axis' }));
    const top = Math.max(1, Math.max.apply(null, data.map(function (p) { return p.value; })));
    // The x axis spans what is kept so far (up to KEEP_MS), so a fresh tab fills its charts.
    const span = Math.max(1, data.length ? now - data[0].at : 1);
    const line = data.map(function (p) {
      const x = width - ((now - p.at) / span) * width;
      const y = height - 2 - (p.value / top) * (height - 6);
      return x.toFixed(1) + ',' + y.toFixed(1);
    }).join(' ');
    plot.appendChild(svg('polyline', { points: line }));
    box.appendChild(plot);
    return box;
  }

  // Draws the charts of the kept samples, or the note that says why there are none.
  function draw(container, samples, note) {
    const now = samples.length ? samples[samples.length - 1].at : Date.now();
    const drawn = note === null
      ? SERIES.map(function (series) { return chart(series, points(samples, series), now); })
      : [Object.assign(document.createElement('p'), { className: 'muted', textContent: note })];
    container.replaceChildren.apply(container, drawn);
  }

  async function charts(container) {
    const samples = [];
    for (;;) {
      let note = null;
      try {
        const response = await fetch(container.dataset.metrics, { cache: 'no-store' });
        if (response.ok) samples.push({ at: Date.now(), totals: parseMetrics(await response.text()) });
        else note = 'metrics not available (' + response.status + ')';
      } catch (e) {
        note = 'metrics not available';
      }
      while (samples.length && Date.now() - samples[0].at > KEEP_MS) samples.shift();
      draw(container, samples, note);
      await sleep(5000);
    }
  }

  // For the browser tests: the pure parts, callable from the page.
  window.meshUi = { parseMetrics: parseMetrics, points: points, draw: draw };

  document.addEventListener('DOMContentLoaded', function () {
    const main = document.querySelector('main[data-live-every]');
    if (main) live(Number(main.dataset.liveEvery));
    const container = document.getElementById('charts');
    if (container) charts(container);
  });
})();
