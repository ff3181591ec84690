/* FastSAM web page.
 *
 * The image is uploaded once (the network runs on the server); every mask comes back as COCO compressed RLE
 * and is decoded here into a small bit-packed bitmap restricted to its tight bounding box. Point and box
 * prompts are then answered in the browser with the server's own rules (fastsam.prompts.points "best" mode
 * and fastsam.prompts.boxes), so the view updates instantly; only text queries go back to the server (CLIP).
 *
 * No build step and nothing loaded from the internet.
 */
'use strict';

(function () {
  const API = '/api/v1';
  const el = (id) => document.getElementById(id);

  /* ------------------------------------------------------------------------------------------------------
   * COCO compressed RLE.
   *
   * The counts string holds run lengths of a column-major (Fortran order) mask, alternating 0-runs and 1-runs
   * and starting with a 0-run. Each number is written as little-endian 5-bit groups, one character per group:
   * char = 48 + group, with 0x20 set on every group but the last; the last group's 0x10 bit is the sign
   * (the number is two's complement over 5 x groups bits). From the fourth number on, the value stored is the
   * difference to the number two places before (the previous run of the same kind).
   * ---------------------------------------------------------------------------------------------------- */

  /** Run lengths of a compressed counts string. */
  function parseCounts(s) {
    const runs = [];
    const n = s.length;
    let p = 0;
    while (p < n) {
      let x = 0;
      let scale = 1; // 2 ** (5 * k)
      let more = true;
      while (more) {
        if (p >= n) throw new Error('truncated RLE counts string');
        const c = s.charCodeAt(p) - 48;
        if (c < 0 || c > 63) throw new Error(`invalid character in RLE counts at ${p}`);
        x += (c & 0x1f) * scale;
        more = (c & 0x20) !== 0;
        p += 1;
        scale *= 32;
        if (!more && (c & 0x10)) x -= scale; // negative: sign-extend
      }
      if (runs.length > 2) x += runs[runs.length - 2];
      runs.push(x);
    }
    return runs;
  }

  /** Set bits lo <= bit < hi of a column starting at word `base`. */
  function setRange(bits, base, lo, hi) {
    while (lo < hi) {
      const b = lo & 31;
      const n = Math.min(32 - b, hi - lo);
      const m = n === 32 ? 0xffffffff : (2 ** n - 1) * 2 ** b;
      bits[base + (lo >>> 5)] |= m;
      lo += n;
    }
  }

  /**
   * Decode one RLE into {H, W, area, x0, y0, x1, y1, wpc, bits}: (x0, y0, x1, y1) is the tight box (x1, y1
   * exclusive; all zero for an empty mask) and `bits` a Uint32Array of (x1 - x0) columns of `wpc` words each;
   * bit (ry & 31) of word (ry >>> 5) of column cx is pixel (x0 + cx, y0 + ry).
   */
  function decodeMask(seg) {
    const H = seg.size[0];
    const W = seg.size[1];
    const runs = parseCounts(seg.counts);
    const total = H * W;
    let area = 0;
    let x0 = W, y0 = H, x1 = 0, y1 = 0;
    let pos = 0;
    for (let i = 0; i < runs.length; i++) {
      let len = runs[i];
      if (len < 0 || pos + len > total) throw new Error('RLE runs do not fit the mask size');
      if (i & 1 && len > 0) {
        const end = pos + len - 1;
        const c0 = Math.floor(pos / H);
        const c1 = Math.floor(end / H);
        area += len;
        if (c0 < x0) x0 = c0;
        if (c1 + 1 > x1) x1 = c1 + 1;
        if (c1 > c0) {
          y0 = 0;
          y1 = H;
        } else {
          const r0 = pos - c0 * H;
          const r1 = end - c0 * H;
          if (r0 < y0) y0 = r0;
          if (r1 + 1 > y1) y1 = r1 + 1;
        }
      }
      pos += len;
    }
    if (area === 0) return { H, W, area: 0, x0: 0, y0: 0, x1: 0, y1: 0, wpc: 0, bits: new Uint32Array(0) };
    const wpc = (y1 - y0 + 31) >>> 5;
    const bits = new Uint32Array((x1 - x0) * wpc);
    pos = 0;
    for (let i = 0; i < runs.length; i++) {
      const len = runs[i];
      if (i & 1) {
        let s = pos;
        const e = pos + len;
        while (s < e) {
          const c = Math.floor(s / H);
          const stop = Math.min(e, (c + 1) * H);
          setRange(bits, (c - x0) * wpc, s - c * H - y0, stop - c * H - y0);
          s = stop;
        }
      }
      pos += len;
    }
    return { H, W, area, x0, y0, x1, y1, wpc, bits };
  }

  /** 1 if pixel (x, y) is in the mask. */
  function maskBit(m, x, y) {
    if (x < m.x0 || x >= m.x1 || y < m.y0 || y >= m.y1) return 0;
    const ry = y - m.y0;
    return (m.bits[(x - m.x0) * m.wpc + (ry >>> 5)] >>> (ry & 31)) & 1;
  }

  function popcount(v) {
    v >>>= 0;
    v -= (v >>> 1) & 0x55555555;
    v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
    return Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24;
  }

  /** Pixels of the mask inside the integer box [bx1, bx2) x [by1, by2). */
  function maskBoxCount(m, bx1, by1, bx2, by2) {
    const xa = Math.max(bx1, m.x0), xb = Math.min(bx2, m.x1);
    const ya = Math.max(by1, m.y0), yb = Math.min(by2, m.y1);
    if (xa >= xb || ya >= yb) return 0;
    if (xa === m.x0 && xb === m.x1 && ya === m.y0 && yb === m.y1) return m.area;
    const lo = ya - m.y0, hi = yb - m.y0;
    const w0 = lo >>> 5, w1 = (hi - 1) >>> 5;
    const maskLo = (0xffffffff << (lo & 31)) >>> 0;
    const hb = ((hi - 1) & 31) + 1;
    const maskHi = hb === 32 ? 0xffffffff : 2 ** hb - 1;
    const bits = m.bits, wpc = m.wpc;
    let total = 0;
    for (let cx = xa - m.x0; cx < xb - m.x0; cx++) {
      const base = cx * wpc;
      if (w0 === w1) {
        total += popcount(bits[base + w0] & maskLo & maskHi);
      } else {
        total += popcount(bits[base + w0] & maskLo);
        for (let w = w0 + 1; w < w1; w++) total += popcount(bits[base + w]);
        total += popcount(bits[base + w1] & maskHi);
      }
    }
    return total;
  }

  /** The mask eroded `times` times with the 4-neighbourhood (pixels outside the box count as outside). */
  function erode(m, times) {
    const bw = m.x1 - m.x0, wpc = m.wpc;
    let cur = m.bits;
    for (let t = 0; t < times; t++) {
      const out = new Uint32Array(cur.length);
      for (let cx = 0; cx < bw; cx++) {
        const base = cx * wpc;
        for (let w = 0; w < wpc; w++) {
          const c = cur[base + w];
          if (c === 0) continue;
          const left = cx > 0 ? cur[base - wpc + w] : 0;
          const right = cx < bw - 1 ? cur[base + wpc + w] : 0;
          const above = (c << 1) | (w > 0 ? cur[base + w - 1] >>> 31 : 0); // bit b: row b - 1
          const below = (c >>> 1) | (w < wpc - 1 ? (cur[base + w + 1] & 1) << 31 : 0); // bit b: row b + 1
          out[base + w] = c & left & right & above & below;
        }
      }
      cur = out;
    }
    return cur;
  }

  /* ------------------------------------------------------------------------------------------------------
   * Selection rules, mirroring the server (fastsam.prompts.validation / points / boxes, mode "best").
   * ---------------------------------------------------------------------------------------------------- */

  /** A point in image pixels -> pixel indices: truncated, the right/bottom edge mapped onto the last pixel. */
  function pointPixel(x, y, W, H) {
    return [Math.min(Math.trunc(x), W - 1), Math.min(Math.trunc(y), H - 1)];
  }

  /** A box in image pixels -> integer bounds (truncated, clipped; x2, y2 exclusive). */
  function boxPixels(box, W, H) {
    const clip = (v, hi) => Math.min(Math.max(Math.trunc(v), 0), hi);
    return [clip(box[0], W), clip(box[1], H), clip(box[2], W), clip(box[3], H)];
  }

  /** True when mask i ranks before mask j: higher score, then smaller area, then lower index. */
  function ranksBefore(masks, i, j) {
    const a = masks[i], b = masks[j];
    if (a.score !== b.score) return a.score > b.score;
    if (a.area !== b.area) return a.area < b.area;
    return i < j;
  }

  /**
   * Mode "best": per foreground point (in order) an array of mask indices; empty where no mask contains the
   * point without containing a background point. With multimask up to 3 (smallest, best-ranked in between,
   * largest).
   */
  function selectBest(masks, points, multimask, W, H) {
    const px = points.map((p) => pointPixel(p.x, p.y, W, H));
    const background = points.map((p, k) => k).filter((k) => points[k].label === 0);
    const allowed = masks.map((m) => !background.some((k) => maskBit(m, px[k][0], px[k][1])));
    const picks = [];
    points.forEach((p, k) => {
      if (p.label !== 1) return;
      const candidates = [];
      for (let i = 0; i < masks.length; i++) {
        if (allowed[i] && maskBit(masks[i], px[k][0], px[k][1])) candidates.push(i);
      }
      if (candidates.length === 0) {
        picks.push([]);
        return;
      }
      const bestOf = (list) => list.reduce((a, b) => (ranksBefore(masks, b, a) ? b : a));
      const best = bestOf(candidates);
      if (!multimask) {
        picks.push([best]);
        return;
      }
      const byArea = candidates.slice().sort((a, b) => masks[a].area - masks[b].area || a - b);
      const smallest = byArea[0], largest = byArea[byArea.length - 1];
      const middle = byArea.slice(1, -1);
      const chosen = [smallest];
      if (middle.length) chosen.push(bestOf(middle));
      if (largest !== smallest) chosen.push(largest);
      picks.push(chosen);
    });
    return picks;
  }

  /** Per box the mask with the highest |m & b| / (|b| + |m| - |m & b|); -1 where none overlaps. */
  function selectBoxes(masks, boxes, W, H) {
    return boxes.map((box) => {
      const [x1, y1, x2, y2] = boxPixels(box, W, H);
      if (x2 <= x1 || y2 <= y1 || masks.length === 0) return -1;
      const boxArea = (x2 - x1) * (y2 - y1);
      let best = -1, bestIou = -1;
      for (let i = 0; i < masks.length; i++) {
        const inter = maskBoxCount(masks[i], x1, y1, x2, y2);
        const iou = inter / Math.max(boxArea + masks[i].area - inter, 1);
        if (iou > bestIou) {
          bestIou = iou;
          best = i;
        }
      }
      return bestIou > 0 ? best : -1;
    });
  }

  /* ------------------------------------------------------------------------------------------------------
   * State
   * ---------------------------------------------------------------------------------------------------- */

  const MODES = ['everything', 'points', 'box', 'text'];
  const state = {
    file: null,
    bitmap: null, // what is drawn under the masks
    image: null, // {id, width, height, fileName, elapsedMs, settings}
    raw: [], // the server's masks (index order)
    masks: [], // decoded: {index, score, area, bbox, ...bitmap}
    mode: 'everything',
    points: [], // {x, y, label} in image pixels
    boxes: [], // [x1, y1, x2, y2] in image pixels
    text: { queries: [], topK: 1, results: [] }, // results: the server's {index, prompt_id}
    history: [],
    multimask: false,
    bgToggle: false,
    settings: { imgsz: 1024, conf: 0.4, iou: 0.9 },
    display: { alpha: 0.5, contours: true, random: true, color: '#1e90ff', seed: 0 },
    busy: false,
    textBusy: false,
    error: '',
    errorSource: '',
    selection: { entries: [], indices: [] },
    server: null,
    hover: -1,
  };

  /* ------------------------------------------------------------------------------------------------------
   * DOM
   * ---------------------------------------------------------------------------------------------------- */

  const dom = {
    status: el('status'),
    serverInfo: el('server-info'),
    fileInput: el('file-input'),
    fileName: el('file-name'),
    modeHint: el('mode-hint'),
    bgToggle: el('bg-toggle'),
    multimask: el('multimask'),
    textInput: el('text-input'),
    topK: el('top-k'),
    textSubmit: el('text-submit'),
    textError: el('text-error'),
    errorPanel: el('error-panel'),
    errorTitle: el('error-title'),
    errorMessage: el('error-message'),
    errorClose: el('error-close'),
    imgsz: el('imgsz'),
    conf: el('conf'),
    iou: el('iou'),
    alpha: el('alpha'),
    contours: el('contours'),
    colorRandom: el('color-random'),
    colorSingle: el('color-single'),
    colorPicker: el('color-picker'),
    shuffle: el('shuffle'),
    undo: el('undo'),
    clear: el('clear'),
    downloadPng: el('download-png'),
    downloadJson: el('download-json'),
    dropzone: el('dropzone'),
    empty: el('empty'),
    stage: el('stage'),
    imageCanvas: el('image-canvas'),
    overlayCanvas: el('overlay-canvas'),
    promptLayer: el('prompt-layer'),
    progress: el('progress'),
    progressText: el('progress-text'),
    progressBar: el('progress-bar'),
    cancel: el('cancel'),
    summary: el('summary'),
    cursorPos: el('cursor-pos'),
    list: el('selection-list'),
    count: el('selection-count'),
    selectionEmpty: el('selection-empty'),
    keyButton: el('key-button'),
    keyDialog: el('key-dialog'),
    keyForm: el('key-form'),
    keyInput: el('key-input'),
    keyMessage: el('key-message'),
    keyError: el('key-error'),
    keySubmit: el('key-submit'),
  };

  const MODE_HINTS = {
    everything: 'Every mask the network found.',
    points: 'Click: foreground point. Right click, shift-click or the toggle: background point.',
    box: 'Drag to draw a box; draw several for several objects.',
    text: 'Describe what to find; the server ranks the masks with CLIP.',
  };

  /* ------------------------------------------------------------------------------------------------------
   * Selection
   * ---------------------------------------------------------------------------------------------------- */

  /**
   * The current selection as the server's /prompt would answer it: boxes first, then foreground points,
   * then text queries; `prompt_id` numbers the prompts in that order and index -1 marks a prompt with no mask.
   * Everything mode selects every mask.
   */
  function computeSelection() {
    const entries = [];
    if (state.image) {
      const { width: W, height: H } = state.image;
      if (state.mode === 'everything') {
        state.masks.forEach((m, i) => entries.push({ kind: 'all', prompt_id: -1, index: i }));
      } else {
        let offset = 0;
        if (state.boxes.length) {
          selectBoxes(state.masks, state.boxes, W, H).forEach((index, b) => {
            entries.push({ kind: 'box', prompt_id: b, index, box: state.boxes[b].slice(), prompt: b });
          });
          offset += state.boxes.length;
        }
        if (state.points.length) {
          const foreground = state.points.map((p, k) => k).filter((k) => state.points[k].label === 1);
          const picks = selectBest(state.masks, state.points, state.multimask, W, H);
          picks.forEach((pick, f) => {
            const p = state.points[foreground[f]];
            (pick.length ? pick : [-1]).forEach((index) => {
              entries.push({ kind: 'point', prompt_id: offset + f, index, point: [p.x, p.y], prompt: foreground[f] });
            });
          });
          offset += picks.length;
        }
        state.text.results.forEach((r) => {
          entries.push({ kind: 'text', prompt_id: offset + r.prompt_id, index: r.index, query: state.text.queries[r.prompt_id] });
        });
      }
    }
    const seen = new Set();
    const indices = [];
    for (const e of entries) {
      if (e.index >= 0 && !seen.has(e.index)) {
        seen.add(e.index);
        indices.push(e.index);
      }
    }
    state.selection = { entries, indices };
    return state.selection;
  }

  /* ------------------------------------------------------------------------------------------------------
   * Colours
   * ---------------------------------------------------------------------------------------------------- */

  function hslToRgb(h, s, l) {
    const k = (n) => (n + h * 12) % 12;
    const a = s * Math.min(l, 1 - l);
    const f = (n) => l - a * Math.max(-1, Math.min(k(n) - 3, Math.min(9 - k(n), 1)));
    return [Math.round(f(0) * 255), Math.round(f(8) * 255), Math.round(f(4) * 255)];
  }

  function hexToRgb(hex) {
    const v = parseInt(hex.slice(1), 16);
    return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
  }

  /** RGB of mask `index` (stable per mask, so a mask keeps its colour as the selection changes). */
  function colorOf(index) {
    if (!state.display.random) return hexToRgb(state.display.color);
    const h = (index * 0.6180339887 + state.display.seed * 0.1372) % 1;
    const s = 0.62 + 0.25 * ((index * 0.37) % 1);
    const l = 0.5 + 0.12 * ((index * 0.53) % 1);
    return hslToRgb(h, s, l);
  }

  const css = (rgb) => `rgb(${rgb[0]}, ${rgb[1]}, ${rgb[2]})`;

  /* ------------------------------------------------------------------------------------------------------
   * Rendering
   * ---------------------------------------------------------------------------------------------------- */

  let overlayData = null;
  let labelBuf = null;

  /** Image pixels per screen pixel. */
  function pixelScale() {
    if (!state.image) return 1;
    const w = dom.stage.getBoundingClientRect().width;
    return w > 0 ? state.image.width / w : 1;
  }

  /** Paint the selected masks (smallest on top) and their contours onto the overlay canvas. */
  function renderOverlay() {
    const canvas = dom.overlayCanvas;
    const ctx = canvas.getContext('2d');
    if (!state.image) {
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      return;
    }
    const { width: W, height: H } = state.image;
    if (!overlayData || overlayData.width !== W || overlayData.height !== H) {
      overlayData = ctx.createImageData(W, H);
      labelBuf = new Int32Array(W * H);
    }
    const px = new Uint32Array(overlayData.data.buffer);
    px.fill(0);
    const selected = state.selection.indices.filter((i) => state.masks[i] && state.masks[i].area > 0);
    if (selected.length) {
      // union box of the selection: only that region is touched
      let ux0 = W, uy0 = H, ux1 = 0, uy1 = 0;
      for (const i of selected) {
        const m = state.masks[i];
        ux0 = Math.min(ux0, m.x0); uy0 = Math.min(uy0, m.y0); ux1 = Math.max(ux1, m.x1); uy1 = Math.max(uy1, m.y1);
      }
      for (let y = uy0; y < uy1; y++) labelBuf.fill(-1, y * W + ux0, y * W + ux1);
      const order = selected.map((i, k) => k).sort((a, b) => state.masks[selected[b]].area - state.masks[selected[a]].area || a - b);
      for (const k of order) {
        const m = state.masks[selected[k]];
        const bw = m.x1 - m.x0;
        for (let cx = 0; cx < bw; cx++) {
          const base = cx * m.wpc;
          const x = m.x0 + cx;
          for (let w = 0; w < m.wpc; w++) {
            let word = m.bits[base + w];
            while (word !== 0) {
              const low = word & -word;
              const y = m.y0 + (w << 5) + (31 - Math.clz32(low));
              labelBuf[y * W + x] = k;
              word ^= low;
            }
          }
        }
      }
      const a = Math.round(state.display.alpha * 255);
      const packed = selected.map((i) => {
        const [r, g, b] = colorOf(i);
        return ((a << 24) | (b << 16) | (g << 8) | r) >>> 0;
      });
      for (let y = uy0; y < uy1; y++) {
        const row = y * W;
        for (let p = row + ux0; p < row + ux1; p++) {
          const l = labelBuf[p];
          if (l >= 0) px[p] = packed[l];
        }
      }
      if (state.display.contours) {
        const thickness = Math.max(1, Math.min(8, Math.round(pixelScale())));
        const white = 0xffffffff;
        for (const i of selected) {
          const m = state.masks[i];
          const inner = erode(m, thickness);
          const bw = m.x1 - m.x0;
          for (let cx = 0; cx < bw; cx++) {
            const base = cx * m.wpc;
            const x = m.x0 + cx;
            for (let w = 0; w < m.wpc; w++) {
              let word = (m.bits[base + w] & ~inner[base + w]) >>> 0;
              while (word !== 0) {
                const low = word & -word;
                const y = m.y0 + (w << 5) + (31 - Math.clz32(low));
                px[y * W + x] = white;
                word ^= low;
              }
            }
          }
        }
      }
    }
    ctx.putImageData(overlayData, 0, 0);
  }

  let overlayPending = false;
  /** Redraw the masks on the next frame (coalesces bursts of slider and colour-picker events). */
  function scheduleOverlay() {
    if (overlayPending) return;
    overlayPending = true;
    requestAnimationFrame(() => {
      overlayPending = false;
      renderOverlay();
    });
  }

  const SVG_NS = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    return node;
  }

  let draft = null; // box being drawn: [x1, y1, x2, y2]

  /** Points, boxes, the box being drawn and the hovered mask's box, in image coordinates. */
  function renderPrompts() {
    const layer = dom.promptLayer;
    layer.replaceChildren();
    if (!state.image) return;
    const { width: W, height: H } = state.image;
    layer.setAttribute('viewBox', `0 0 ${W} ${H}`);
    layer.setAttribute('preserveAspectRatio', 'none');
    const s = pixelScale();
    const showPrompts = state.mode !== 'everything';
    if (showPrompts) {
      state.boxes.forEach((b, k) => {
        layer.appendChild(svg('rect', {
          class: 'marker-box', x: b[0], y: b[1], width: b[2] - b[0], height: b[3] - b[1],
          'stroke-width': 2, 'vector-effect': 'non-scaling-stroke', 'data-box': k,
        }));
      });
      state.points.forEach((p, k) => {
        layer.appendChild(svg('circle', {
          class: p.label === 1 ? 'marker-fg' : 'marker-bg', cx: p.x, cy: p.y, r: 6 * s,
          'stroke-width': 2, 'vector-effect': 'non-scaling-stroke', 'data-point': k,
        }));
        if (p.label === 0) {
          layer.appendChild(svg('line', {
            x1: p.x - 3 * s, y1: p.y, x2: p.x + 3 * s, y2: p.y, stroke: '#fff',
            'stroke-width': 2, 'vector-effect': 'non-scaling-stroke',
          }));
        }
      });
    }
    if (draft) {
      const [x1, y1, x2, y2] = draft;
      layer.appendChild(svg('rect', {
        class: 'marker-draft', x: Math.min(x1, x2), y: Math.min(y1, y2), width: Math.abs(x2 - x1),
        height: Math.abs(y2 - y1), 'stroke-width': 2, 'vector-effect': 'non-scaling-stroke',
      }));
    }
    if (state.hover >= 0 && state.masks[state.hover]) {
      const m = state.masks[state.hover];
      layer.appendChild(svg('rect', {
        x: m.x0, y: m.y0, width: m.x1 - m.x0, height: m.y1 - m.y0, fill: 'none', stroke: '#fff',
        'stroke-width': 1.5, 'stroke-dasharray': '5 4', 'vector-effect': 'non-scaling-stroke',
      }));
    }
  }

  const fmtInt = (n) => n.toLocaleString('en-US');
  const fmtXY = (v) => (Math.round(v * 10) / 10).toString();

  function describeEntry(e) {
    if (e.kind === 'all') return `Mask #${e.index}`;
    if (e.kind === 'box') return `Box ${e.prompt + 1}`;
    if (e.kind === 'point') return `Point ${e.prompt + 1}`;
    return `“${e.query}”`;
  }

  const MAX_ROWS = 300;

  function renderList() {
    const { entries, indices } = state.selection;
    dom.list.replaceChildren();
    dom.count.textContent = String(indices.length);
    dom.selectionEmpty.hidden = entries.length > 0;
    dom.selectionEmpty.textContent = !state.image ? 'Nothing selected yet.'
      : state.mode === 'everything' ? 'The network found no mask: try a lower confidence.'
        : 'No prompt yet: ' + MODE_HINTS[state.mode].charAt(0).toLowerCase() + MODE_HINTS[state.mode].slice(1);
    const frag = document.createDocumentFragment();
    entries.slice(0, MAX_ROWS).forEach((e) => {
      const li = document.createElement('li');
      li.dataset.index = String(e.index);
      const swatch = document.createElement('span');
      swatch.className = 'swatch';
      const what = document.createElement('span');
      what.className = 'what';
      const score = document.createElement('span');
      score.className = 'score';
      const detail = document.createElement('span');
      detail.className = 'detail';
      what.textContent = describeEntry(e);
      what.title = what.textContent;
      if (e.index >= 0) {
        const m = state.masks[e.index];
        swatch.style.background = css(colorOf(e.index));
        score.textContent = m.score.toFixed(3);
        score.title = 'score (predicted IoU)';
        detail.textContent = (e.kind === 'all' ? '' : `mask #${e.index} · `) + `${fmtInt(m.area)} px`;
      } else {
        li.classList.add('none');
        swatch.style.background = 'transparent';
        detail.textContent = 'no mask here';
      }
      if (e.kind === 'point') detail.textContent = `at ${fmtXY(e.point[0])}, ${fmtXY(e.point[1])} · ` + detail.textContent;
      li.append(swatch, what, score, detail);
      li.addEventListener('mouseenter', () => { state.hover = e.index; renderPrompts(); });
      li.addEventListener('mouseleave', () => { state.hover = -1; renderPrompts(); });
      frag.appendChild(li);
    });
    if (entries.length > MAX_ROWS) {
      const li = document.createElement('li');
      li.innerHTML = '<span class="more"></span>';
      li.firstChild.textContent = `… and ${entries.length - MAX_ROWS} more`;
      li.style.display = 'block';
      frag.appendChild(li);
    }
    dom.list.appendChild(frag);
  }

  /** Show a failure in full (wrapped, selectable) above the image; a later success of the same `source` hides it. */
  function showError(title, message, source) {
    state.errorSource = source;
    dom.errorTitle.textContent = title;
    dom.errorMessage.textContent = message;
    dom.errorPanel.hidden = false;
    relayout();
  }

  /** Hide the error panel (only if it shows a failure of `source`, when given). */
  function hideError(source) {
    if (source && state.errorSource !== source) return;
    if (dom.errorPanel.hidden) return;
    state.errorSource = '';
    dom.errorPanel.hidden = true;
    relayout();
  }

  function setStatus(text, isError) {
    state.error = isError ? text : '';
    dom.status.textContent = text;
    dom.status.title = text;
    updateBodyState();
  }

  function updateBodyState() {
    document.body.dataset.state = state.busy ? 'busy' : state.error ? 'error' : state.image ? 'ready' : 'empty';
    document.body.dataset.mode = state.mode;
  }

  function idleStatus() {
    if (!state.image) return 'Choose or drop an image to start.';
    const n = state.selection.indices.length;
    const masks = `${n} mask${n === 1 ? '' : 's'} selected`;
    if (state.mode === 'everything') return `Everything: all ${state.masks.length} masks.`;
    const fg = state.points.filter((p) => p.label === 1).length;
    const bg = state.points.length - fg;
    const parts = [];
    if (state.boxes.length) parts.push(`${state.boxes.length} box${state.boxes.length === 1 ? '' : 'es'}`);
    if (state.points.length) parts.push(`${fg} foreground + ${bg} background point${bg === 1 ? '' : 's'}`);
    if (state.text.queries.length && state.text.results.length) parts.push(`${state.text.queries.length} text quer${state.text.queries.length === 1 ? 'y' : 'ies'}`);
    const label = { points: 'Points', box: 'Box', text: 'Text' }[state.mode];
    if (!parts.length) return `${label} mode: ${MODE_HINTS[state.mode]}`;
    const none = state.selection.entries.filter((e) => e.index < 0).length;
    return `${label} mode · ${parts.join(', ')} → ${masks}` + (none ? ` (${none} prompt${none === 1 ? '' : 's'} without a mask)` : '');
  }

  function renderControls() {
    document.querySelectorAll('.segmented button').forEach((b) => {
      b.setAttribute('aria-checked', String(b.dataset.mode === state.mode));
    });
    document.querySelectorAll('.mode-options').forEach((node) => {
      node.hidden = node.dataset.for !== state.mode;
    });
    dom.modeHint.textContent = MODE_HINTS[state.mode];
    dom.bgToggle.setAttribute('aria-pressed', String(state.bgToggle));
    const hasImage = !!state.image;
    const hasPrompts = state.points.length + state.boxes.length + state.text.results.length > 0;
    dom.undo.disabled = state.history.length === 0;
    dom.clear.disabled = !hasPrompts;
    dom.downloadPng.disabled = !hasImage;
    dom.downloadJson.disabled = !hasImage;
    dom.textSubmit.disabled = !hasImage || state.textBusy;
    dom.textSubmit.textContent = state.textBusy ? 'Searching…' : 'Find';
    dom.colorPicker.disabled = state.display.random;
    dom.shuffle.disabled = !state.display.random;
    updateBodyState();
  }

  function renderSummary() {
    if (!state.image) {
      dom.summary.textContent = '';
      return;
    }
    const im = state.image;
    const st = im.settings;
    dom.summary.textContent = `${im.fileName || 'image'} · ${im.width}×${im.height} · ${state.masks.length} masks · ` +
      `segmented in ${Math.round(im.elapsedMs)} ms (size ${st.imgsz}, conf ${st.conf.toFixed(2)}, IoU ${st.iou.toFixed(2)})`;
  }

  /** Recompute the selection and redraw everything. */
  function update() {
    computeSelection();
    renderOverlay();
    renderPrompts();
    renderList();
    renderControls();
    renderSummary();
    if (!state.busy && !state.error) setStatus(idleStatus(), false);
  }

  /** Size the stage to fit the available area, keeping the aspect ratio. */
  function fit() {
    if (!state.image) return;
    const { width: W, height: H } = state.image;
    const zone = dom.dropzone.getBoundingClientRect();
    const aw = Math.max(zone.width - 24, 50);
    const ah = Math.max(zone.height - 24, 50);
    const scale = Math.min(aw / W, ah / H, 4);
    dom.stage.style.width = `${Math.floor(W * scale)}px`;
    dom.stage.style.height = `${Math.floor(H * scale)}px`;
  }

  let resizeTimer = 0;
  let lastThickness = 1;
  /** Fit the image to the space it has now (window resized, error panel shown or hidden). */
  function relayout() {
    fit();
    renderPrompts();
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      const t = Math.max(1, Math.min(8, Math.round(pixelScale())));
      if (t !== lastThickness) {
        lastThickness = t;
        renderOverlay();
      }
    }, 150);
  }
  window.addEventListener('resize', relayout);

  /* ------------------------------------------------------------------------------------------------------
   * Progress
   * ---------------------------------------------------------------------------------------------------- */

  let progressTimer = 0;

  function showProgress(text, fraction) {
    dom.progress.hidden = false;
    dom.progressText.textContent = text;
    const bar = dom.progressBar.parentElement;
    bar.classList.toggle('indeterminate', fraction == null);
    dom.progressBar.style.width = fraction == null ? '' : `${Math.round(fraction * 100)}%`;
  }

  function hideProgress() {
    dom.progress.hidden = true;
    clearInterval(progressTimer);
    progressTimer = 0;
  }

  /** Progress text with a running clock (for the steps whose length is unknown). */
  function showClock(label) {
    const start = performance.now();
    clearInterval(progressTimer);
    const tick = () => showProgress(`${label} ${((performance.now() - start) / 1000).toFixed(1)} s`, null);
    tick();
    progressTimer = setInterval(tick, 100);
  }

  const nextFrame = () => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));

  /* ------------------------------------------------------------------------------------------------------
   * Server
   * ---------------------------------------------------------------------------------------------------- */

  async function errorText(response) {
    try {
      const body = await response.json();
      if (body && body.error) return String(body.error);
      if (body && body.detail) return typeof body.detail === 'string' ? body.detail : JSON.stringify(body.detail);
    } catch (_) { /* not JSON */ }
    return `${response.status} ${response.statusText || 'error'}`;
  }

  /* API keys: a server started with keys answers 401 to API calls without one. The page asks for the key (a
   * modal dialog), checks it, keeps it in this tab's session storage and sends it as a bearer token. */

  const KEY_STORAGE = 'fastsam.apiKey';
  let apiKey = '';
  try { apiKey = sessionStorage.getItem(KEY_STORAGE) || ''; } catch (_) { /* storage blocked */ }
  let keyWaiters = null; // resolve functions of the calls waiting for a key

  /** `headers` plus the API key, when one is set. */
  function withKey(headers) {
    const h = { ...(headers || {}) };
    if (apiKey) h.Authorization = `Bearer ${apiKey}`;
    return h;
  }

  function openKeyDialog(message) {
    dom.keyMessage.textContent = message || 'This server needs an API key.';
    dom.keyError.hidden = true;
    dom.keyInput.value = '';
    if (!dom.keyDialog.open) dom.keyDialog.showModal();
    dom.keyInput.focus();
  }

  /** Ask for a key until the server accepts one; resolves then (the caller retries its request). */
  function askKey(message) {
    openKeyDialog(message);
    return new Promise((resolve) => { (keyWaiters = keyWaiters || []).push(resolve); });
  }

  dom.keyForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const key = dom.keyInput.value.trim();
    if (!key) return;
    dom.keySubmit.disabled = true;
    try {
      // an image id that never exists: 404 says the key was accepted, 401 that it was not
      const r = await fetch(`${API}/images/key-check`, { headers: { Authorization: `Bearer ${key}` } });
      if (r.status === 401) {
        dom.keyError.textContent = await errorText(r);
        dom.keyError.hidden = false;
        return;
      }
    } catch (_) {
      dom.keyError.textContent = 'network error: is the server running?';
      dom.keyError.hidden = false;
      return;
    } finally {
      dom.keySubmit.disabled = false;
    }
    apiKey = key;
    try { sessionStorage.setItem(KEY_STORAGE, key); } catch (_) { /* storage blocked: this page only */ }
    dom.keyInput.value = ''; // the key does not stay in the page
    dom.keyDialog.close();
    const waiting = keyWaiters || [];
    keyWaiters = null;
    waiting.forEach((resolve) => resolve());
  });
  // Escape closes a modal dialog: not while a request waits for the key
  dom.keyDialog.addEventListener('cancel', (e) => { if (keyWaiters) e.preventDefault(); });
  dom.keyButton.addEventListener('click', () => openKeyDialog('Enter the API key to use from now on.'));

  /** fetch() with the API key; a 401 asks for a key and sends the request again. */
  async function apiFetch(url, options) {
    for (;;) {
      const r = await fetch(url, { ...(options || {}), headers: withKey(options && options.headers) });
      if (r.status !== 401) return r;
      if (apiKey) {
        apiKey = '';
        try { sessionStorage.removeItem(KEY_STORAGE); } catch (_) { /* storage blocked */ }
      }
      await askKey(await errorText(r));
    }
  }

  async function checkHealth() {
    try {
      const r = await fetch(`${API}/health`);
      const h = await r.json();
      state.server = h;
      dom.keyButton.hidden = !h.auth;
      if (h.auth && !apiKey && !dom.keyDialog.open) openKeyDialog('This server needs an API key: ask its administrator for one.');
      dom.serverInfo.className = 'server ' + (h.ready ? 'ok' : 'bad');
      dom.serverInfo.textContent = h.ready ? `${h.model} · ${h.device}` : 'model loading…';
      if (!h.ready) setTimeout(checkHealth, 2000);
    } catch (_) {
      dom.serverInfo.className = 'server bad';
      dom.serverInfo.textContent = 'server unreachable';
      setTimeout(checkHealth, 5000);
    }
  }

  let xhr = null;
  let uploadSeq = 0;
  let textAbort = null;

  function uploadRequest(file, settings, seq) {
    return new Promise((resolve, reject) => {
      const params = new URLSearchParams({ imgsz: String(settings.imgsz), conf: String(settings.conf), iou: String(settings.iou) });
      const req = new XMLHttpRequest();
      xhr = req;
      req.open('POST', `${API}/images?${params}`);
      if (apiKey) req.setRequestHeader('Authorization', `Bearer ${apiKey}`);
      req.responseType = 'text';
      req.upload.onprogress = (e) => {
        if (seq === uploadSeq && e.lengthComputable) showProgress(`Uploading… ${Math.round((100 * e.loaded) / e.total)}%`, e.loaded / e.total);
      };
      req.upload.onload = () => {
        if (seq === uploadSeq) showClock(`Segmenting on the server${state.server && state.server.device ? ` (${state.server.device})` : ''}…`);
      };
      req.onload = () => resolve(req);
      req.onerror = () => reject(new Error('network error: is the server running?'));
      req.onabort = () => reject(Object.assign(new Error('cancelled'), { cancelled: true }));
      const form = new FormData();
      form.append('file', file, file.name || 'image');
      req.send(form);
    });
  }

  /** Upload the current file with the current settings and take the masks (retries while the server is busy). */
  async function segment() {
    if (!state.file) return;
    if (xhr) xhr.abort();
    hideError('upload');
    const seq = ++uploadSeq;
    const settings = { ...state.settings };
    state.busy = true;
    setStatus('Segmenting…', false);
    showProgress('Uploading…', 0);
    renderControls();
    try {
      let req;
      for (let attempt = 0; ; attempt++) {
        req = await uploadRequest(state.file, settings, seq);
        if (seq !== uploadSeq) return;
        if (req.status === 401) { // no key, or a wrong one: ask, then upload again (not counted as a retry)
          let message = '';
          try { message = JSON.parse(req.responseText).error; } catch (_) { /* not JSON */ }
          apiKey = '';
          try { sessionStorage.removeItem(KEY_STORAGE); } catch (_) { /* storage blocked */ }
          showProgress('Waiting for an API key…', null);
          await askKey(message);
          if (seq !== uploadSeq) return;
          attempt--;
          continue;
        }
        if (req.status !== 503 || attempt >= 5) break;
        const wait = Math.min(Math.max(Number(req.getResponseHeader('Retry-After')) || 2, 1), 10);
        showProgress(`Server busy; retrying in ${wait} s…`, null);
        await new Promise((resolve) => setTimeout(resolve, wait * 1000));
        if (seq !== uploadSeq) return;
      }
      let body = null;
      try { body = JSON.parse(req.responseText); } catch (_) { /* not JSON */ }
      if (req.status !== 201 || !body || !Array.isArray(body.masks)) {
        throw new Error((body && body.error) || `upload failed: ${req.status} ${req.statusText}`);
      }
      clearInterval(progressTimer);
      showProgress(`Decoding ${body.masks.length} masks…`, null);
      await nextFrame();
      const masks = body.masks.map((m, i) => {
        if (m.index !== i) throw new Error('unexpected mask order from the server');
        if (m.segmentation.size[0] !== body.height || m.segmentation.size[1] !== body.width) {
          throw new Error('mask size does not match the image size');
        }
        return Object.assign(decodeMask(m.segmentation), { index: i, score: m.score, serverArea: m.area, bbox: m.bbox });
      });
      if (seq !== uploadSeq) return;
      const sizeChanged = !state.image || state.image.width !== body.width || state.image.height !== body.height;
      state.image = {
        id: body.image_id, width: body.width, height: body.height, fileName: body.file_name,
        elapsedMs: body.elapsed_ms, settings,
      };
      state.raw = body.masks;
      state.masks = masks;
      await ensureBitmap(sizeChanged);
      if (seq !== uploadSeq) return;
      state.busy = false;
      hideProgress();
      dom.empty.hidden = true;
      dom.stage.hidden = false;
      fit();
      lastThickness = Math.max(1, Math.min(8, Math.round(pixelScale())));
      setStatus('', false);
      update();
      if (state.text.queries.length && state.text.results.length) {
        state.text.results = []; // the indices belong to the previous masks: ask again
        update();
        runText(state.text.queries, state.text.topK, false);
      }
    } catch (err) {
      if (seq !== uploadSeq) return;
      state.busy = false;
      hideProgress();
      if (err.cancelled) {
        setStatus(state.image ? 'Cancelled; showing the previous result.' : 'Cancelled.', false);
      } else {
        showError('Segmentation failed', err.message || String(err), 'upload');
        setStatus(err.message || String(err), true);
      }
      renderControls();
    } finally {
      if (seq === uploadSeq) xhr = null;
    }
  }

  /** Draw the image under the masks: the browser decodes it, or (formats it cannot show) the server renders it. */
  async function ensureBitmap(force) {
    const { width: W, height: H } = state.image;
    if (!state.bitmap || force || state.bitmap.width !== W || state.bitmap.height !== H) {
      let bitmap = null;
      try {
        bitmap = await createImageBitmap(state.file);
      } catch (_) { /* unsupported here: TIFF and the like */ }
      if (!bitmap || bitmap.width !== W || bitmap.height !== H) {
        const r = await apiFetch(`${API}/images/${state.image.id}/overlay`, {
          method: 'POST', headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ indices: [], alpha: 0, contours: false }),
        });
        if (!r.ok) throw new Error(await errorText(r));
        bitmap = await createImageBitmap(await r.blob());
      }
      state.bitmap = bitmap;
    }
    for (const canvas of [dom.imageCanvas, dom.overlayCanvas]) {
      canvas.width = W;
      canvas.height = H;
    }
    dom.imageCanvas.getContext('2d').drawImage(state.bitmap, 0, 0);
  }

  function parseQueries(text) {
    return text.split(/[\n,]/).map((q) => q.trim()).filter((q) => q.length > 0);
  }

  /** Ask the server which masks match the text queries (CLIP). */
  async function runText(queries, topK, record) {
    dom.textError.hidden = true;
    hideError('text');
    if (!state.image) return;
    if (!queries.length) {
      dom.textError.textContent = 'Type a query first (one per line, or comma-separated).';
      dom.textError.hidden = false;
      return;
    }
    const imageId = state.image.id;
    state.textBusy = true;
    renderControls();
    setStatus(`Asking the server about ${queries.map((q) => `“${q}”`).join(', ')}…`, false);
    showClock('Ranking masks with CLIP (the first query loads it)…');
    if (textAbort) textAbort.abort();
    const abort = new AbortController();
    textAbort = abort;
    try {
      const r = await apiFetch(`${API}/images/${imageId}/prompt`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ texts: queries, top_k: topK }), signal: abort.signal,
      });
      if (!r.ok) throw new Error(await errorText(r));
      const body = await r.json();
      if (textAbort !== abort || !state.image || state.image.id !== imageId) return; // superseded
      if (record) pushHistory();
      state.text = { queries, topK, results: body.masks.map((m) => ({ index: m.index, prompt_id: m.prompt_id })) };
      hideError('text');
      setStatus('', false);
    } catch (err) {
      if (textAbort !== abort) return; // superseded by a newer query
      if (abort.signal.aborted) {
        setStatus('Text query cancelled.', false);
      } else {
        showError('Text prompts failed', err.message || String(err), 'text');
        dom.textError.textContent = 'The server could not answer: the full message is shown above the image.';
        dom.textError.hidden = false;
        setStatus('Text query failed (the message is shown above the image).', true);
      }
    } finally {
      if (textAbort === abort) {
        textAbort = null;
        state.textBusy = false;
        if (!state.busy) hideProgress();
        update();
      }
    }
  }

  /* ------------------------------------------------------------------------------------------------------
   * Prompts and history
   * ---------------------------------------------------------------------------------------------------- */

  function snapshot() {
    return {
      points: state.points.map((p) => ({ ...p })),
      boxes: state.boxes.map((b) => b.slice()),
      text: { queries: state.text.queries.slice(), topK: state.text.topK, results: state.text.results.slice() },
    };
  }

  function pushHistory() {
    state.history.push(snapshot());
    if (state.history.length > 200) state.history.shift();
  }

  function undo() {
    const prev = state.history.pop();
    if (!prev) return;
    Object.assign(state, { points: prev.points, boxes: prev.boxes, text: prev.text });
    setStatus('', false);
    update();
  }

  function clearPrompts() {
    if (!state.points.length && !state.boxes.length && !state.text.results.length) return;
    pushHistory();
    state.points = [];
    state.boxes = [];
    state.text = { queries: state.text.queries, topK: state.text.topK, results: [] };
    setStatus('', false);
    update();
  }

  function addPoint(x, y, label) {
    pushHistory();
    state.points.push({ x, y, label });
    setStatus('', false);
    update();
  }

  function addBox(box) {
    pushHistory();
    state.boxes.push(box);
    setStatus('', false);
    update();
  }

  function setMode(mode) {
    if (!MODES.includes(mode)) return;
    state.mode = mode;
    draft = null;
    setStatus('', false);
    update();
    if (mode === 'text') dom.textInput.focus();
  }

  /* ------------------------------------------------------------------------------------------------------
   * Pointer input on the stage
   * ---------------------------------------------------------------------------------------------------- */

  const round1 = (v) => Math.round(v * 10) / 10;

  /** Event position in image pixels, clamped to the image. */
  function toImage(e) {
    const rect = dom.stage.getBoundingClientRect();
    const { width: W, height: H } = state.image;
    const x = Math.min(Math.max(((e.clientX - rect.left) / rect.width) * W, 0), W);
    const y = Math.min(Math.max(((e.clientY - rect.top) / rect.height) * H, 0), H);
    return [round1(x), round1(y)];
  }

  let drag = null;

  dom.stage.addEventListener('contextmenu', (e) => e.preventDefault());

  dom.stage.addEventListener('pointerdown', (e) => {
    if (!state.image) return;
    if (e.button !== 0 && e.button !== 2) return;
    const [x, y] = toImage(e);
    if (state.mode === 'points') {
      drag = { kind: 'point', x, y, sx: e.clientX, sy: e.clientY, button: e.button, shift: e.shiftKey || e.altKey };
      e.preventDefault();
    } else if (state.mode === 'box' && e.button === 0) {
      drag = { kind: 'box', x, y, sx: e.clientX, sy: e.clientY };
      draft = [x, y, x, y];
      dom.stage.setPointerCapture(e.pointerId);
      e.preventDefault();
    }
  });

  dom.stage.addEventListener('pointermove', (e) => {
    if (!state.image) return;
    const [x, y] = toImage(e);
    dom.cursorPos.textContent = `x ${Math.floor(Math.min(x, state.image.width - 1))}, y ${Math.floor(Math.min(y, state.image.height - 1))}`;
    if (drag && drag.kind === 'box') {
      draft = [drag.x, drag.y, x, y];
      renderPrompts();
    }
  });

  dom.stage.addEventListener('pointerleave', () => { dom.cursorPos.textContent = ''; });

  dom.stage.addEventListener('pointerup', (e) => {
    if (!drag || !state.image) return;
    const d = drag;
    drag = null;
    const [x, y] = toImage(e);
    if (d.kind === 'point') {
      if (Math.hypot(e.clientX - d.sx, e.clientY - d.sy) > 8) return; // a drag, not a click
      const background = d.button === 2 || d.shift || state.bgToggle;
      addPoint(d.x, d.y, background ? 0 : 1);
    } else if (d.kind === 'box') {
      draft = null;
      if (Math.abs(e.clientX - d.sx) < 4 || Math.abs(e.clientY - d.sy) < 4) {
        renderPrompts();
        setStatus('Drag to draw a box (a click alone adds nothing in box mode).', false);
        return;
      }
      addBox([Math.min(d.x, x), Math.min(d.y, y), Math.max(d.x, x), Math.max(d.y, y)]);
    }
  });

  dom.stage.addEventListener('pointercancel', () => {
    drag = null;
    draft = null;
    renderPrompts();
  });

  /* ------------------------------------------------------------------------------------------------------
   * Files: chooser, drag and drop, paste
   * ---------------------------------------------------------------------------------------------------- */

  function loadFile(file) {
    if (!file) return;
    if (file.type && !file.type.startsWith('image/')) {
      showError('Not an image', `“${file.name}” is not an image (${file.type}): choose a JPEG, PNG, TIFF, WebP, BMP or GIF file.`, 'file');
      setStatus(`“${file.name}” is not an image (${file.type}).`, true);
      return;
    }
    hideError();
    state.file = file;
    state.bitmap = null;
    state.points = [];
    state.boxes = [];
    state.text = { queries: state.text.queries, topK: state.text.topK, results: [] };
    state.history = [];
    state.hover = -1;
    dom.fileName.textContent = file.name || '(pasted image)';
    dom.textError.hidden = true;
    segment();
  }

  dom.fileInput.addEventListener('change', () => {
    loadFile(dom.fileInput.files[0]);
    dom.fileInput.value = '';
  });

  let dragDepth = 0;
  document.addEventListener('dragenter', (e) => {
    if (!e.dataTransfer || !Array.from(e.dataTransfer.types).includes('Files')) return;
    dragDepth++;
    dom.dropzone.classList.add('dragging');
  });
  document.addEventListener('dragleave', () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (dragDepth === 0) dom.dropzone.classList.remove('dragging');
  });
  document.addEventListener('dragover', (e) => e.preventDefault());
  document.addEventListener('drop', (e) => {
    e.preventDefault();
    dragDepth = 0;
    dom.dropzone.classList.remove('dragging');
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (file) loadFile(file);
  });
  document.addEventListener('paste', (e) => {
    const files = e.clipboardData ? Array.from(e.clipboardData.files) : [];
    const image = files.find((f) => f.type.startsWith('image/'));
    if (image) loadFile(image);
  });

  /* ------------------------------------------------------------------------------------------------------
   * Controls
   * ---------------------------------------------------------------------------------------------------- */

  document.querySelectorAll('.segmented button').forEach((b) => b.addEventListener('click', () => setMode(b.dataset.mode)));

  dom.bgToggle.addEventListener('click', () => {
    state.bgToggle = !state.bgToggle;
    renderControls();
  });
  dom.multimask.addEventListener('change', () => {
    state.multimask = dom.multimask.checked;
    update();
  });

  dom.textSubmit.addEventListener('click', () => {
    state.text.topK = clampInt(dom.topK.value, 1, 20, 1);
    dom.topK.value = String(state.text.topK);
    runText(parseQueries(dom.textInput.value), state.text.topK, true);
  });
  dom.textInput.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      dom.textSubmit.click();
    }
  });

  function clampInt(v, lo, hi, fallback) {
    const n = Math.round(Number(v));
    return Number.isFinite(n) ? Math.min(Math.max(n, lo), hi) : fallback;
  }

  function showSettings() {
    el('imgsz-value').textContent = dom.imgsz.value;
    el('conf-value').textContent = Number(dom.conf.value).toFixed(2);
    el('iou-value').textContent = Number(dom.iou.value).toFixed(2);
    el('alpha-value').textContent = Number(dom.alpha.value).toFixed(2);
  }

  let segmentTimer = 0;
  function settingsChanged() {
    const imgsz = Math.round(Number(dom.imgsz.value) / 32) * 32;
    state.settings = { imgsz, conf: Number(dom.conf.value), iou: Number(dom.iou.value) };
    showSettings();
    if (!state.file) return;
    clearTimeout(segmentTimer);
    segmentTimer = setTimeout(segment, 250);
  }
  for (const input of [dom.imgsz, dom.conf, dom.iou]) {
    input.addEventListener('input', showSettings);
    input.addEventListener('change', settingsChanged);
  }

  dom.alpha.addEventListener('input', () => {
    state.display.alpha = Number(dom.alpha.value);
    showSettings();
    scheduleOverlay();
  });
  dom.contours.addEventListener('change', () => {
    state.display.contours = dom.contours.checked;
    renderOverlay();
  });
  for (const radio of [dom.colorRandom, dom.colorSingle]) {
    radio.addEventListener('change', () => {
      state.display.random = dom.colorRandom.checked;
      renderOverlay();
      renderList();
      renderControls();
    });
  }
  dom.colorPicker.addEventListener('input', () => {
    state.display.color = dom.colorPicker.value;
    scheduleOverlay();
    renderList();
  });
  dom.shuffle.addEventListener('click', () => {
    state.display.seed += 1;
    renderOverlay();
    renderList();
  });

  dom.undo.addEventListener('click', undo);
  dom.clear.addEventListener('click', clearPrompts);
  dom.errorClose.addEventListener('click', () => hideError());

  dom.cancel.addEventListener('click', () => {
    if (xhr) xhr.abort();
    if (textAbort) textAbort.abort();
  });

  document.addEventListener('keydown', (e) => {
    const t = e.target;
    if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable)) return;
    if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === 'z') {
      e.preventDefault();
      undo();
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const mode = { e: 'everything', p: 'points', b: 'box', t: 'text' }[e.key.toLowerCase()];
    if (mode) {
      e.preventDefault();
      setMode(mode);
    } else if (e.key === 'Escape') {
      if (drag || draft) {
        drag = null;
        draft = null;
        renderPrompts();
      } else {
        clearPrompts();
      }
    }
  });

  /* ------------------------------------------------------------------------------------------------------
   * Export
   * ---------------------------------------------------------------------------------------------------- */

  function baseName() {
    const name = (state.image && state.image.fileName) || (state.file && state.file.name) || 'image';
    return name.replace(/\.[^.]+$/, '') || 'image';
  }

  function saveBlob(blob, name) {
    const url = URL.createObjectURL(blob);
    const a = document.createElement('a');
    a.href = url;
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  /** The current selection in the SA-1B annotation schema (one annotation per prompt answer with a mask). */
  function sa1b() {
    if (!state.image) return null;
    const { width: W, height: H, fileName } = state.image;
    const annotations = [];
    for (const e of state.selection.entries) {
      if (e.index < 0) continue;
      const m = state.raw[e.index];
      const [x1, y1, x2, y2] = m.bbox;
      annotations.push({
        id: annotations.length,
        segmentation: { size: m.segmentation.size.slice(), counts: m.segmentation.counts },
        bbox: [x1, y1, x2 - x1, y2 - y1],
        area: m.area,
        predicted_iou: m.score,
        point_coords: e.point ? [e.point.slice()] : [],
        crop_box: [0, 0, W, H],
      });
    }
    return { image: { width: W, height: H, file_name: fileName }, annotations };
  }

  dom.downloadJson.addEventListener('click', () => {
    const doc = sa1b();
    if (!doc) return;
    saveBlob(new Blob([JSON.stringify(doc)], { type: 'application/json' }), `${baseName()}_sa1b.json`);
    setStatus(`Saved ${doc.annotations.length} annotation${doc.annotations.length === 1 ? '' : 's'} as SA-1B JSON.`, false);
  });

  dom.downloadPng.addEventListener('click', () => {
    if (!state.image) return;
    const { width: W, height: H } = state.image;
    const canvas = document.createElement('canvas');
    canvas.width = W;
    canvas.height = H;
    const ctx = canvas.getContext('2d');
    ctx.drawImage(dom.imageCanvas, 0, 0);
    ctx.drawImage(dom.overlayCanvas, 0, 0);
    canvas.toBlob((blob) => {
      if (!blob) {
        setStatus('Could not encode the PNG (image too large for this browser?).', true);
        return;
      }
      saveBlob(blob, `${baseName()}_overlay.png`);
      setStatus(`Saved the overlay of ${state.selection.indices.length} masks as PNG.`, false);
    }, 'image/png');
  });

  /* ------------------------------------------------------------------------------------------------------
   * Start
   * ---------------------------------------------------------------------------------------------------- */

  function applyQuery() {
    const q = new URLSearchParams(location.search);
    if (q.has('imgsz')) dom.imgsz.value = String(Math.round(clampInt(q.get('imgsz'), 256, 1536, 1024) / 32) * 32);
    if (q.has('conf')) dom.conf.value = String(Math.min(Math.max(Number(q.get('conf')) || 0, 0), 1));
    if (q.has('iou')) dom.iou.value = String(Math.min(Math.max(Number(q.get('iou')) || 0, 0), 1));
    if (q.has('mode') && MODES.includes(q.get('mode'))) state.mode = q.get('mode');
    state.settings = { imgsz: Number(dom.imgsz.value), conf: Number(dom.conf.value), iou: Number(dom.iou.value) };
    state.display.alpha = Number(dom.alpha.value);
    state.display.contours = dom.contours.checked;
    state.display.random = dom.colorRandom.checked;
    state.display.color = dom.colorPicker.value;
    state.multimask = dom.multimask.checked;
  }

  applyQuery();
  showSettings();
  update();
  checkHealth();

  /** Test and debugging hook. */
  window.fastsam = {
    state,
    /** The selection on screen: per prompt answer its mask index (-1: none) and prompt id, plus the prompts. */
    selection() {
      const { entries, indices } = state.selection;
      return {
        mode: state.mode,
        image_id: state.image ? state.image.id : null,
        indices: entries.map((e) => e.index),
        prompt_ids: entries.map((e) => e.prompt_id),
        selected: indices.slice(),
        entries: entries.map((e) => ({ ...e })),
        points: state.points.map((p) => [p.x, p.y]),
        labels: state.points.map((p) => p.label),
        boxes: state.boxes.map((b) => b.slice()),
        texts: state.text.results.length ? state.text.queries.slice() : [],
        multimask: state.multimask,
      };
    },
    ready: () => !!state.image && !state.busy && !state.textBusy,
    sa1b,
    setMode,
    undo,
    clear: clearPrompts,
    decodeMask,
    parseCounts,
    selectBest,
    selectBoxes,
  };
})();
