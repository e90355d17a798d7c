// The coordinator's live page: polls the JSON endpoints (/v1/jobs,
// /v1/datasets, /v1/budgets, /v1/workers) with the user's bearer token and
// draws what the answers hold. It knows nothing the token's role may not
// see: the server decides, the page only shows the answers.
//
// Rules this file keeps:
//  - Everything shown goes through textContent or setAttribute on elements
//    it creates; nothing user-supplied (job names and ids, dataset names,
//    server messages) ever becomes markup.
//  - The token lives in sessionStorage only (gone with the tab), is sent
//    only to this origin, and an answer to an old token is dropped.
//  - A refused token clears every table: an error shows no data.
'use strict';

(function () {
  const kTokenKey = 'dpfleet.token';
  const kSvg = 'http://www.w3.org/2000/svg';
  const params = new URLSearchParams(window.location.search);
  // ?poll=MS (at least 250) for a faster page; 2 s by default.
  const pollMs = Math.max(250, Number(params.get('poll')) || 2000);
  const maxCurveJobs = 12;

  let generation = 0;  // bumped at every token change; older answers are dropped
  let timer = null;

  const $ = (id) => document.getElementById(id);

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function fmt(v, digits) {
    if (v === null || v === undefined) return '—';
    if (typeof v !== 'number') return String(v);
    if (!Number.isFinite(v)) return '∞';
    return v.toFixed(digits === undefined ? 4 : digits);
  }

  function epsilonText(job) {
    if (job.private === false) return '∞ (not private)';
    return fmt(job.epsilon);
  }

  function showError(text) {
    const e = $('error');
    e.textContent = text;
    e.hidden = false;
  }

  function hideError() {
    const e = $('error');
    e.textContent = '';
    e.hidden = true;
  }

  function clearAll() {
    for (const id of ['jobs', 'datasets', 'budgets', 'workers']) clear($(id).tBodies[0]);
    for (const id of ['jobs-note', 'datasets-note', 'budgets-note', 'workers-note']) $(id).textContent = '';
    clear($('curves'));
    document.body.removeAttribute('data-updated');
  }

  // GET `path` with the token: {ok, status, body, message}. Never throws.
  async function getJson(path, token) {
    try {
      const res = await fetch(path, {
        headers: {Authorization: 'Bearer ' + token, Accept: 'application/json'},
        cache: 'no-store',
        credentials: 'omit',
        redirect: 'error',
        referrerPolicy: 'no-referrer',
      });
      let body = null;
      try {
        body = await res.json();
      } catch (e) {
        body = null;
      }
      const message = body && typeof body.error === 'string' ? body.error : res.statusText;
      return {ok: res.ok, status: res.status, body: body, message: message};
    } catch (e) {
      return {ok: false, status: 0, body: null, message: 'the coordinator did not answer (' + e.message + ')'};
    }
  }

  function cell(row, text, cls) {
    row.appendChild(el('td', text, cls));
  }

  function renderJobs(jobs) {
    const body = $('jobs').tBodies[0];
    clear(body);
    for (const j of jobs) {
      const tr = document.createElement('tr');
      tr.setAttribute('data-job-id', String(j.job_id));
      tr.className = 'state-' + String(j.state).replace(/[^A-Z]/g, '');
      cell(tr, j.job_id, 'id');
      cell(tr, j.name, 'name');
      cell(tr, j.owner === undefined ? '' : j.owner, 'owner');
      cell(tr, j.state, 'state');
      cell(tr, String(j.epochs_done) + ' / ' + String(j.epochs), 'epochs num');
      cell(tr, epsilonText(j), 'epsilon num');
      cell(tr, fmt(j.delta, 8), 'delta num');
      body.appendChild(tr);
    }
    $('jobs-note').textContent = jobs.length === 0 ? 'No jobs this token may see.' : '';
  }

  // One line chart: `values` per epoch (nulls skipped), in a fixed box.
  function chart(kind, title, epochs, values) {
    const w = 260, h = 140, left = 40, right = 8, top = 16, bottom = 20;
    const svg = document.createElementNS(kSvg, 'svg');
    svg.setAttribute('class', 'chart ' + kind);
    svg.setAttribute('width', String(w));
    svg.setAttribute('height', String(h));
    svg.setAttribute('viewBox', '0 0 ' + w + ' ' + h);
    svg.setAttribute('role', 'img');
    const label = document.createElementNS(kSvg, 'text');
    label.setAttribute('x', String(left));
    label.setAttribute('y', '11');
    label.textContent = title;
    svg.appendChild(label);
    const pts = [];
    for (let i = 0; i < epochs.length; i++) {
      if (typeof values[i] === 'number' && Number.isFinite(values[i])) pts.push([epochs[i], values[i]]);
    }
    svg.setAttribute('data-points', String(pts.length));
    const axis = document.createElementNS(kSvg, 'polyline');
    axis.setAttribute('class', 'axis');
    axis.setAttribute('points', left + ',' + top + ' ' + left + ',' + (h - bottom) + ' ' + (w - right) + ',' + (h - bottom));
    svg.appendChild(axis);
    if (pts.length === 0) return svg;
    let x0 = pts[0][0], x1 = pts[pts.length - 1][0];
    let y0 = Math.min(...pts.map((p) => p[1])), y1 = Math.max(...pts.map((p) => p[1]));
    if (x1 === x0) x1 = x0 + 1;
    if (y1 === y0) {
      y0 -= 0.5;
      y1 += 0.5;
    }
    const sx = (x) => left + ((x - x0) / (x1 - x0)) * (w - left - right);
    const sy = (y) => h - bottom - ((y - y0) / (y1 - y0)) * (h - top - bottom);
    for (const [v, y] of [[y1, top], [y0, h - bottom]]) {
      const t = document.createElementNS(kSvg, 'text');
      t.setAttribute('x', '2');
      t.setAttribute('y', String(y + 4));
      t.textContent = fmt(v, 3);
      svg.appendChild(t);
    }
    const xl = document.createElementNS(kSvg, 'text');
    xl.setAttribute('x', String(w - right - 60));
    xl.setAttribute('y', String(h - 5));
    xl.textContent = 'epoch ' + x0 + '–' + pts[pts.length - 1][0];
    svg.appendChild(xl);
    const line = document.createElementNS(kSvg, 'polyline');
    line.setAttribute('class', 'line');
    line.setAttribute('points', pts.map((p) => sx(p[0]).toFixed(1) + ',' + sy(p[1]).toFixed(1)).join(' '));
    svg.appendChild(line);
    for (const p of pts) {
      const c = document.createElementNS(kSvg, 'circle');
      c.setAttribute('cx', sx(p[0]).toFixed(1));
      c.setAttribute('cy', sy(p[1]).toFixed(1));
      c.setAttribute('r', '2');
      c.setAttribute('data-epoch', String(p[0]));
      const tip = document.createElementNS(kSvg, 'title');
      tip.textContent = 'epoch ' + p[0] + ': ' + fmt(p[1]);
      c.appendChild(tip);
      svg.appendChild(c);
    }
    return svg;
  }

  function renderCurves(jobs) {
    const box = $('curves');
    clear(box);
    // Running jobs first, then the newest; viewers get no history.
    const withHistory = jobs.filter((j) => Array.isArray(j.history) && j.history.length > 0);
    withHistory.sort((a, b) => (b.state === 'RUNNING') - (a.state === 'RUNNING') || (b.created_ms || 0) - (a.created_ms || 0));
    for (const j of withHistory.slice(0, maxCurveJobs)) {
      const card = el('div', null, 'job-curves');
      card.setAttribute('data-job-id', String(j.job_id));
      card.appendChild(el('h3', String(j.job_id) + ' · ' + String(j.name) + ' · ' + String(j.state)));
      const charts = el('div', null, 'charts');
      const epochs = j.history.map((e) => e.epoch);
      charts.appendChild(chart('loss', 'eval loss', epochs, j.history.map((e) => e.eval_loss)));
      charts.appendChild(chart('accuracy', 'eval accuracy', epochs, j.history.map((e) => e.eval_accuracy)));
      charts.appendChild(chart('epsilon', 'ε', epochs, j.history.map((e) => e.epsilon)));
      card.appendChild(charts);
      box.appendChild(card);
    }
    if (withHistory.length === 0) {
      // Epochs done but no history: the role sees states and ε only.
      const hidden = jobs.some((j) => j.epochs_done > 0);
      box.appendChild(el('p', hidden ? 'Per-epoch curves are not shown to this role (a viewer sees states and ε).'
                                     : 'No epochs yet.', 'note'));
    }
  }

  function renderDatasets(datasets) {
    const body = $('datasets').tBodies[0];
    clear(body);
    for (const d of datasets) {
      const tr = document.createElement('tr');
      tr.setAttribute('data-dataset', String(d.name));
      cell(tr, d.name, 'name');
      cell(tr, d.state, 'state');
      cell(tr, d.task, 'task');
      cell(tr, String(d.rows_train) + ' / ' + String(d.rows_eval), 'rows num');
      body.appendChild(tr);
    }
  }

  function renderBudgets(files) {
    const body = $('budgets').tBodies[0];
    clear(body);
    for (const f of files) {
      const tr = document.createElement('tr');
      tr.setAttribute('data-file', String(f.file));
      const notPrivate = f.private === false;
      cell(tr, f.file, 'file');
      cell(tr, (f.names || []).join(', '), 'names');
      cell(tr, notPrivate ? '∞ (not private)' : fmt(f.epsilon_spent), 'spent num');
      cell(tr, notPrivate ? '∞ (not private)' : fmt(f.epsilon_committed), 'committed num');
      cell(tr, f.epsilon_budget === null ? 'none' : fmt(f.epsilon_budget), 'budget num');
      cell(tr, f.epsilon_remaining === null ? '—' : fmt(f.epsilon_remaining), 'remaining num');
      cell(tr, fmt(f.delta, 8), 'delta num');
      body.appendChild(tr);
    }
    $('budgets-note').textContent = files.length === 0 ? 'No input files with a ledger yet.' : '';
  }

  function renderWorkers(workers) {
    const body = $('workers').tBodies[0];
    clear(body);
    for (const w of workers) {
      const tr = document.createElement('tr');
      tr.setAttribute('data-worker-id', String(w.worker_id));
      cell(tr, w.worker_id, 'id');
      cell(tr, w.hostname, 'host');
      cell(tr, w.device, 'device');
      cell(tr, w.state, 'state');
      cell(tr, w.job_id, 'job');
      cell(tr, w.job_id ? w.rank : '', 'rank num');
      body.appendChild(tr);
    }
    $('workers-note').textContent = workers.length === 0 ? 'No workers registered.' : '';
  }

  // A section the role may not see says so and shows nothing.
  function section(answer, tableId, noteId, render, field) {
    if (answer.ok && answer.body && Array.isArray(answer.body[field])) {
      render(answer.body[field]);
      return;
    }
    clear($(tableId).tBodies[0]);
    $(noteId).textContent = answer.status === 403 ? 'Not visible to this token\'s role.' : 'Unavailable: ' + answer.message;
  }

  async function poll() {
    timer = null;
    const token = sessionStorage.getItem(kTokenKey) || '';
    const mine = generation;
    if (!token) {
      clearAll();
      $('status').textContent = 'Enter a token: the page shows what its role may see.';
      return;
    }
    const [jobs, datasets, budgets, workers] = await Promise.all(
        [getJson('/v1/jobs', token), getJson('/v1/datasets', token), getJson('/v1/budgets', token),
         getJson('/v1/workers', token)]);
    if (mine !== generation) return;  // the token changed meanwhile
    if (!jobs.ok) {
      clearAll();
      if (jobs.status === 401) {
        showError('The coordinator refused this token (HTTP 401): ' + jobs.message);
      } else {
        showError('GET /v1/jobs failed (HTTP ' + jobs.status + '): ' + jobs.message);
      }
      $('status').textContent = 'No data shown.';
    } else {
      hideError();
      const list = Array.isArray(jobs.body.jobs) ? jobs.body.jobs : [];
      renderJobs(list);
      renderCurves(list);
      section(datasets, 'datasets', 'datasets-note', renderDatasets, 'datasets');
      section(budgets, 'budgets', 'budgets-note', renderBudgets, 'files');
      section(workers, 'workers', 'workers-note', renderWorkers, 'workers');
      const now = new Date();
      $('status').textContent = 'Updated ' + now.toLocaleTimeString() + '; polling every ' + pollMs / 1000 + ' s.';
      document.body.setAttribute('data-updated', String(now.getTime()));
    }
    if (mine === generation) timer = setTimeout(poll, pollMs);
  }

  function restart() {
    generation++;
    if (timer !== null) clearTimeout(timer);
    timer = null;
    clearAll();
    hideError();
    poll();
  }

  // The page must keep its own Content-Security-Policy; a breach (an
  // inline style, say) is counted where its test can see it.
  let violations = 0;
  document.addEventListener('securitypolicyviolation', (ev) => {
    violations++;
    document.body.setAttribute('data-csp-violations', String(violations));
    console.error('CSP violation: ' + ev.violatedDirective + ' ' + ev.blockedURI);
  });

  document.addEventListener('DOMContentLoaded', () => {
    $('token-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const t = $('token').value.trim();
      $('token').value = '';
      if (t) sessionStorage.setItem(kTokenKey, t);
      restart();
    });
    $('forget').addEventListener('click', () => {
      sessionStorage.removeItem(kTokenKey);
      restart();
    });
    document.body.setAttribute('data-ready', '1');
    restart();
  });
})();
