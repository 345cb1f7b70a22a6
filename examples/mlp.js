#!/usr/bin/env node
// A multilayer perceptron with hand-written backprop in plain JavaScript (Node.js,
// no dependencies), speaking bpcheck's subprocess protocol (docs/protocol.md):
//
//   bpcheck validate --exec "node examples/mlp.js"
//
// stdout carries the protocol only: one hello line, then one reply line per
// request line; the program exits when stdin closes. Logs would go to stderr.
//
// Arrays are flat row-major Float64Arrays. float32 is emulated exactly: every
// arithmetic result is rounded with Math.fround (R below), so each operation is a
// correctly rounded float32 operation, as in C with float; elementwise functions
// are computed in double and rounded once. JavaScript has no erf, so the exact
// GELU is not offered: the hello line leaves "gelu" out and bpcheck skips those
// cases instead of failing them.
"use strict";
const readline = require("readline");

// Elementwise functions are written for doubles; callers round the result once with R,
// as a correctly rounded float32 math library would (f' has zeros -- gelu_tanh' near
// z = -0.75, silu' near -1.28 -- where rounding every step in float32 would cancel).
const SIGMOID = (z) => (z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z)));
const SOFTPLUS = (z) => Math.max(z, 0) + Math.log1p(Math.exp(-Math.abs(z)));
// 1 - tanh(u)^2 as 4e / (1 + e)^2, e = exp(-2|u|): no cancellation where tanh saturates
const SECH2 = (u) => { const e = Math.exp(-2 * Math.abs(u)); return (4 * e) / ((1 + e) * (1 + e)); };
const GELU_K = Math.sqrt(2 / Math.PI), GELU_C = 0.044715;
const GELU_INNER = (z) => GELU_K * (z + GELU_C * z * z * z);

// name -> [f(z), f'(z)]
const ACTIVATIONS = {
  identity: [(z) => z, () => 1],
  relu: [(z) => (z > 0 ? z : 0), (z) => (z > 0 ? 1 : 0)],
  leaky_relu: [(z) => (z > 0 ? z : 0.01 * z), (z) => (z > 0 ? 1 : 0.01)],
  sigmoid: [SIGMOID, (z) => SIGMOID(z) * SIGMOID(-z)],
  tanh: [Math.tanh, SECH2],
  softplus: [SOFTPLUS, SIGMOID],
  elu: [(z) => (z > 0 ? z : Math.expm1(z)), (z) => (z > 0 ? 1 : Math.exp(z))],
  gelu_tanh: [(z) => 0.5 * z * (1 + Math.tanh(GELU_INNER(z))),
    (z) => 0.5 * (1 + Math.tanh(GELU_INNER(z))) + 0.5 * z * SECH2(GELU_INNER(z)) * GELU_K * (1 + 3 * GELU_C * z * z)],
  silu: [(z) => z * SIGMOID(z), (z) => SIGMOID(z) * (1 + z * SIGMOID(-z))],
};
const LOSSES = ["sse", "half_sse", "mse", "quadratic", "binary_cross_entropy", "bce_with_logits", "softmax_cross_entropy"];

// ---- arrays: {shape, data} with data a Float64Array, row-major
function decode(a) {
  if (a.base64 !== undefined) {
    const buf = Buffer.from(a.base64, "base64");
    const ctor = { float32: Float32Array, float64: Float64Array, int64: BigInt64Array }[a.dtype];
    const view = new ctor(buf.buffer, buf.byteOffset, buf.length / ctor.BYTES_PER_ELEMENT);
    return { shape: a.shape, data: Float64Array.from(view, Number) };
  }
  return { shape: a.shape, data: Float64Array.from(a.data) };
}
const encode = (m, dtype) => ({ dtype, shape: m.shape, data: Array.from(m.data) });
const zeros = (rows, cols) => ({ shape: cols === undefined ? [rows] : [rows, cols], data: new Float64Array(rows * (cols ?? 1)) });

// out[r][c] = sum_k A[r][k] B'[k][c], where B' is B or B transposed; sums rounded term by term.
function matmul(A, B, { transA = false, transB = false } = {}, R) {
  const [ar, ac] = transA ? [A.shape[1], A.shape[0]] : A.shape;
  const bc = transB ? B.shape[0] : B.shape[1];
  const a = (i, k) => (transA ? A.data[k * A.shape[1] + i] : A.data[i * A.shape[1] + k]);
  const b = (k, j) => (transB ? B.data[j * B.shape[1] + k] : B.data[k * B.shape[1] + j]);
  const out = zeros(ar, bc);
  for (let i = 0; i < ar; i++) for (let j = 0; j < bc; j++) {
    let s = 0;
    for (let k = 0; k < ac; k++) s = R(s + R(a(i, k) * b(k, j)));
    out.data[i * bc + j] = s;
  }
  return out;
}
const map = (m, f) => ({ shape: m.shape, data: m.data.map(f) });

// The loss C and dC/dz of the last layer (fused with the loss where that is the stable form).
function lossAndOutputDelta(loss, act, z, a, y, R) {
  const n = a.data.length, B = a.shape[0], D = a.shape[1];
  const delta = zeros(B, D);
  let c = 0;
  if (["sse", "half_sse", "mse", "quadratic"].includes(loss)) {
    const scale = { sse: 1, half_sse: 0.5, mse: R(1 / n), quadratic: R(1 / (2 * B)) }[loss];
    const dAct = ACTIVATIONS[act][1];
    let s = 0;
    for (let i = 0; i < n; i++) {
      const r = R(a.data[i] - y.data[i]);
      s = R(s + R(r * r));
      delta.data[i] = R(R(R(2 * scale) * r) * R(dAct(z.data[i])));
    }
    c = R(scale * s);
  } else if (loss === "binary_cross_entropy" || loss === "bce_with_logits") {
    // from the logits z either way: -log sigmoid(z) = softplus(-z), -log(1 - sigmoid(z)) = softplus(z)
    for (let i = 0; i < n; i++) {
      const [v, t] = [z.data[i], y.data[i]];
      c = R(c + R(R(t * R(SOFTPLUS(-v))) + R(R(1 - t) * R(SOFTPLUS(v)))));
      delta.data[i] = R(R(R(SIGMOID(v)) - t) / n);                 // (a - y) / n
    }
    c = R(c / n);
  } else if (loss === "softmax_cross_entropy") {         // a = z, y holds classes
    for (let b = 0; b < B; b++) {
      const row = z.data.subarray(b * D, (b + 1) * D);
      const m = Math.max(...row);
      let s = 0;
      for (const v of row) s = R(s + R(Math.exp(R(v - m))));
      const lse = R(Math.log(s));
      for (let j = 0; j < D; j++) {
        const logP = R(R(row[j] - m) - lse);
        delta.data[b * D + j] = R(R(R(Math.exp(logP)) - (j === y.data[b] ? 1 : 0)) / B);
        if (j === y.data[b]) c = R(c - logP);
      }
    }
    c = R(c / B);
  } else {
    throw new Error(`loss ${loss}`);
  }
  return [c, delta];
}

function backprop(spec, params, x, y) {
  const R = spec.dtype === "float32" ? Math.fround : (v) => v;
  const L = spec.layers.length;
  const zs = [], acts = [];
  let a = x;
  for (let i = 0; i < L; i++) {                          // z_i = a_{i-1} W_i^T + b_i, a_i = f(z_i)
    const W = params[`layers.${i}.W`], b = params[`layers.${i}.b`];
    const z = matmul(a, W, { transB: true }, R);
    for (let k = 0; k < z.data.length; k++) z.data[k] = R(z.data[k] + b.data[k % b.data.length]);
    const f = ACTIVATIONS[spec.layers[i].activation][0];
    a = map(z, (v) => R(f(v)));
    zs.push(z); acts.push(a);
  }
  let [loss, delta] = lossAndOutputDelta(spec.loss, spec.layers[L - 1].activation, zs[L - 1], a, y, R);
  const grads = {}, deltas = {};
  for (let i = L - 1; i >= 0; i--) {
    deltas[`layers.${i}`] = delta;
    const aPrev = i > 0 ? acts[i - 1] : x;
    grads[`layers.${i}.W`] = matmul(delta, aPrev, { transA: true }, R);   // delta^T a_{i-1}
    const units = delta.shape[1], db = zeros(units);
    for (let k = 0; k < delta.data.length; k++) db.data[k % units] = R(db.data[k % units] + delta.data[k]);
    grads[`layers.${i}.b`] = db;
    delta = matmul(delta, params[`layers.${i}.W`], {}, R);              // dC/da_{i-1}
    if (i > 0) {
      const dAct = ACTIVATIONS[spec.layers[i - 1].activation][1], z = zs[i - 1];
      delta = { shape: delta.shape, data: delta.data.map((v, k) => R(v * R(dAct(z.data[k])))) };
    }
  }
  return { loss, grads, input_grad: delta, deltas };
}

function handle(request) {
  const { spec } = request;
  for (const layer of spec.layers) {
    if (!(layer.activation in ACTIVATIONS)) return { kind: "unsupported", message: `activation ${layer.activation}` };
  }
  const params = Object.fromEntries(Object.entries(request.params).map(([k, v]) => [k, decode(v)]));
  const r = backprop(spec, params, decode(request.x), decode(request.y));
  const out = (m) => encode(m, spec.dtype);
  return {
    loss: r.loss,
    grads: Object.fromEntries(Object.entries(r.grads).map(([k, v]) => [k, out(v)])),
    input_grad: out(r.input_grad),
    deltas: Object.fromEntries(Object.entries(r.deltas).map(([k, v]) => [k, out(v)])),
  };
}

const send = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
send({ protocol: "bpcheck/1", name: "mlp.js", activations: Object.keys(ACTIVATIONS), losses: LOSSES,
       dtypes: ["float32", "float64"], encoding: "decimal" });
readline.createInterface({ input: process.stdin, terminal: false }).on("line", (line) => {
  if (!line.trim()) return;
  let id = null;
  try {
    const request = JSON.parse(line);
    id = request.id;
    const result = handle(request);
    send(result.kind ? { id, error: result } : { id, result });
  } catch (err) {
    send({ id, error: { kind: "failed", message: String(err && err.stack || err) } });
  }
});
