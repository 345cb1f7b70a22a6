#!/usr/bin/env node
// Layers with hand-written backward passes in plain JavaScript (Node.js, no
// dependencies), speaking bpcheck's one-op-at-a-time protocol bpcheck-op/1
// (docs/protocol.md): layer norm, RMS norm, the affine layer and softmax
// cross-entropy, as docs/layers_contract.md defines them.
//
//   bpcheck op layernorm --exec "node examples/layers.js"
//
// (and rmsnorm, affine, cross_entropy, softmax_loss the same way).
//
// stdout carries the protocol only: one hello line, then one reply line per
// request line; the program exits when stdin closes. Logs would go to stderr.
//
// Arrays are flat row-major Float64Arrays. float32 is emulated exactly: every
// arithmetic result is rounded with Math.fround (R below), so each operation is a
// correctly rounded float32 operation, as in C with float; elementwise functions
// (exp, log, sqrt) are computed in double and rounded once. Sums are accumulated
// left to right in the case's dtype.
"use strict";
const readline = require("readline");

// ---- arrays: {shape, data} with data a Float64Array, row-major
function decode(a) {
  if (a.base64 !== undefined) {
    const buf = Buffer.from(a.base64, "base64");
    const ctor = { float32: Float32Array, float64: Float64Array, int64: BigInt64Array }[a.dtype];
    const bytes = new Uint8Array(buf);                  // a copy: aligned for the typed view
    const view = new ctor(bytes.buffer, 0, bytes.length / ctor.BYTES_PER_ELEMENT);
    return { shape: a.shape, data: Float64Array.from(view, Number) };
  }
  return { shape: a.shape, data: Float64Array.from(a.data) };
}
// JSON has no NaN or infinity: write them as the strings bpcheck reads back.
const number = (v) => (Number.isFinite(v) ? v : Number.isNaN(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity");
const encode = (m, dtype) => ({ dtype, shape: m.shape, data: Array.from(m.data, number) });
const array = (shape) => ({ shape, data: new Float64Array(shape.reduce((p, d) => p * d, 1)) });

// ---- layer norm and RMS norm: x (N, D) normalised over each row, gamma and beta (D,)
//
//   mu = mean(x), xc = x - mu (layer norm; RMS norm: xc = x), var = mean(xc^2),
//   inv = 1 / sqrt(var + eps), xhat = xc inv, out = gamma xhat (+ beta)
//   dxhat = gamma dout, dgamma = sum_n dout xhat, dbeta = sum_n dout,
//   dx = inv (dxhat - mean(dxhat) - xhat mean(dxhat xhat))   (RMS norm: no mean(dxhat) term)
function norm(inputs, hyper, cot, R, centre) {
  const { x, gamma, beta } = inputs;
  const [N, D] = x.shape;
  const eps = R(hyper.eps);
  const out = array([N, D]), dx = array([N, D]), dgamma = array([D]), dbeta = array([D]);
  const xhat = new Float64Array(D), dxhat = new Float64Array(D);
  for (let n = 0; n < N; n++) {
    const row = x.data.subarray(n * D, (n + 1) * D), g = cot.data.subarray(n * D, (n + 1) * D);
    let mu = 0;
    if (centre) {
      let s = 0;
      for (let j = 0; j < D; j++) s = R(s + row[j]);
      mu = R(s / D);
    }
    let ss = 0;
    for (let j = 0; j < D; j++) {
      const c = R(row[j] - mu);
      ss = R(ss + R(c * c));
    }
    const variance = R(ss / D);
    const inv = R(1 / R(Math.sqrt(R(variance + eps))));
    let s1 = 0, s2 = 0;
    for (let j = 0; j < D; j++) {
      xhat[j] = R(R(row[j] - mu) * inv);
      let o = R(xhat[j] * gamma.data[j]);
      if (beta) o = R(o + beta.data[j]);
      out.data[n * D + j] = o;
      dxhat[j] = R(g[j] * gamma.data[j]);
      s1 = R(s1 + dxhat[j]);
      s2 = R(s2 + R(dxhat[j] * xhat[j]));
      dgamma.data[j] = R(dgamma.data[j] + R(g[j] * xhat[j]));
      dbeta.data[j] = R(dbeta.data[j] + g[j]);
    }
    const m1 = R(s1 / D), m2 = R(s2 / D);
    for (let j = 0; j < D; j++) {
      const inner = centre ? R(dxhat[j] - m1) : dxhat[j];
      dx.data[n * D + j] = R(inv * R(inner - R(xhat[j] * m2)));
    }
  }
  const grads = { x: dx, gamma: dgamma };
  if (beta) grads.beta = dbeta;
  return { out, grads };
}

// ---- affine: x (N, d1, ..., dk) read as x2 (N, D), w (D, M), b (M,)
//
//   out = x2 w + b,  dx = (dout w^T) reshaped to x,  dw = x2^T dout,  db = sum_n dout
function affine({ x, w, b }, hyper, cot, R) {
  const N = x.shape[0], [D, M] = w.shape;
  if (x.data.length !== N * D) throw new Error(`x ${JSON.stringify(x.shape)} does not flatten to (${N}, ${D})`);
  const out = array([N, M]), dx = array(x.shape), dw = array([D, M]), db = array([M]);
  for (let n = 0; n < N; n++) for (let m = 0; m < M; m++) {
    let s = 0;
    for (let k = 0; k < D; k++) s = R(s + R(x.data[n * D + k] * w.data[k * M + m]));
    out.data[n * M + m] = R(s + b.data[m]);
  }
  for (let n = 0; n < N; n++) for (let k = 0; k < D; k++) {
    let s = 0;
    for (let m = 0; m < M; m++) s = R(s + R(cot.data[n * M + m] * w.data[k * M + m]));
    dx.data[n * D + k] = s;
  }
  for (let k = 0; k < D; k++) for (let m = 0; m < M; m++) {
    let s = 0;
    for (let n = 0; n < N; n++) s = R(s + R(x.data[n * D + k] * cot.data[n * M + m]));
    dw.data[k * M + m] = s;
  }
  for (let m = 0; m < M; m++) {
    let s = 0;
    for (let n = 0; n < N; n++) s = R(s + cot.data[n * M + m]);
    db.data[m] = s;
  }
  return { out, grads: { x: dx, w: dw, b: db } };
}

// ---- softmax cross-entropy: logits x (N, C), labels y (N,) (torch.nn.functional.cross_entropy)
//
//   logp = x - max(x) - log sum exp(x - max(x)),  q = (1 - eps) onehot(y) + eps / C
//   l_n = -sum_c q_c logp_c (0 where y_n = ignore_index)
//   out = l ("none"), sum_n l_n ("sum"), sum_n l_n / #kept ("mean")
//   dx_n = w_n (softmax(x_n) - q_n), w_n = dout_n, dout or dout / #kept; 0 for ignored rows
function crossEntropy({ x }, { y }, hyper, cot, R) {
  const ignore = hyper.ignore_index ?? -100, eps = hyper.label_smoothing ?? 0;
  const reduction = hyper.reduction ?? "mean";
  if (!["mean", "sum", "none"].includes(reduction)) throw new Error(`unknown reduction ${reduction}`);
  const [N, C] = x.shape;
  let kept = 0;
  for (let n = 0; n < N; n++) if (y.data[n] !== ignore) kept++;
  const perRow = array([N]), dx = array([N, C]);
  const q = new Float64Array(C), p = new Float64Array(C);
  for (let n = 0; n < N; n++) {
    const label = y.data[n];
    if (label === ignore) continue;                     // loss 0, gradient 0
    if (!(Number.isInteger(label) && label >= 0 && label < C)) throw new Error(`label ${label} outside [0, ${C})`);
    const row = x.data.subarray(n * C, (n + 1) * C);
    let peak = row[0];
    for (let c = 1; c < C; c++) if (row[c] > peak) peak = row[c];
    let total = 0;
    for (let c = 0; c < C; c++) { p[c] = R(Math.exp(R(row[c] - peak))); total = R(total + p[c]); }
    const logTotal = R(Math.log(total));
    let loss = 0;
    for (let c = 0; c < C; c++) {
      q[c] = R((c === label ? 1 - eps : 0) + eps / C);  // a constant: computed in double, rounded once
      const logp = R(R(row[c] - peak) - logTotal);
      loss = R(loss + R(q[c] * logp));
      p[c] = R(p[c] / total);                           // softmax
    }
    perRow.data[n] = -loss;
    const weight = reduction === "none" ? cot.data[n] : reduction === "sum" ? cot.data[0] : R(cot.data[0] / kept);
    for (let c = 0; c < C; c++) dx.data[n * C + c] = R(weight * R(p[c] - q[c]));
  }
  if (reduction === "none") return { out: perRow, grads: { x: dx } };
  let s = 0;
  for (let n = 0; n < N; n++) s = R(s + perRow.data[n]);
  const out = { shape: [], data: Float64Array.of(reduction === "sum" ? s : R(s / kept)) };
  return { out, grads: { x: dx } };
}

// op -> (inputs, constants, hyper, cotangent, R) -> {out, grads}
const OPS = {
  layernorm: (a, c, h, g, R) => norm(a, h, g, R, true),
  rmsnorm: (a, c, h, g, R) => norm({ x: a.x, gamma: a.gamma }, h, g, R, false),
  affine: (a, c, h, g, R) => affine(a, h, g, R),
  cross_entropy: (a, c, h, g, R) => crossEntropy(a, c, h, g, R),
  softmax_loss: (a, c, h, g, R) => crossEntropy(a, c, {}, g, R),   // CS231n's: mean, nothing ignored
};

function handle(request) {
  const { op, dtype } = request;
  if (!(op in OPS)) return { kind: "unsupported", message: `op ${op}` };
  if (dtype !== "float32" && dtype !== "float64") return { kind: "unsupported", message: `dtype ${dtype}` };
  const R = dtype === "float32" ? Math.fround : (v) => v;
  const decodeAll = (m) => Object.fromEntries(Object.entries(m || {}).map(([k, v]) => [k, decode(v)]));
  const r = OPS[op](decodeAll(request.inputs), decodeAll(request.constants), request.hyper || {},
                    decode(request.cotangent), R);
  return {
    out: encode(r.out, dtype),
    grads: Object.fromEntries(Object.entries(r.grads).map(([k, v]) => [k, encode(v, dtype)])),
  };
}

const send = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
send({ protocol: "bpcheck-op/1", name: "layers.js", ops: Object.keys(OPS), dtypes: ["float32", "float64"],
       encoding: "decimal" });
readline.createInterface({ input: process.stdin, terminal: false }).on("line", (line) => {
  if (!line.trim()) return;
  let id = null;
  try {
    const request = JSON.parse(line);
    id = request.id;
    const result = handle(request);
    send(result.kind ? { id, error: result } : { id, ...result });
  } catch (err) {
    send({ id, error: { kind: "failed", message: String(err && err.stack || err) } });
  }
});
