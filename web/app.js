// The page's side of gpu-cnn in the browser: fetch MNIST, call the engine (web/src/lib.rs, compiled to wasm32 with
// its WGSL kernels on WebGPU), and show what it tells: progress, live curves, the pictures it draws, the result JSON.
import init, { adapter, run, stop } from './pkg/gpu_cnn_web.js';

const $ = (id) => document.getElementById(id);
const DATA = '../data/mnist/';
const FILES = ['SHA256SUMS', 'train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz',
  't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'];
const COMMANDS = ['forward-only', 'train', 'check', 'bench'];

let data = null; // file name -> Uint8Array, fetched once
let busy = false;
let lastCommand = null; // the command whose JSON #result holds, for "Save result"

function log(line) {
  const el = $('log');
  el.textContent += line + '\n';
  el.scrollTop = el.scrollHeight;
}

function status(text, fraction) {
  $('line').textContent = text;
  if (fraction !== undefined) $('bar').style.width = `${Math.round(100 * fraction)}%`;
}

async function fetchData() {
  if (data) return data;
  const files = {};
  for (const name of FILES) {
    status(`fetching ${DATA}${name}`);
    const r = await fetch(DATA + name);
    if (!r.ok) throw new Error(`fetching ${DATA}${name}: HTTP ${r.status} (serve the repository root: web/serve.sh)`);
    files[name] = new Uint8Array(await r.arrayBuffer());
  }
  data = files;
  return data;
}

// Live curves: the running training loss of every progress report and the test accuracy after each epoch.
const curve = { loss: [], acc: [], before: null };

function drawCurves() {
  const c = $('curves');
  const g = c.getContext('2d');
  const W = c.width, H = c.height, L = 56, R = 56, T = 16, B = 30;
  g.clearRect(0, 0, W, H);
  g.font = '12px ui-monospace, monospace';
  g.strokeStyle = '#999';
  g.strokeRect(L, T, W - L - R, H - T - B);
  const span = Math.max(1, ...curve.loss.map((p) => p[0]), ...curve.acc.map((p) => p[0]));
  const x = (e) => L + (W - L - R) * e / span;
  const maxLoss = Math.max(2.5, ...curve.loss.map((p) => p[1]));
  const yLoss = (l) => T + (H - T - B) * (1 - l / maxLoss);
  const yAcc = (a) => T + (H - T - B) * (1 - a);
  g.fillStyle = '#1f77b4';
  g.fillText('training loss', L + 6, T + 14);
  g.fillText(maxLoss.toFixed(1), 8, T + 10);
  g.fillText('0', 8, H - B);
  g.fillStyle = '#00963c';
  g.fillText('test accuracy', W - R - 100, T + 14);
  g.fillText('100%', W - R + 6, T + 10);
  g.fillText('0%', W - R + 6, H - B);
  g.fillStyle = '#333';
  for (let e = 0; e <= span; e++) g.fillText(String(e), x(e) - 3, H - 10);
  g.fillText('epoch', (W - 40) / 2, H - 10 + 0);
  const line = (pts, xf, yf, color) => {
    if (!pts.length) return;
    g.strokeStyle = color;
    g.lineWidth = 2;
    g.beginPath();
    pts.forEach((p, i) => (i ? g.lineTo(xf(p[0]), yf(p[1])) : g.moveTo(xf(p[0]), yf(p[1]))));
    g.stroke();
    g.fillStyle = color;
    pts.forEach((p) => g.fillRect(xf(p[0]) - 2, yf(p[1]) - 2, 4, 4));
  };
  line(curve.loss, x, yLoss, '#1f77b4');
  const acc = curve.before === null ? curve.acc : [[0, curve.before], ...curve.acc];
  line(acc, x, yAcc, '#00963c');
}

function showPicture(name, bytes) {
  const url = URL.createObjectURL(new Blob([bytes], { type: 'image/png' }));
  const id = 'pic-' + name.replace(/[^a-z0-9]/gi, '-');
  let fig = document.getElementById(id);
  if (!fig) {
    fig = document.createElement('figure');
    fig.id = id;
    fig.innerHTML = '<img alt=""><figcaption></figcaption>';
    const figs = [...$('gallery').children];
    const after = figs.find((f) => f.id > id);
    $('gallery').insertBefore(fig, after || null);
  }
  const img = fig.querySelector('img');
  if (img.src) URL.revokeObjectURL(img.src);
  img.src = url;
  img.alt = name;
  fig.querySelector('figcaption').textContent = name;
}

function onEvent(kind, text, bytes) {
  switch (kind) {
    case 'log': log(text); break;
    case 'epoch-start': {
      const e = JSON.parse(text);
      status(`epoch ${e.epoch}/${e.epochs}: ${e.steps} steps`, 0);
      break;
    }
    case 'step': {
      const s = JSON.parse(text);
      status(`epoch ${s.epoch}: step ${s.step}/${s.steps}, loss ${s.loss.toFixed(4)}, ` +
        `accuracy ${(100 * s.accuracy).toFixed(2)} %`, s.step / s.steps);
      curve.loss.push([s.epoch - 1 + s.step / s.steps, s.loss]);
      drawCurves();
      break;
    }
    case 'epoch': {
      const e = JSON.parse(text);
      curve.acc.push([e.epoch, e.test_accuracy]);
      $('acc-after').textContent = `${(100 * e.test_accuracy).toFixed(2)} % (epoch ${e.epoch})`;
      drawCurves();
      break;
    }
    case 'file':
      if (text.endsWith('.png')) showPicture(text, bytes);
      break;
    default: break;
  }
}

function showResult(command, json) {
  const r = JSON.parse(json);
  if (command === 'forward-only') {
    $('acc-before').textContent = `${(100 * r.test_accuracy).toFixed(2)} %`;
  } else if (command === 'train') {
    const run = r; // StudyReport: the run's fields at the top level
    $('acc-before').textContent = `${(100 * run.forward_only_test_accuracy).toFixed(2)} %`;
    $('acc-after').textContent = `${(100 * run.test_accuracy).toFixed(2)} %`;
    curve.before = run.forward_only_test_accuracy;
    drawCurves();
    // The study's figures are for its network on all 10,000 MNIST test images and 60,000 training images.
    const note = [];
    if (!run.study_setting) note.push(`this run's network or test set (${run.test_images} test images) is not the study's`);
    if (run.hyperparameters.train_images < 60000) note.push(`it trained on ${run.hyperparameters.train_images} of the 60,000 training images`);
    $('setting').hidden = note.length === 0;
    $('setting').textContent = note.length ? `Not the study's setting: ${note.join('; ')}.` : '';
  } else if (command === 'check') {
    $('checks').hidden = false;
    const body = $('check-table').querySelector('tbody');
    body.innerHTML = '';
    for (const row of r[0].rows) {
      const tr = document.createElement('tr');
      const verdict = row.passed ? '<span class="pass">ok</span>' : '<span class="fail">FAILED</span>';
      tr.innerHTML = `<td>${row.kernel}</td><td>${row.variant}</td><td>${row.cases}</td>` +
        `<td>${(100 * row.worst_share_of_tolerance).toFixed(0)} %</td><td>${verdict}</td>`;
      body.appendChild(tr);
    }
  } else if (command === 'bench') {
    $('benchmark').hidden = false;
    const body = $('bench-table').querySelector('tbody');
    body.innerHTML = '';
    for (const b of r) {
      const rows = [['adapter', `${b.device.name} (${b.device.backend}), ${b.device.kernels}`], ['batch', b.batch_size],
        ['training images/s (median)', b.train_images_per_sec.median.toFixed(0)],
        ['inference images/s (median)', b.inference_images_per_sec.median.toFixed(0)],
        ...b.kernels.map((k) => [`${k.name} ms`, k.ms.toFixed(3)])];
      for (const [k, v] of rows) {
        const tr = document.createElement('tr');
        tr.innerHTML = `<td>${k}</td><td>${v}</td>`;
        body.appendChild(tr);
      }
    }
  }
}

// A panic in the engine (a bug) aborts the WebAssembly call, whose promise then never settles: say so in the result.
window.addEventListener('error', (e) => {
  if (!busy) return;
  const message = `the engine stopped: ${e.message} (the browser's console has the panic message)`;
  $('result').textContent = JSON.stringify({ error: message });
  status(message);
  document.body.dataset.state = 'error';
});

async function start(command, options) {
  if (busy) return;
  busy = true;
  document.body.dataset.state = 'running';
  document.querySelectorAll('#controls button').forEach((b) => { b.disabled = true; });
  $('stop').disabled = command !== 'train';
  $('result').textContent = '';
  lastCommand = null;
  if (command === 'train' || command === 'forward-only') {
    curve.loss = []; curve.acc = []; curve.before = null;
    drawCurves();
  }
  const t0 = performance.now();
  try {
    const files = command === 'check' ? {} : await fetchData();
    status(`${command}…`, 0);
    const json = await run(command, JSON.stringify(options), files, onEvent);
    $('result').textContent = json;
    lastCommand = command;
    showResult(command, json);
    status(`${command}: done in ${((performance.now() - t0) / 1000).toFixed(1)} s`, 1);
    document.body.dataset.state = 'done';
  } catch (e) {
    const message = e && e.message ? e.message : String(e);
    $('result').textContent = JSON.stringify({ error: message });
    const stopped = message.startsWith('interrupted');
    status(stopped ? `stopped: ${message}` : `${command} failed: ${message}`);
    log(`${stopped ? 'stopped' : 'error'}: ${message}`);
    document.body.dataset.state = stopped ? 'stopped' : 'error';
  } finally {
    busy = false;
    document.querySelectorAll('#controls button').forEach((b) => { b.disabled = false; });
    $('stop').disabled = true;
    $('save').disabled = !(lastCommand === 'check' || lastCommand === 'bench');
  }
}

// Stop: the engine finishes the chunk of steps in flight, then writes the pictures of the network as it stands.
function stopTraining() {
  stop();
  $('stop').disabled = true;
  status('stopping after the steps in flight…');
}

// Save result: the JSON `gpu-cnn check|bench --json` prints, as a file (`gpu-cnn bench-report` merges bench files
// from the page and from native runs).
function saveResult() {
  const text = $('result').textContent;
  const blob = new Blob([text + '\n'], { type: 'application/json' });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = `gpu-cnn-${lastCommand}-${new Date().toISOString().slice(0, 19).replace(/[:T]/g, '-')}.json`;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  return text;
}
window.saveResult = saveResult;

function formOptions() {
  const o = {};
  for (const id of ['epochs', 'train-limit', 'test-limit', 'batch-size', 'lr', 'momentum', 'arch']) o[id] = $(id).value;
  return o;
}

async function main() {
  const query = new URLSearchParams(location.search);
  const asked = query.get('run');
  if (!navigator.gpu) {
    const advice = 'This browser has no WebGPU. Use Chrome or Edge 113 or later (on Linux with ' +
      '--enable-unsafe-webgpu), Safari 26, or Firefox 141 on Windows; or run the same study natively: ' +
      'cargo run --release -- compare (see the README).';
    $('no-webgpu').textContent = advice;
    $('no-webgpu').hidden = false;
    $('adapter').textContent = 'No WebGPU.';
    document.querySelectorAll('#controls button').forEach((b) => { b.disabled = true; });
    if (asked) $('result').textContent = JSON.stringify({ error: advice });
    document.body.dataset.state = 'error';
    return;
  }
  try {
    await init();
    // wgpu does not pass on GPUAdapterInfo's vendor and architecture; the page reads them for the adapter's name.
    const gpuAdapter = await navigator.gpu.requestAdapter();
    const info = gpuAdapter && gpuAdapter.info ? gpuAdapter.info : {};
    const name = [info.vendor, info.architecture, info.device, info.description].filter((x) => x).join(' ');
    const a = JSON.parse(await adapter(name));
    $('adapter').textContent = `${a.name} (${a.backend}, ${a.device_type}), driver ${a.driver || '?'}: ` +
      `${a.kernels} kernels`;
    if (a.device_type === 'cpu') {
      // A software adapter trains some thousand times slower than a GPU: defaults that finish in minutes.
      $('train-limit').value = 2048;
      $('test-limit').value = 2000;
      $('software-note').textContent = 'This WebGPU adapter runs on the CPU (a software rasterizer): the defaults ' +
        'train on 2,048 images and test on 2,000, a few minutes a run. Raise them for the full study, or run it ' +
        'natively (cargo run --release -- compare).';
      $('software-note').hidden = false;
    }
  } catch (e) {
    const message = e && e.message ? e.message : String(e);
    $('adapter').textContent = message;
    if (asked) $('result').textContent = JSON.stringify({ error: message });
    document.body.dataset.state = 'error';
    return;
  }
  document.body.dataset.state = 'ready';
  for (const c of COMMANDS) $(c).addEventListener('click', () => start(c, formOptions()));
  $('stop').addEventListener('click', stopTraining);
  $('save').addEventListener('click', saveResult);
  drawCurves();
  if (asked) {
    if (!COMMANDS.includes(asked)) {
      $('result').textContent = JSON.stringify({ error: `unknown run=${asked} (${COMMANDS.join(', ')})` });
      document.body.dataset.state = 'error';
      return;
    }
    const options = {};
    for (const [k, v] of query) {
      if (k === 'run') continue;
      options[k] = v;
    }
    if (options.arch && ![...$('arch').options].some((o) => o.value === options.arch)) {
      $('arch').add(new Option(options.arch, options.arch));
    }
    for (const id of ['epochs', 'train-limit', 'test-limit', 'batch-size', 'lr', 'momentum', 'arch']) {
      if (options[id]) $(id).value = options[id];
    }
    await start(asked, options);
  }
}

main();
